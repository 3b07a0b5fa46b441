/* passes/placement.c: checkpoint placement under a memory budget.
 *
 * Chooses checkpoint segments (Node.segment, g->nsegments) so that the
 * exact peak of the step (pass_liveness) is at most the budget, with the
 * least recomputation (op_flops of every re-run forward). The key idea:
 * the schedule without segments, U, tells the bytes of everything; where
 * one tensor alone crosses between two parts of the model the step is a
 * chain of stages, and on a chain the live bytes of any instruction under
 * segments S are
 *     live_S(t) = live_U(t) - D(t) + local(t)
 * where D(t) is the sum of the savings of the segments that end before t's
 * stage (their interiors are freed after the forward, recomputed only when
 * the backward reaches them) and local(t) depends only on the segment t is
 * in. That makes an exact dynamic program over stage boundaries possible, in
 * the manner of optimal checkpointing for heterogeneous chains (Beaumont,
 * Eyraud-Dubois, Herrmann et al. 2019), for the one-level schedule of
 * memory.md (segments do not nest, each is recomputed once, right before
 * its first backward step). The DP state at a boundary is a Pareto front of
 * (savings D, FLOPs spent): every constraint has the form need - D <= budget,
 * so more savings never hurts and a point dominated in both is dropped.
 *
 * Where the model is not exact (a stage that is not an op of a chain, the
 * last stage's extras partly freed inside a segment's forward) it errs on
 * the side of more memory; the chosen placement is then built and measured
 * with the real passes (pass_autodiff, pass_liveness). The verified peak is
 * the answer; if it exceeds the budget the DP runs again with the budget
 * lowered by the excess (at most a few times).
 *
 * Worked example (a chain of four one-op stages; bytes; every stage's
 * backward reads 100 in U less what the segments save; the seed 200):
 *   stage        0     1     2     3 (holds the loss: never segmented)
 *   keep        40    40    40     -
 *   crossing x  10    10    10        (all kept in U: the next op saves it)
 *   FLOPs        5     5     5
 * Budget 170 means D >= 30 at the seed. Segment {0}: saves 40 - 10 = 30
 * (its output stays, the next stage saves it) for 5 FLOPs; its
 * recomputation runs after stages 3..1's backward with 100 - 0 live, plus
 * what it rebuilds: fits. The DP's fronts at boundary 1 are {(D 0, 0 FLOPs)}
 * (no segment) and {(D 30, 5)} (segment {0}); only the second survives the
 * seed, so the answer is {0} at 5 FLOPs; {0,1} would save 70 for 10.
 *
 * Requires: pass_precision and a built step (pass_autodiff, pass_liveness)
 * on `g`. Maintains: the forward graph apart from segments. Sets:
 * Node.segment and g->nsegments (any segments the source had are
 * replaced), rebuilds the step (pass_autodiff, pass_liveness). Invalidates:
 * the arena (run pass_arena again).
 */
#include "mdlc.h"

#include <stdlib.h>
#include <string.h>

#define NEG_INF INT64_MIN / 4

/* One buffer of U holding forward data. */
typedef struct {
  int64_t bytes;   /* its size */
  int stage;       /* stage of the producing node */
  int prod;        /* producing node */
  int free_at;     /* U's free point (INT32_MAX: kept to the end) */
  int *rd;         /* reader nodes, forward then backward (CSR into pool) */
  int nfwd, nbwd;  /* how many of each */
} FBuf;

typedef struct {
  int64_t D;       /* savings in force after this boundary */
  int64_t c;       /* FLOPs of recomputation so far */
  int64_t pk;      /* largest live bytes predicted so far */
  int from;        /* previous boundary */
  int from_bit;    /* its front (0 unsegmented before, 1 segment before) */
  int from_e;      /* entry index there */
  int seg;         /* the piece: -1 one unsegmented stage, else last stage */
} Ent;

typedef struct {
  Ent *a;
  int n, cap;
  int pruned;      /* size after the last pruning */
} Front;

