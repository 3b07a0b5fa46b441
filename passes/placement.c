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
 * The model is exact on a chain of stages (docs/placement.md): sim()
 * simulates each piece's own buffers, recomputed copies and the crossing
 * tensor before it with the real passes' free points; what stages before
 * hold is U's kept bytes less D, and gradients are read off U. The chosen
 * placement is still built and measured with the real passes
 * (pipeline_rebuild_step: autodiff, liveness); if it ever exceeded the
 * budget the DP would run again with the budget lowered by the excess.
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
 * Requires: pass_precision on `g` (a step built before is built again).
 * Maintains: the forward graph apart from segments. Sets: Node.segment and
 * g->nsegments (any segments the source had are replaced), builds the step
 * (pipeline_rebuild_step: autodiff, liveness). Invalidates: the arena (run
 * pass_arena again).
 */
#include "mdlc.h"

#include <stdlib.h>
#include <string.h>

#define NEG_INF INT64_MIN / 4

/* One buffer of U holding forward data (an activation's storage). */
typedef struct {
  int64_t bytes;   /* its size */
  int stage;       /* stage of the producing node */
  int prod;        /* producing node */
  bool to_end;     /* kept to the end of the step (loss, outputs) */
  bool kept;       /* alive at U's seed: some backward step reads it */
  int *rd;         /* reader nodes, forward then backward (into rd pool) */
  int nfwd, nbwd;  /* how many of each */
} FBuf;