typedef struct {
  Graph *g;
  int nst;             /* stages */
  int *sb;             /* stage r = nodes [sb[r], sb[r+1]) */
  int *stage_of;       /* node -> stage */
  FBuf *fb;            /* forward buffers of U */
  int nfb;
  int *fb_of_buf;      /* Buf index -> FBuf index, -1 */
  int *fwd_at, *bwd_at;/* node -> its instruction in U, -1 */
  int seed_at;
  int64_t *live;       /* live bytes of U's instructions */
  int64_t *alloc_b;    /* bytes allocated by each instruction */
  int64_t seed_live;   /* U's live bytes at the seed */
  int64_t floor_live;  /* U's live bytes where segments change nothing */
  /* per stage */
  int64_t *keep;       /* bytes of its buffers alive at the seed */
  int64_t *fwd_first, *fwd_rest, *bwd_max; /* U's live, by phase */
  int64_t *x;          /* the tensor crossing after it, bytes (0: none) */
  int *xbuf;           /* its FBuf, -1 */
  bool *x_kept;        /* that tensor is alive at U's seed */
  bool *x_cons;        /* the next stage's backward reads it */
  bool *can_seg;       /* may be in a segment */
  bool *reached;       /* some node of it has a backward step */
  int64_t *flops;      /* forward FLOPs of the stage */
  bool exact;          /* every op boundary is a chain boundary */
  int64_t *scratch;    /* one int64 per node, for recompute_need */
} Model;

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static bool is_view_node(const Graph *g, int n) {
  Op op = g->nodes[n].op;
  return op == OP_RESHAPE || op == OP_SPLIT ||
         (g->cfg.infer && op == OP_DROPOUT);
}

static void rebuild(Graph *g) {
  graph_clear_step(g);
  pass_autodiff(g);
  pass_liveness(g);
}

/* Sets the segments: seg_end[r] = last stage of the segment starting at
 * stage r, or -1. Returns the number of segments. */
static int apply(Model *m, const int *seg_start_end) {
  Graph *g = m->g;
  int ns = 0;
  for (int i = 0; i < g->nnodes; i++) g->nodes[i].segment = -1;
  for (int r = 0; r < m->nst; r++) {
    int t = seg_start_end[r];
    if (t < 0) continue;
    for (int i = m->sb[r]; i < m->sb[t + 1]; i++) g->nodes[i].segment = ns;
    ns++;
    r = t;
  }
  g->nsegments = ns;
  g->segment_loc = xalloc(sizeof(Loc) * (size_t)(ns ? ns : 1));
  for (int s = 0; s < ns; s++) g->segment_loc[s] = NOLOC;
  return ns;
}

/* ---- the model, read off U ---------------------------------------------- */

static void build_model(Model *m, const bool *cut_ok) {
  Graph *g = m->g;
  int nn = g->nnodes;
  m->fb_of_buf = xalloc(sizeof(int) * (size_t)(g->nbufs ? g->nbufs : 1));
  m->fwd_at = xalloc(sizeof(int) * (size_t)(nn ? nn : 1));
  m->scratch = xalloc(sizeof(int64_t) * (size_t)(nn ? nn : 1));
  m->bwd_at = xalloc(sizeof(int) * (size_t)(nn ? nn : 1));
  m->live = xalloc(sizeof(int64_t) * (size_t)(g->nins ? g->nins : 1));
  m->alloc_b = xalloc(sizeof(int64_t) * (size_t)(g->nins ? g->nins : 1));
  for (int i = 0; i < nn; i++) m->fwd_at[i] = m->bwd_at[i] = -1;
  m->seed_at = -1;
  /* forward buffers */
  m->fb = xalloc(sizeof(FBuf) * (size_t)(g->nbufs ? g->nbufs : 1));
  for (int b = 0; b < g->nbufs; b++) {
    const Buf *x = &g->bufs[b];
    m->fb_of_buf[b] = -1;
    if (x->persistent || x->value < 0 || g->vals[x->value].kind != VK_ACT)
      continue;
    FBuf *f = &m->fb[m->nfb];
    f->bytes = x->bytes;
    f->prod = g->vals[x->value].node;
    f->free_at = x->free_at < 0 ? INT32_MAX : x->free_at;
    m->fb_of_buf[b] = m->nfb++;
  }
  /* readers, counted then filled (forward first) */
  int *cnt = xalloc(sizeof(int) * (size_t)(m->nfb ? m->nfb : 1));
  for (int pass = 0; pass < 3; pass++) {
    for (int i = 0; i < g->nins; i++) {
      const Instr *in = &g->ins[i];
      if (pass == 0) {
        int64_t a = 0;
        for (int k = 0; k < in->nalloc; k++) a += g->bufs[in->alloc[k]].bytes;
        m->alloc_b[i] = a;
        m->live[i] = in->live;
        if (in->kind == IK_FWD) m->fwd_at[in->node] = i;
        if (in->kind == IK_BWD) m->bwd_at[in->node] = i;
        if (in->kind == IK_SEED) m->seed_at = i;
      }
      if (in->kind != IK_FWD && in->kind != IK_BWD) continue;
      bool bwd = in->kind == IK_BWD;
      for (int k = 0; k < in->nin; k++) {
        int b = in->in[k].buf;
        int f = b >= 0 ? m->fb_of_buf[b] : -1;
        if (f < 0) continue;
        FBuf *x = &m->fb[f];
        if (pass == 0) *(bwd ? &x->nbwd : &x->nfwd) += 1;
        else if (pass == 1 && !bwd) x->rd[cnt[f]++] = in->node;
        else if (pass == 2 && bwd) x->rd[cnt[f]++] = in->node;
      }
    }
    if (pass == 0)
      for (int f = 0; f < m->nfb; f++) {
        int n = m->fb[f].nfwd + m->fb[f].nbwd;
        m->fb[f].rd = xalloc(sizeof(int) * (size_t)(n ? n : 1));
      }
  }
  /* chain boundaries: after node j, how many buffers produced at or before
   * j are read after it (difference arrays: count and sum of ids) */
  int64_t *dc = xalloc(sizeof(int64_t) * (size_t)(nn + 1));
  int64_t *ds = xalloc(sizeof(int64_t) * (size_t)(nn + 1));
  for (int f = 0; f < m->nfb; f++) {
    const FBuf *x = &m->fb[f];
    int last = x->prod;
    for (int k = 0; k < x->nfwd + x->nbwd; k++)
      if (x->rd[k] > last) last = x->rd[k];
    if (last > x->prod) {
      dc[x->prod]++, dc[last]--;
      ds[x->prod] += f + 1, ds[last] -= f + 1;
    }
  }
  m->sb = xalloc(sizeof(int) * (size_t)(nn + 2));
  m->stage_of = xalloc(sizeof(int) * (size_t)(nn ? nn : 1));
  int *xb = xalloc(sizeof(int) * (size_t)(nn + 1));
  m->exact = true;
  int64_t c = 0, s = 0;
  m->nst = 0;
  m->sb[0] = 0;
  for (int j = 0; j < nn; j++) {
    c += dc[j];
    s += ds[j];
    m->stage_of[j] = m->nst;
    bool cut = c <= 1 && (!cut_ok || j + 1 >= nn || cut_ok[j + 1]);
    if (c > 1 && j + 1 < nn) m->exact = false;
    if (cut || j == nn - 1) {
      xb[m->nst] = c == 1 ? (int)(s - 1) : -1;
      m->sb[++m->nst] = j + 1;
    }
  }
  int ns = m->nst;
  m->keep = xalloc(sizeof(int64_t) * (size_t)(ns + 1));
  m->fwd_first = xalloc(sizeof(int64_t) * (size_t)(ns + 1));
  m->fwd_rest = xalloc(sizeof(int64_t) * (size_t)(ns + 1));
  m->bwd_max = xalloc(sizeof(int64_t) * (size_t)(ns + 1));
  m->x = xalloc(sizeof(int64_t) * (size_t)(ns + 1));
  m->xbuf = xalloc(sizeof(int) * (size_t)(ns + 1));
  m->x_kept = xalloc(sizeof(bool) * (size_t)(ns + 1));
  m->x_cons = xalloc(sizeof(bool) * (size_t)(ns + 1));
  m->can_seg = xalloc(sizeof(bool) * (size_t)(ns + 1));
  m->reached = xalloc(sizeof(bool) * (size_t)(ns + 1));
  m->flops = xalloc(sizeof(int64_t) * (size_t)(ns + 1));
  for (int f = 0; f < m->nfb; f++) {
    FBuf *x = &m->fb[f];
    x->stage = m->stage_of[x->prod];
  }
  for (int r = 0; r < ns; r++) {
    m->can_seg[r] = m->seed_at >= 0;
    m->fwd_first[r] = m->fwd_rest[r] = m->bwd_max[r] = NEG_INF;
    bool first = true, reached = false;
    for (int i = m->sb[r]; i < m->sb[r + 1]; i++) {
      int64_t fl = op_flops(g, i);
      m->flops[r] = fl > INT64_MAX - m->flops[r] ? INT64_MAX : m->flops[r] + fl;
      if (m->fwd_at[i] >= 0) {
        int64_t l = m->live[m->fwd_at[i]];
        if (first) m->fwd_first[r] = l;
        else m->fwd_rest[r] = max64(m->fwd_rest[r], l);
        first = false;
      }
      if (m->bwd_at[i] >= 0) {
        m->bwd_max[r] = max64(m->bwd_max[r], m->live[m->bwd_at[i]]);
        reached = true;
      }
      if (!is_view_node(g, i))
        for (int o = 0; o < g->nodes[i].nout; o++)
          if (g->vals[g->nodes[i].out[o]].is_output) m->can_seg[r] = false;
    }
    m->reached[r] = reached;
    m->xbuf[r] = xb[r];
    if (xb[r] >= 0) {
      const FBuf *x = &m->fb[xb[r]];
      m->x[r] = x->bytes;
      m->x_kept[r] = m->seed_at >= 0 && x->free_at >= m->seed_at;
      for (int k = x->nfwd; k < x->nfwd + x->nbwd; k++)
        if (m->stage_of[x->rd[k]] == r + 1) m->x_cons[r] = true;
    }
  }
  for (int f = 0; f < m->nfb; f++) {
    const FBuf *x = &m->fb[f];
    if (x->free_at == INT32_MAX) m->can_seg[x->stage] = false;
    else if (m->seed_at >= 0 && x->free_at >= m->seed_at)
      m->keep[x->stage] += x->bytes; /* the crossing tensor included */
  }
  m->seed_live = m->seed_at >= 0 ? m->live[m->seed_at] : 0;
  /* what segments cannot change: everything after the last backward step
   * (the optimizer), and the persistent bytes */
  int last_bwd = m->seed_at;
  for (int i = 0; i < g->nins; i++)
    if (g->ins[i].kind == IK_BWD) last_bwd = i;
  m->floor_live = g->persistent_bytes;
  for (int i = last_bwd + 1; m->seed_at >= 0 && i < g->nins; i++)
    m->floor_live = max64(m->floor_live, m->live[i]);
  if (m->seed_at < 0) m->floor_live = g->peak;
}