typedef struct {
  int64_t D;       /* savings in force for the stages after the next */
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

/* Scratch of front_prune, kept across calls (malloc'd, freed by dp). */
typedef struct {
  Ent *tmp;
  int *run;
  int cap;
} Scratch;

typedef struct {
  Graph *g;
  int nst;             /* stages */
  int *sb;             /* stage r = nodes [sb[r], sb[r+1]) */
  int *stage_of;       /* node -> stage */
  FBuf *fb;            /* forward buffers of U */
  int nfb;
  int *fb_of_buf;      /* Buf index -> FBuf index, -1 */
  int *fwd_at, *bwd_at;/* node -> its instruction in U, -1 */
  int seed_at;         /* U's seed instruction, -1 (no backward) */
  int64_t *g_at;       /* other non-persistent bytes (gradients, ...) live
                          at each U instruction, after its allocations */
  int64_t *g_before;   /* the same before its allocations */
  int64_t floor_live;  /* U's live bytes where segments change nothing */
  int *own_lo, *own_hi;/* per stage: U instructions it owns, forward part */
  int *bown_lo, *bown_hi; /* and backward part (-1..-2 when none) */
  int *anchor;         /* per stage: the U instruction before which a
                          segment ending here is recomputed, -1 */
  /* per stage */
  int64_t *keep;       /* bytes of its buffers alive at U's seed */
  int64_t *kte_suf;    /* bytes kept to the end by stages r.. */
  int64_t *keep_pre;   /* keep of stages 0..r-1 */
  int64_t *min_ge;     /* min over r' >= r of g_before[anchor[r']] + kte_suf[r'+1] */
  int *xbuf;           /* FBuf crossing after it, -1 */
  bool *x_cons;        /* the next stage's backward reads that tensor */
  bool *can_seg;       /* may be in a segment */
  bool *reached;       /* some node of it has a backward step */
  int64_t *flops;      /* forward FLOPs of the stage */
  int *fbs_lo;         /* FBufs of stage r: fbs[fbs_lo[r] .. fbs_lo[r+1]) */
  int *fbs;
  bool exact;          /* every op boundary is a chain boundary */
  /* scratch for sim(): the window of one piece */
  int *widx;           /* U instruction -> window index, -1 */
  int *wrecidx;        /* node -> window index of its recomputation */
  int w_u0, w_u1;      /* first U instruction of each part */
  int nw, nfw;         /* window size, forward part size */
  int64_t *wg;         /* their non-forward bytes (gradients, kept to end) */
  bool *wrec;          /* a recomputation (for the lower bound) */
  int *wstage;         /* their stage */
  int64_t *wd;         /* difference array of live bytes */
} Model;

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static bool is_view_node(const Graph *g, int n) {
  Op op = g->nodes[n].op;
  return (op_info[op].flags & OF_VIEW) || (g->cfg.infer && op == OP_DROPOUT);
}

/* Sets the segments: seg_end[r] = last stage of the segment starting at
 * stage r, or -1. Returns the number of segments. */
static int apply(Model *m, const int *seg_end) {
  Graph *g = m->g;
  int ns = 0;
  for (int i = 0; i < g->nnodes; i++) g->nodes[i].segment = -1;
  for (int r = 0; r < m->nst; r++) {
    int t = seg_end[r];
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

#define ALLOC(p, n) ((p) = xalloc(sizeof *(p) * (size_t)((n) > 0 ? (n) : 1)))

static void build_model(Model *m, const bool *cut_ok) {
  Graph *g = m->g;
  int nn = g->nnodes, ni = g->nins;
  ALLOC(m->fb_of_buf, g->nbufs);
  ALLOC(m->fwd_at, nn);
  ALLOC(m->bwd_at, nn);
  ALLOC(m->g_at, ni);
  ALLOC(m->g_before, ni);
  for (int i = 0; i < nn; i++) m->fwd_at[i] = m->bwd_at[i] = -1;
  m->seed_at = -1;
  ALLOC(m->fb, g->nbufs);
  for (int b = 0; b < g->nbufs; b++) {
    const Buf *x = &g->bufs[b];
    m->fb_of_buf[b] = -1;
    if (x->persistent || x->value < 0 || g->vals[x->value].kind != VK_ACT)
      continue;
    FBuf *f = &m->fb[m->nfb];
    f->bytes = x->bytes;
    f->prod = g->vals[x->value].node;
    f->to_end = x->free_at < 0;
    m->fb_of_buf[b] = m->nfb++;
  }
  for (int i = 0; i < ni; i++) {
    const Instr *in = &g->ins[i];
    if (in->kind == IK_FWD) m->fwd_at[in->node] = i;
    if (in->kind == IK_BWD) m->bwd_at[in->node] = i;
    if (in->kind == IK_SEED) m->seed_at = i;
  }
  for (int b = 0; b < g->nbufs; b++) {
    int f = m->fb_of_buf[b];
    if (f >= 0)
      m->fb[f].kept = m->fb[f].to_end ||
                      (m->seed_at >= 0 && g->bufs[b].free_at >= m->seed_at);
  }
  /* the other non-persistent buffers (gradients, gathered copies): their
   * live bytes do not depend on the segments, only on U's instruction */
  {
    int64_t *da = xalloc(sizeof(int64_t) * (size_t)(ni + 1));
    int64_t *df = xalloc(sizeof(int64_t) * (size_t)(ni + 1));
    for (int b = 0; b < g->nbufs; b++) {
      const Buf *x = &g->bufs[b];
      if (x->persistent || m->fb_of_buf[b] >= 0) continue;
      da[x->alloc_at] += x->bytes;
      if (x->free_at >= 0) df[x->free_at] += x->bytes;
    }
    int64_t live = 0;
    for (int i = 0; i < ni; i++) {
      m->g_before[i] = live;
      live += da[i];
      m->g_at[i] = live;
      live -= df[i];
    }
  }
  /* readers, counted then filled (forward first) */
  int *cnt = xalloc(sizeof(int) * (size_t)(m->nfb ? m->nfb : 1));
  for (int pass = 0; pass < 3; pass++) {
    for (int i = 0; i < ni; i++) {
      const Instr *in = &g->ins[i];
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
      for (int f = 0; f < m->nfb; f++)
        ALLOC(m->fb[f].rd, m->fb[f].nfwd + m->fb[f].nbwd);
  }
  /* chain boundaries: after node j, how many buffers produced at or before
   * j are read after it (difference arrays: count and sum of ids) */
  int64_t *dc = xalloc(sizeof(int64_t) * (size_t)(nn + 1));
  int64_t *ds = xalloc(sizeof(int64_t) * (size_t)(nn + 1));
  for (int f = 0; f < m->nfb; f++) {
    const FBuf *x = &m->fb[f];
    int last = x->to_end ? nn : x->prod;
    for (int k = 0; k < x->nfwd + x->nbwd; k++)
      if (x->rd[k] > last) last = x->rd[k];
    if (last > x->prod) {
      dc[x->prod]++, dc[last < nn ? last : nn]--;
      ds[x->prod] += f + 1, ds[last < nn ? last : nn] -= f + 1;
    }
  }
  ALLOC(m->sb, nn + 2);
  ALLOC(m->stage_of, nn);
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
  ALLOC(m->keep, ns + 1);
  ALLOC(m->kte_suf, ns + 2);
  ALLOC(m->keep_pre, ns + 2);
  ALLOC(m->min_ge, ns + 1);
  ALLOC(m->xbuf, ns + 1);
  ALLOC(m->x_cons, ns + 1);
  ALLOC(m->can_seg, ns + 1);
  ALLOC(m->reached, ns + 1);
  ALLOC(m->flops, ns + 1);
  ALLOC(m->own_lo, ns + 1);
  ALLOC(m->own_hi, ns + 1);
  ALLOC(m->bown_lo, ns + 1);
  ALLOC(m->bown_hi, ns + 1);
  ALLOC(m->anchor, ns + 1);
  ALLOC(m->fbs_lo, ns + 2);
  ALLOC(m->fbs, m->nfb);
  for (int f = 0; f < m->nfb; f++) {
    FBuf *x = &m->fb[f];
    x->stage = m->stage_of[x->prod];
    m->fbs_lo[x->stage + 1]++;
    if (x->kept) m->keep[x->stage] += x->bytes;
    if (x->to_end) m->kte_suf[x->stage] += x->bytes;
  }
  for (int r = 0; r < ns; r++) m->fbs_lo[r + 1] += m->fbs_lo[r];
  {
    int *fill = xalloc(sizeof(int) * (size_t)(ns + 1));
    for (int f = 0; f < m->nfb; f++) {
      int r = m->fb[f].stage;
      m->fbs[m->fbs_lo[r] + fill[r]++] = f;
    }
  }
  for (int r = ns - 1; r >= 0; r--) m->kte_suf[r] += m->kte_suf[r + 1];
  for (int r = 0; r < ns; r++) m->keep_pre[r + 1] = m->keep_pre[r] + m->keep[r];
  /* which stage owns each U instruction: that of the node of the last
   * forward or backward step at or before it (the seed and the optimizer
   * updates between backward steps go with the step before them) */
  for (int r = 0; r < ns; r++) {
    m->own_lo[r] = m->bown_lo[r] = INT32_MAX;
    m->own_hi[r] = m->bown_hi[r] = -1;
  }
  int owner = -1;
  for (int i = 0; i < ni; i++) {
    const Instr *in = &g->ins[i];
    if (in->kind == IK_FWD || in->kind == IK_BWD) owner = m->stage_of[in->node];
    if (owner < 0) continue; /* nothing before the first op */
    bool bwd = m->seed_at >= 0 && i > m->seed_at;
    int *lo = bwd ? &m->bown_lo[owner] : &m->own_lo[owner];
    int *hi = bwd ? &m->bown_hi[owner] : &m->own_hi[owner];
    if (i < *lo) *lo = i;
    if (i > *hi) *hi = i;
  }
  for (int r = 0; r < ns; r++) {
    m->can_seg[r] = m->seed_at >= 0;
    m->anchor[r] = r > 0 ? m->anchor[r - 1] : -1;
    for (int i = m->sb[r]; i < m->sb[r + 1]; i++) {
      int64_t fl = op_flops(g, i);
      m->flops[r] = fl > INT64_MAX - m->flops[r] ? INT64_MAX : m->flops[r] + fl;
      if (m->bwd_at[i] >= 0) {
        m->reached[r] = true;
        m->anchor[r] = m->bwd_at[i]; /* the last reached node's step */
      }
      if (!is_view_node(g, i))
        for (int o = 0; o < g->nodes[i].nout; o++)
          if (g->vals[g->nodes[i].out[o]].is_output) m->can_seg[r] = false;
    }
    m->xbuf[r] = xb[r];
    if (xb[r] >= 0) {
      const FBuf *x = &m->fb[xb[r]];
      for (int k = x->nfwd; k < x->nfwd + x->nbwd; k++)
        if (m->stage_of[x->rd[k]] > r) m->x_cons[r] = true;
    }
  }
  for (int f = 0; f < m->nfb; f++)
    if (m->fb[f].to_end) m->can_seg[m->fb[f].stage] = false;
  int64_t mn = INT64_MAX / 4;
  for (int r = ns - 1; r >= 0; r--) {
    if (m->anchor[r] >= 0)
      mn = min64(mn, m->g_before[m->anchor[r]] + m->kte_suf[r + 1]);
    m->min_ge[r] = mn;
  }
  /* what segments cannot change: everything after the last backward step
   * (the optimizer), and the persistent bytes */
  int last_bwd = m->seed_at;
  for (int i = 0; i < ni; i++)
    if (g->ins[i].kind == IK_BWD) last_bwd = i;
  m->floor_live = g->persistent_bytes;
  for (int i = last_bwd + 1; m->seed_at >= 0 && i < ni; i++)
    m->floor_live = max64(m->floor_live, g->ins[i].live);
  if (m->seed_at < 0) m->floor_live = g->peak;
  ALLOC(m->widx, ni);
  for (int u = 0; u < ni; u++) m->widx[u] = -1;
  ALLOC(m->wrecidx, nn);
  ALLOC(m->wg, 2 * ni + nn);
  ALLOC(m->wrec, 2 * ni + nn);
  ALLOC(m->wstage, 2 * ni + nn);
  ALLOC(m->wd, 2 * ni + nn + 1);
}

/* ---- one piece, simulated ------------------------------------------------ */

/* Where an event of the schedule with segments falls in the window of a
 * piece (its instructions in order: forward part, recomputation, backward
 * part): its index, or for an event outside the window, the index of the
 * last window instruction before it (-1: before them all). */
static int w_ins(const Model *m, int u) {
  if (m->widx[u] >= 0) return m->widx[u];
  if (u < m->w_u0) return -1;
  if (u < m->w_u1) return m->nfw - 1; /* between the two parts */
  return m->nw - 1;
}

/* Adds `bytes` over the window instructions a..z (indices). */
static void w_add(Model *m, int a, int z, int64_t bytes) {
  if (a < 0) a = 0;
  if (a > z) return;
  m->wd[a] += bytes;
  m->wd[z + 1] -= bytes;
}

/* The live bytes of every instruction of the piece that covers stages
 * i..j (a segment if seg, else the one stage i == j), with the piece
 * before it a segment if b, exactly as the real passes would count them,
 * less the savings D of the pieces before (see the top of this file).
 * Returns the largest; *lb gets a lower bound of that figure for every
 * segment [i..j'] with j' >= j (the forward steps and the recomputation of
 * the stages before j do not depend on j'). */
static int64_t sim(Model *m, int i, int j, bool b, bool seg, int64_t *lb) {
  const Graph *g = m->g;
  int lo_n = m->sb[i], hi_n = m->sb[j + 1]; /* the piece's nodes */
  int anchor = seg ? m->anchor[j] : -1;
  if (seg && anchor >= 0 && m->stage_of[g->ins[anchor].node] < i) anchor = -1;
  /* the window: forward part, recomputation, backward part */
  int nw = 0;
  m->w_u0 = INT32_MAX;
  for (int r = i; r <= j; r++)
    for (int u = m->own_lo[r]; u <= m->own_hi[r]; u++) {
      if (u < m->w_u0) m->w_u0 = u;
      m->widx[u] = nw;
      m->wg[nw] = m->g_at[u] + (u >= m->seed_at ? m->kte_suf[j + 1] : 0);
      m->wrec[nw] = false;
      m->wstage[nw++] = r;
    }
  m->nfw = nw;
  if (anchor >= 0)
    for (int n = lo_n; n < hi_n; n++) {
      if (is_view_node(g, n)) continue;
      m->wrecidx[n] = nw;
      m->wg[nw] = m->g_before[anchor] + m->kte_suf[j + 1];
      m->wrec[nw] = true;
      m->wstage[nw++] = m->stage_of[n];
    }
  m->w_u1 = INT32_MAX;
  for (int r = j; r >= i; r--)
    for (int u = m->bown_lo[r]; u <= m->bown_hi[r]; u++) {
      if (u < m->w_u1) m->w_u1 = u;
      m->widx[u] = nw;
      m->wg[nw] = m->g_at[u] + m->kte_suf[j + 1];
      m->wrec[nw] = false;
      m->wstage[nw++] = r;
    }
  /* with no backward part, what follows the forward part is after it */
  if (m->w_u1 == INT32_MAX) m->w_u1 = m->w_u0 == INT32_MAX ? 0 : m->w_u0;
  if (anchor >= 0 && anchor < m->w_u1) m->w_u1 = anchor;
  m->nw = nw;
  if (nw == 0) {
    *lb = NEG_INF;
    return NEG_INF;
  }
  memset(m->wd, 0, sizeof(int64_t) * (size_t)(nw + 1));
  int end = nw - 1 + 1; /* kept to the end: past the window */
  /* the crossing tensor before the piece (its other buffers are constant) */
  int64_t cst = g->persistent_bytes + (i >= 2 ? m->keep_pre[i - 1] : 0);
  if (i > 0) {
    int xf = m->xbuf[i - 1];
    int64_t xk = xf >= 0 && m->fb[xf].kept ? m->fb[xf].bytes : 0;
    if (!b) cst += m->keep[i - 1] - xk;
    if (xf >= 0) {
      const FBuf *x = &m->fb[xf];
      int z = x->to_end ? end : -1;
      for (int k = 0; k < x->nfwd; k++) {
        int n = x->rd[k];
        z = z > w_ins(m, m->fwd_at[n]) ? z : w_ins(m, m->fwd_at[n]);
        if (anchor >= 0 && n >= lo_n && n < hi_n && m->wrecidx[n] > z)
          z = m->wrecidx[n];
      }
      for (int k = x->nfwd; k < x->nfwd + x->nbwd; k++) {
        int n = x->rd[k];
        if (n < lo_n && b) continue; /* the segment before reads its copy */
        int w = w_ins(m, m->bwd_at[n]);
        if (w > z) z = w;
      }
      w_add(m, 0, z < nw ? z : nw - 1, x->bytes);
    }
  }
  /* the piece's own buffers, and their recomputed copies */
  for (int k0 = m->fbs_lo[i]; k0 < m->fbs_lo[j + 1]; k0++) {
    const FBuf *x = &m->fb[m->fbs[k0]];
    int a = w_ins(m, m->fwd_at[x->prod]);
    int z = x->to_end ? nw - 1 : a;
    int ra = anchor >= 0 ? m->wrecidx[x->prod] : 0, rz = ra;
    for (int k = 0; k < x->nfwd; k++) {
      int n = x->rd[k];
      int w = w_ins(m, m->fwd_at[n]);
      if (w > z) z = w;
      if (anchor >= 0 && n < hi_n && m->wrecidx[n] > rz) rz = m->wrecidx[n];
    }
    for (int k = x->nfwd; k < x->nfwd + x->nbwd; k++) {
      int n = x->rd[k];
      int w = w_ins(m, m->bwd_at[n]);
      if (seg && n < hi_n) {
        if (anchor >= 0 && w > rz) rz = w;
      } else if (w > z) {
        z = w;
      }
    }
    w_add(m, a, z, x->bytes);
    if (anchor >= 0) w_add(m, ra, rz, x->bytes);
  }
  int64_t live = 0, pk = NEG_INF, low = NEG_INF;
  int64_t gdiff = anchor >= 0 ? m->min_ge[j] - (m->g_before[anchor] +
                                                m->kte_suf[j + 1])
                              : 0;
  for (int w = 0; w < nw; w++) {
    live += m->wd[w];
    int64_t l = cst + m->wg[w] + live;
    pk = max64(pk, l);
    if (w < m->nfw) low = max64(low, l);
    else if (m->wrec[w] && m->wstage[w] < j) low = max64(low, l + gdiff);
  }
  /* reset the index maps */
  for (int r = i; r <= j; r++) {
    for (int u = m->own_lo[r]; u <= m->own_hi[r]; u++) m->widx[u] = -1;
    for (int u = m->bown_lo[r]; u <= m->bown_hi[r]; u++) m->widx[u] = -1;
  }
  *lb = low;
  return pk;
}

/* Savings, for the stages after the next, of stage i-1's buffers once the
 * piece at i is chosen (b: stage i-1 ended a segment; seg: the piece at i
 * is one). */
static int64_t save_before(const Model *m, int i, bool b, bool seg) {
  if (i == 0) return 0;
  int xf = m->xbuf[i - 1];
  int64_t x = xf >= 0 ? m->fb[xf].bytes : 0;
  bool kept = xf >= 0 && m->fb[xf].kept;
  bool alive = xf >= 0 && ((b ? m->x_cons[i - 1] : kept) || seg);
  int64_t far = (b ? 0 : m->keep[i - 1] - (kept ? x : 0)) + (alive ? x : 0);
  return m->keep[i - 1] - far;
}

/* ---- the dynamic program ------------------------------------------------- */

static void front_prune(Scratch *sc, Front *f);

/* Adds a candidate; prunes as the list doubles, so it stays near the size
 * of the Pareto front. */
static void front_push(Scratch *sc, Front *f, Ent e) {
  if (f->n == f->cap) { /* malloc'd, freed by dp: a DP makes many fronts */
    f->cap = f->cap ? 2 * f->cap : 16;
    f->a = realloc(f->a, sizeof(Ent) * (size_t)f->cap);
    if (!f->a) ICE("out of memory: a front of %d points", f->cap);
  }
  f->a[f->n++] = e;
  if (f->n > 4 * f->pruned + 1024) {
    front_prune(sc, f);
    f->pruned = f->n;
  }
}

/* The front's order: D descending, then c ascending. */
static bool ent_before(const Ent *a, const Ent *b) {
  return a->D > b->D || (a->D == b->D && a->c < b->c);
}

/* Keeps the Pareto points: D descending, c strictly descending. The list
 * is a concatenation of sorted runs (each batch pushed from one front is a
 * shifted copy of that front), so a bottom-up merge of its natural runs
 * sorts it in O(n log runs). */
static void front_prune(Scratch *sc, Front *f) {
  if (f->n < 2) return;
  int n = f->n, nr = 0;
  if (n + 1 > sc->cap) {
    sc->cap = 2 * (n + 1);
    free(sc->tmp);
    free(sc->run);
    sc->tmp = malloc(sizeof(Ent) * (size_t)sc->cap);
    sc->run = malloc(sizeof(int) * (size_t)sc->cap);
    if (!sc->tmp || !sc->run)
      ICE("out of memory pruning a front of %d points", n);
  }
  int *run = sc->run;
  Ent *tmp = sc->tmp;
  run[nr++] = 0;
  for (int i = 1; i < n; i++)
    if (ent_before(&f->a[i], &f->a[i - 1])) run[nr++] = i;
  run[nr] = n;
  Ent *src = f->a, *dst = tmp;
  while (nr > 1) {
    int k = 0;
    for (int r = 0; r < nr; r += 2) {
      int lo = run[r], mid = run[r + 1], hi = r + 2 <= nr ? run[r + 2] : mid;
      if (r + 1 >= nr) hi = mid = run[nr];
      int a = lo, b = mid, o = lo;
      while (a < mid && b < hi)
        dst[o++] = ent_before(&src[b], &src[a]) ? src[b++] : src[a++];
      while (a < mid) dst[o++] = src[a++];
      while (b < hi) dst[o++] = src[b++];
      run[k++] = lo;
    }
    run[k] = n;
    nr = k;
    Ent *t = src;
    src = dst;
    dst = t;
  }
  int k = 0;
  for (int i = 0; i < n; i++)
    if (k == 0 || src[i].c < f->a[k - 1].c) f->a[k++] = src[i];
  f->n = k;
}

/* Minimum-FLOPs placement with peak <= B. Fills seg_end (per stage: last
 * stage of the segment starting there, or -1) and returns true, or returns
 * false when none fits. */
static bool dp(Model *m, int64_t B, int *seg_end, int64_t *cost,
               int64_t *model_peak) {
  int ns = m->nst;
  if (m->floor_live > B) return false;
  Front *fr = xalloc(sizeof(Front) * (size_t)(2 * (ns + 1)));
  Scratch sc = {0};
  front_push(&sc, &fr[0], (Ent){.D = 0, .c = 0, .pk = m->floor_live, .from = -1,
                           .from_bit = 0, .from_e = -1, .seg = -1});
  for (int i = 0; i < ns; i++) {
    for (int bit = 0; bit < 2; bit++) {
      Front *f = &fr[2 * i + bit];
      front_prune(&sc, f);
      if (f->n == 0) continue;
      int64_t dmax = f->a[0].D, lb;
      /* one stage, not in a segment */
      int64_t need = sim(m, i, i, bit, false, &lb);
      int64_t sv = save_before(m, i, bit, false);
      for (int e = 0; e < f->n; e++) {
        const Ent *p = &f->a[e];
        if (need - p->D > B) break; /* D only falls from here */
        front_push(&sc, &fr[2 * (i + 1)],
                   (Ent){.D = p->D + sv, .c = p->c,
                         .pk = max64(p->pk, need - p->D), .from = i,
                         .from_bit = bit, .from_e = e, .seg = -1});
      }
      /* a segment [i..t] */
      int64_t sv0 = save_before(m, i, bit, true), inner = 0, flops = 0;
      bool any_reached = false;
      for (int t = i; t < ns && m->can_seg[t]; t++) {
        if (t > i) inner += m->keep[t - 1];
        flops = m->flops[t] > INT64_MAX - flops ? INT64_MAX : flops + m->flops[t];
        any_reached |= m->reached[t];
        need = sim(m, i, t, bit, true, &lb);
        /* no longer segment from i fits any entry */
        if (lb - dmax > B) break;
        /* a segment no backward step reaches is never recomputed: it is
         * the same as no segment */
        if (!any_reached) continue;
        for (int e = 0; e < f->n; e++) {
          const Ent *p = &f->a[e];
          if (need - p->D > B) break;
          int64_t c = p->c > INT64_MAX - flops ? INT64_MAX : p->c + flops;
          front_push(&sc, &fr[2 * (t + 1) + 1],
                     (Ent){.D = p->D + sv0 + inner, .c = c,
                           .pk = max64(p->pk, need - p->D), .from = i,
                           .from_bit = bit, .from_e = e, .seg = t});
        }
      }
    }
  }
  int best_bit = -1, best_e = -1;
  int64_t best_c = INT64_MAX, best_pk = 0;
  for (int bit = 0; bit < 2; bit++) {
    Front *f = &fr[2 * ns + bit];
    front_prune(&sc, f);
    for (int e = 0; e < f->n; e++) {
      const Ent *p = &f->a[e];
      if (p->c < best_c || (p->c == best_c && p->pk < best_pk)) {
        best_c = p->c, best_pk = p->pk, best_bit = bit, best_e = e;
      }
    }
  }
  free(sc.tmp);
  free(sc.run);
  if (best_bit < 0) {
    for (int k = 0; k < 2 * (ns + 1); k++) free(fr[k].a);
    return false;
  }
  for (int r = 0; r < ns; r++) seg_end[r] = -1;
  int b = ns, bit = best_bit, e = best_e;
  while (b > 0) {
    const Ent *p = &fr[2 * b + bit].a[e];
    if (p->seg >= 0) seg_end[p->from] = p->seg;
    b = p->from, bit = p->from_bit, e = p->from_e;
  }
  *cost = best_c;
  *model_peak = best_pk;
  for (int k = 0; k < 2 * (ns + 1); k++) free(fr[k].a);
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
  pipeline_rebuild_step(g);
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
    pipeline_rebuild_step(g);
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
  pipeline_rebuild_step(g);
  if (g->peak > res->base_peak) { /* never worse than no placement */
    for (int r = 0; r < m.nst; r++) seg_end[r] = -1;
    res->nsegments = apply(&m, seg_end);
    pipeline_rebuild_step(g);
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