/* ---- one segment's own terms --------------------------------------------- */

typedef struct {
  int64_t need_fb;  /* forward and backward of its stages (monotone in t) */
  int64_t need_rec; /* its recomputation */
  int64_t save;     /* savings in force after it */
} SegTerms;

/* Input tensor kept longer than in U: the crossing before stage i, when U
 * freed it in the forward. */
static int64_t extra_in(const Model *m, int i) {
  return i > 0 && m->xbuf[i - 1] >= 0 && !m->x_kept[i - 1] ? m->x[i - 1] : 0;
}

/* The live bytes of the recomputation of segment [i..t], before any
 * savings D of earlier segments are taken off. */
static int64_t recompute_need(const Model *m, int i, int t, int64_t ein) {
  const Graph *g = m->g;
  int lo = m->sb[i], hi = m->sb[t + 1] - 1;
  int u0 = -1;
  for (int n = hi; n >= lo && u0 < 0; n--)
    if (m->bwd_at[n] >= 0) u0 = m->bwd_at[n];
  for (int n = lo; n <= hi; n++)
    if (m->bwd_at[n] >= 0 && m->bwd_at[n] < u0) u0 = m->bwd_at[n];
  if (u0 < 0) return NEG_INF;
  int64_t live = m->live[u0] - m->alloc_b[u0] + ein;
  /* U keeps the segment's saved buffers here; the recomputation rebuilds
   * them */
  for (int n = lo; n <= hi; n++) {
    if (is_view_node(g, n)) continue;
    for (int o = 0; o < g->nodes[n].nout; o++) {
      int f = m->fb_of_buf[g->val_buf[g->nodes[n].out[o]]];
      if (f >= 0 && m->fb[f].free_at >= u0) live -= m->fb[f].bytes;
    }
  }
  int64_t peak = NEG_INF;
  int xin = i > 0 ? m->xbuf[i - 1] : -1;
  int xin_last = -1;
  if (ein && xin >= 0)
    for (int k = 0; k < m->fb[xin].nfwd; k++) {
      int r = m->fb[xin].rd[k];
      if (r >= lo && r <= hi && r > xin_last) xin_last = r;
    }
  /* when each copy dies: after its last reader in the recomputation,
   * unless a backward step of the segment reads it (then it outlives it) */
  int64_t *dies = m->scratch;
  memset(dies, 0, sizeof(int64_t) * (size_t)(hi - lo + 1));
  for (int p = lo; p <= hi; p++) {
    if (is_view_node(g, p)) continue;
    for (int o = 0; o < g->nodes[p].nout; o++) {
      int f = m->fb_of_buf[g->val_buf[g->nodes[p].out[o]]];
      if (f < 0) continue;
      const FBuf *x = &m->fb[f];
      bool bwd = false;
      int last = p;
      for (int k = 0; k < x->nfwd; k++)
        if (x->rd[k] <= hi && x->rd[k] > last) last = x->rd[k];
      for (int k = x->nfwd; k < x->nfwd + x->nbwd; k++)
        if (x->rd[k] >= lo && x->rd[k] <= hi) bwd = true;
      if (!bwd) dies[last - lo] += x->bytes;
    }
  }
  for (int n = lo; n <= hi; n++) {
    if (!is_view_node(g, n)) {
      const Node *nd = &g->nodes[n];
      for (int o = 0; o < nd->nout; o++) {
        int f = m->fb_of_buf[g->val_buf[nd->out[o]]];
        if (f >= 0) live += m->fb[f].bytes;
      }
      peak = max64(peak, live);
    }
    live -= dies[n - lo];
    if (n == xin_last) live -= ein;
  }
  return peak;
}

/* ---- the dynamic program ------------------------------------------------- */

static void front_prune(Front *f);

/* Adds a candidate; prunes as the list doubles, so it stays near the size
 * of the Pareto front. */
static void front_push(Front *f, Ent e) {
  *VEC_PUSH(f->a, f->n, f->cap) = e;
  if (f->n > 2 * f->pruned + 256) {
    front_prune(f);
    f->pruned = f->n;
  }
}

static int ent_cmp(const void *pa, const void *pb) {
  const Ent *a = pa, *b = pb;
  if (a->D != b->D) return a->D > b->D ? -1 : 1;
  if (a->c != b->c) return a->c < b->c ? -1 : 1;
  return a->pk < b->pk ? -1 : a->pk > b->pk;
}

/* Keeps the Pareto points: D descending, c strictly descending. */
static void front_prune(Front *f) {
  if (f->n < 2) return;
  qsort(f->a, (size_t)f->n, sizeof *f->a, ent_cmp);
  int k = 0;
  for (int i = 0; i < f->n; i++)
    if (k == 0 || f->a[i].c < f->a[k - 1].c) f->a[k++] = f->a[i];
  f->n = k;
}

/* Minimum-FLOPs placement with model peak <= B. Fills seg_end (per stage:
 * last stage of the segment starting there, or -1) and returns true, or
 * returns false when none fits the model. */
static bool dp(const Model *m, int64_t B, int *seg_end, int64_t *cost,
               int64_t *model_peak) {
  int ns = m->nst;
  if (m->floor_live > B) return false;
  Front *fr = xalloc(sizeof(Front) * (size_t)(2 * (ns + 1)));
  front_push(&fr[0], (Ent){.D = 0, .c = 0, .pk = m->floor_live, .from = -1,
                           .from_bit = 0, .from_e = -1, .seg = -1});
  int64_t *pre = xalloc(sizeof(int64_t) * (size_t)(ns + 1));
  for (int i = 0; i < ns; i++) {
    for (int bit = 0; bit < 2; bit++) {
      Front *f = &fr[2 * i + bit];
      front_prune(f);
      if (f->n == 0) continue;
      int64_t dmax = f->a[0].D;
      /* one stage, not in a segment */
      int64_t adj = bit && m->x_kept[i - 1] && !m->x_cons[i - 1] &&
                            m->xbuf[i - 1] >= 0
                        ? m->x[i - 1]
                        : 0;
      int64_t fneed = max64(m->fwd_first[i], m->fwd_rest[i]);
      for (int e = 0; e < f->n; e++) {
        const Ent *p = &f->a[e];
        int64_t l = max64(fneed - p->D, m->bwd_max[i] - p->D - adj);
        if (l > B) continue;
        front_push(&fr[2 * (i + 1)],
                   (Ent){.D = p->D + adj, .c = p->c, .pk = max64(p->pk, l),
                         .from = i, .from_bit = bit, .from_e = e, .seg = -1});
      }
      /* a segment [i..t] */
      if (!m->can_seg[i]) continue;
      int64_t ein = extra_in(m, i);
      int64_t need_fb = max64(m->fwd_first[i], m->fwd_rest[i] + ein);
      int64_t keep = 0, flops = 0, pre2 = 0;
      bool any_reached = false;
      for (int t = i; t < ns && m->can_seg[t]; t++) {
        /* what U keeps of the segment's stages before t, freed by now:
         * all of stages i..t-2, and stage t-1 but for its output */
        if (t >= i + 1) {
          int64_t last = m->keep[t - 1] -
                         (m->xbuf[t - 1] >= 0 && m->x_kept[t - 1] ? m->x[t - 1]
                                                                  : 0);
          pre[t] = (t >= i + 2 ? pre2 : 0) + last;
          pre2 += m->keep[t - 1];
        } else {
          pre[t] = 0;
          pre2 = 0;
        }
        if (t > i)
          need_fb = max64(need_fb, m->fwd_first[t] - pre[t] + ein);
        if (t > i)
          need_fb = max64(need_fb, m->fwd_rest[t] - pre[t] + ein);
        need_fb = max64(need_fb, m->bwd_max[t]);
        if (need_fb - dmax > B) break;
        keep += m->keep[t];
        flops = m->flops[t] > INT64_MAX - flops ? INT64_MAX : flops + m->flops[t];
        any_reached |= m->reached[t];
        /* a segment no backward step reaches is never recomputed: it is
         * the same as no segment */
        if (!any_reached) continue;
        int64_t need_rec = recompute_need(m, i, t, ein);
        /* prune: on a chain the recomputation of a longer segment holds
         * at least what a shorter one does (each stage adds what it saves) */
        if (need_rec - dmax > B) break;
        int64_t need = max64(need_fb, need_rec);
        int64_t save = keep - (m->xbuf[t] >= 0 && m->x_kept[t] ? m->x[t] : 0)
                       - ein;
        for (int e = 0; e < f->n; e++) {
          const Ent *p = &f->a[e];
          if (need - p->D > B) break; /* D only falls from here */
          int64_t c = p->c > INT64_MAX - flops ? INT64_MAX : p->c + flops;
          front_push(&fr[2 * (t + 1) + 1],
                     (Ent){.D = p->D + save, .c = c,
                           .pk = max64(p->pk, need - p->D), .from = i,
                           .from_bit = bit, .from_e = e, .seg = t});
        }
      }
    }
  }
  /* the seed, after every forward */
  int best_bit = -1, best_e = -1;
  int64_t best_c = INT64_MAX, best_pk = 0;
  for (int bit = 0; bit < 2; bit++) {
    Front *f = &fr[2 * ns + bit];
    front_prune(f);
    for (int e = 0; e < f->n; e++) {
      const Ent *p = &f->a[e];
      int64_t l = m->seed_at >= 0 ? m->seed_live - p->D : NEG_INF;
      if (l > B) continue;
      int64_t pk = max64(p->pk, l);
      if (p->c < best_c || (p->c == best_c && pk < best_pk)) {
        best_c = p->c, best_pk = pk, best_bit = bit, best_e = e;
      }
    }
  }
  if (best_bit < 0) return false;
  for (int r = 0; r < ns; r++) seg_end[r] = -1;
  int b = ns, bit = best_bit, e = best_e;
  while (b > 0) {
    const Ent *p = &fr[2 * b + bit].a[e];
    if (p->seg >= 0) seg_end[p->from] = p->seg;
    b = p->from, bit = p->from_bit, e = p->from_e;
  }
  *cost = best_c;
  *model_peak = best_pk;
  return true;
}

/* ---- the entry point ----------------------------------------------------- */

/* Places checkpoints so that the peak of the step is at most `budget`
 * bytes with the least recomputation (see the top of this file). cut_ok, if
 * not NULL, says per node whether a segment may begin or end right before
 * it (--emit-mdl allows only boundaries it can write back). Returns true if
 * the verified peak fits; otherwise the graph holds the placement of the
 * smallest peak found, and the result says what it is. */
bool pass_placement(Graph *g, int64_t budget, const bool *cut_ok,
                    Placement *res) {
  memset(res, 0, sizeof *res);
  for (int i = 0; i < g->nnodes; i++) g->nodes[i].segment = -1;
  g->nsegments = 0;
  rebuild(g);
  res->base_peak = g->peak;
  res->base_peak_at = g->peak_at;
  for (int i = 0; i < g->nnodes; i++) {
    int64_t f = op_flops(g, i);
    res->fwd_flops = f > INT64_MAX - res->fwd_flops ? INT64_MAX
                                                    : res->fwd_flops + f;
  }
  Model m = {.g = g};
  build_model(&m, cut_ok);
  res->stages = m.nst;
  res->chain = m.exact;
  int *seg_end = xalloc(sizeof(int) * (size_t)(m.nst + 1));
  if (g->peak <= budget) {
    res->fits = true;
    res->peak = g->peak;
    res->model_peak = g->peak;
    res->verified_model = true;
    return true;
  }
  /* the budget as the DP sees it: lowered by any excess the real passes
   * found over the model */
  int64_t B = budget, cost = 0, mp = 0;
  for (int round = 0; round < 6; round++) {
    if (!dp(&m, B, seg_end, &cost, &mp)) break;
    res->nsegments = apply(&m, seg_end);
    rebuild(g);
    res->rounds = round + 1;
    if (g->peak <= budget) {
      res->fits = true;
      res->peak = g->peak;
      res->extra_flops = cost;
      res->model_peak = mp;
      res->verified_model = mp == g->peak;
      return true;
    }
    B -= g->peak - budget > 0 ? g->peak - budget : 1;
  }
  /* nothing fits: the smallest model-feasible budget, by bisection */
  int64_t lo = m.floor_live, hi = res->base_peak;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (dp(&m, mid, seg_end, &cost, &mp)) hi = mid;
    else lo = mid + 1;
  }
  if (!dp(&m, hi, seg_end, &cost, &mp)) {
    for (int r = 0; r < m.nst; r++) seg_end[r] = -1;
    cost = 0;
    mp = res->base_peak;
  }
  res->nsegments = apply(&m, seg_end);
  rebuild(g);
  if (g->peak > res->base_peak) { /* never worse than no placement */
    for (int r = 0; r < m.nst; r++) seg_end[r] = -1;
    res->nsegments = apply(&m, seg_end);
    rebuild(g);
    cost = 0;
    mp = g->peak;
  }
  res->fits = g->peak <= budget;
  res->peak = g->peak;
  res->extra_flops = cost;
  res->model_peak = mp;
  res->verified_model = mp == g->peak;
  return res->fits;
}
