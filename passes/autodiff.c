/* passes/autodiff.c: the training step as one straight-line schedule.
 *
 * Builds every device buffer of the step (Buf) and every instruction
 * (Instr) with its operands, in memory.md's order: forward in program
 * order, the seed gradient, backward in reverse program order (a
 * checkpointed segment recomputed just before its first backward step),
 * then the optimizer (or each update right after its gradient is complete,
 * with --optimizer-in-backward). Allocation and free points are not set
 * here: they follow from the operands (passes/liveness.c), which is what
 * makes "free after the last reader" exact by construction.
 *
 * Gradients: the first contribution to a value's gradient allocates it and
 * overwrites; later ones accumulate. A view's gradient is its place in the
 * base's gradient, zero-filled when a view contributes first. `add` hands
 * its output gradient, unchanged, to its first input of the same shape and
 * dtype that has none yet.
 *
 * Worked example (memory.md's tiny model, fp32, sgd):
 *   0 fwd linear1  1 fwd relu  2 fwd linear2  3 fwd cross_entropy
 *   4 seed  5 bwd cross_entropy  6 bwd linear2  7 bwd relu  8 bwd linear1
 *   9..12 opt W1 b1 W2 b2
 * relu saves its output h, so instruction 7 reads h and h dies there.
 *
 * Data parallel (--gpus N --zero S): persistent state, gradients and
 * parameters are sharded as the stage says; a stage >= 2 gradient is
 * reduce-scattered (IK_REDUCE) into its shard right after its last
 * contribution; under stage 3 parameter operands read gathered copies, one
 * per pass.
 *
 * Requires: pass_precision (final dtypes); segments set (frontend or
 * placement). Sets: Value.needs_grad (and, under --infer, dropout outputs
 * as views), g->bufs, g->ins, g->val_buf, g->grad_buf, g->workspace_buf.
 * Invalidates: a previous step (call graph_clear_step first to rebuild).
 */
#include "mdlc.h"

#include <string.h>

typedef struct {
  Graph *g;
  int *rec_buf;       /* value -> buffer of its recomputed copy, -1 */
  int (*opt_buf)[3];  /* parameter -> master, state 0, state 1 buffers, -1 */
  int *shard_grad;    /* parameter -> its reduced gradient shard (ZeRO >= 2) */
  bool *seg_done;     /* segment already recomputed */
} Step;

static bool is_view_op(const Graph *g, const Node *n) {
  return (op_info[n->op].flags & OF_VIEW) ||
         (g->cfg.infer && n->op == OP_DROPOUT);
}

static int new_buf(Graph *g, const char *name, Category cat, DType dt,
                   int64_t numel, bool persistent) {
  Buf *b = VEC_PUSH(g->bufs, g->nbufs, g->capbufs);
  int64_t bytes;
  if (!mul_ok(numel, dtype_size(dt), &bytes))
    ICE("buffer '%s' overflows 64 bits", name);
  *b = (Buf){.name = name, .cat = cat, .dtype = dt, .numel = numel,
             .bytes = bytes, .persistent = persistent, .value = -1,
             .param = -1, .alloc_at = -1, .free_at = -1,
             .offset = -1};
  return g->nbufs - 1;
}

static Instr *new_instr(Graph *g, InstrKind k, int node, int nin, int nout) {
  Instr *in = VEC_PUSH(g->ins, g->nins, g->capins);
  in->kind = k;
  in->node = node;
  in->nin = nin;
  in->nout = nout;
  in->in = xalloc(sizeof(Ref) * (size_t)(nin ? nin : 1));
  in->out = xalloc(sizeof(Ref) * (size_t)(nout ? nout : 1));
  in->accum = xalloc(sizeof(bool) * (size_t)(nout ? nout : 1));
  return in;
}

/* ---- gradients needed --------------------------------------------------- */

static void mark_needs_grad(Graph *g) {
  for (int v = 0; v < g->nvals; v++)
    g->vals[v].needs_grad = !g->cfg.infer && g->vals[v].kind == VK_PARAM &&
                            dtype_is_float(g->vals[v].dtype);
  if (g->cfg.infer) return;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    bool any = false;
    for (int k = 0; k < n->nin; k++) any |= g->vals[n->in[k]].needs_grad;
    for (int o = 0; o < n->nreal; o++) {
      Value *x = &g->vals[n->out[o]];
      x->needs_grad = any && dtype_is_float(x->dtype);
    }
  }
}

/* In inference dropout is the identity: its output a view of its input. */
static void dropout_as_view(Graph *g) {
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op != OP_DROPOUT) continue;
    Value *y = &g->vals[n->out[0]];
    const Value *x = &g->vals[n->in[0]];
    y->view_of = n->in[0];
    y->view_offset = 0;
    memcpy(y->stride, x->stride, sizeof y->stride);
  }
}

/* ---- persistent buffers -------------------------------------------------- */

/* ZeRO: the elements of a tensor that one of N devices keeps. */
static int64_t shard(const Graph *g, int64_t numel, int stage) {
  if (g->cfg.gpus <= 1 || g->cfg.zero < stage) return numel;
  return (numel + g->cfg.gpus - 1) / g->cfg.gpus;
}

static DType state_dtype(const Graph *g, DType param_dt) {
  if (g->cfg.state_dtype >= 0) return (DType)g->cfg.state_dtype;
  Precision p = g->cfg.precision;
  if (p == PREC_FP16 || p == PREC_BF16) return param_dt; /* pure: 16-bit */
  return DT_F32;
}

static void persistent_bufs(Step *st) {
  Graph *g = st->g;
  static const char *const state_name[OPTIM_COUNT][2] = {
      [OPTIM_SGD] = {NULL, NULL},
      [OPTIM_MOMENTUM] = {"momentum", NULL},
      [OPTIM_ADAM] = {"adam.m", "adam.v"},
      [OPTIM_ADAMW] = {"adamw.m", "adamw.v"},
  };
  bool master = g->cfg.precision == PREC_FP16_MASTER ||
                g->cfg.precision == PREC_BF16_MASTER;
  for (int v = 0; v < g->nvals; v++) {
    const Value *x = &g->vals[v];
    if (x->kind != VK_PARAM && x->kind != VK_STATE) continue;
    int64_t numel = shape_numel_ok(&x->shape);
    if (x->kind == VK_PARAM) numel = shard(g, numel, 3);
    int b = new_buf(g, x->name, CAT_PARAM, x->dtype, numel, true);
    g->bufs[b].value = v;
    g->val_buf[v] = b;
  }
  for (int v = 0; v < g->nvals; v++) {
    const Value *x = &g->vals[v];
    if (x->kind != VK_PARAM || g->cfg.infer) continue;
    int64_t numel = shard(g, shape_numel_ok(&x->shape), 1);
    if (master) {
      int b = new_buf(g, xsprintf("%s@master", x->name), CAT_MASTER, DT_F32,
                      numel, true);
      g->bufs[b].param = v;
      st->opt_buf[v][0] = b;
    }
    for (int s = 0; s < 2; s++) {
      const char *sn = state_name[g->cfg.optimizer][s];
      if (!sn) continue;
      int b = new_buf(g, xsprintf("%s@%s", x->name, sn), CAT_OPT_STATE,
                      state_dtype(g, x->dtype), numel, true);
      g->bufs[b].param = v;
      st->opt_buf[v][1 + s] = b;
    }
  }
  for (int v = 0; v < g->nvals; v++) {
    const Value *x = &g->vals[v];
    if (x->kind != VK_INPUT) continue;
    int b = new_buf(g, x->name, CAT_INPUT, x->dtype, shape_numel_ok(&x->shape),
                    true);
    g->bufs[b].value = v;
    g->val_buf[v] = b;
  }
  if (g->cfg.workspace > 0) {
    g->workspace_buf =
        new_buf(g, "workspace", CAT_WORKSPACE, DT_U8, g->cfg.workspace, true);
  }
}

/* ---- forward ------------------------------------------------------------- */

/* Where value v lives for an instruction: its recomputed copy when the
 * instruction belongs to the segment that produced v's storage. */
static Ref ref_of(const Step *s, int v, int seg) {
  const Graph *g = s->g;
  int r = value_root(g, v);
  if (seg >= 0 && s->rec_buf[r] >= 0) {
    const Value *x = &g->vals[r];
    if (x->kind == VK_ACT && g->nodes[x->node].segment == seg)
      return (Ref){s->rec_buf[r], v};
  }
  return (Ref){g->val_buf[r], v};
}

static Category act_category(const Graph *g, int node) {
  return g->nodes[node].op == OP_CAST ? CAT_CAST : CAT_ACT;
}

/* Emits node i forward (or recomputed), creating its output buffers. */
static void emit_forward(Step *s, int i, bool recompute) {
  Graph *g = s->g;
  const Node *n = &g->nodes[i];
  int seg = recompute ? n->segment : -1;
  Instr *in = new_instr(g, recompute ? IK_RECOMPUTE : IK_FWD, i, n->nin,
                        n->nout);
  for (int k = 0; k < n->nin; k++) in->in[k] = ref_of(s, n->in[k], seg);
  for (int o = 0; o < n->nout; o++) {
    int v = n->out[o];
    const Value *x = &g->vals[v];
    const char *name = recompute ? xsprintf("%s@recompute", x->name) : x->name;
    int b = new_buf(g, name, act_category(g, i), x->dtype,
                    shape_numel_ok(&x->shape), false);
    g->bufs[b].value = v;
    g->bufs[b].keep_to_end = x->is_output && !recompute;
    if (recompute) s->rec_buf[v] = b;
    else g->val_buf[v] = b;
    in = &g->ins[g->nins - 1];
    in->out[o] = (Ref){b, v};
  }
}

/* Views take their base's buffer; outputs keep their storage to the end. */
static void bind_view(Graph *g, int i) {
  const Node *n = &g->nodes[i];
  for (int o = 0; o < n->nout; o++) {
    int v = n->out[o];
    int r = value_root(g, v);
    g->val_buf[v] = g->val_buf[r];
    if (g->vals[v].is_output && g->val_buf[r] >= 0)
      g->bufs[g->val_buf[r]].keep_to_end = true;
  }
}

/* ---- backward ------------------------------------------------------------ */

static Category grad_category(const Graph *g, int r) {
  const Value *x = &g->vals[r];
  if (x->kind == VK_PARAM) return CAT_GRAD;
  /* the 16-bit gradient of a weight copy is still a weight gradient */
  if (x->kind == VK_ACT && g->nodes[x->node].op == OP_CAST &&
      g->vals[g->nodes[x->node].in[0]].kind == VK_PARAM)
    return CAT_GRAD;
  return CAT_ACT_GRAD;
}

/* A contribution to the gradient of v: the operand and whether it adds. */
static Ref contribute(Graph *g, int v, bool *accum) {
  int r = value_root(g, v);
  if (g->grad_buf[r] < 0) {
    const Value *x = &g->vals[r];
    int b = new_buf(g, xsprintf("d:%s", x->name), grad_category(g, r),
                    x->dtype, shape_numel_ok(&x->shape), false);
    g->bufs[b].zero_init = v != r;
    g->grad_buf[r] = b;
    *accum = v != r;
  } else {
    *accum = true;
  }
  return (Ref){g->grad_buf[r], v};
}

static bool resident(const Graph *g, int v) {
  return g->vals[value_root(g, v)].kind != VK_ACT;
}

static void emit_backward(Step *s, int i) {
  Graph *g = s->g;
  const Node *n = &g->nodes[i];
  int seg = n->segment;
  Instr *in = new_instr(g, IK_BWD, i, n->nin + n->nout + n->nreal, n->nin);
  int p = 0;
  for (int k = 0; k < n->nin; k++) {
    int v = n->in[k];
    in->in[p++] = op_saves_input(n, k) || resident(g, v) ? ref_of(s, v, seg)
                                                        : (Ref){-1, v};
  }
  for (int o = 0; o < n->nout; o++) {
    int v = n->out[o];
    in->in[p++] = op_saves_output(g, n, o) ? ref_of(s, v, seg) : (Ref){-1, v};
  }
  for (int o = 0; o < n->nreal; o++) {
    int v = n->out[o];
    in->in[p++] = (Ref){g->grad_buf[v], v};
  }
  bool handed = n->op != OP_ADD;
  int dy = g->grad_buf[n->out[0]];
  for (int k = 0; k < n->nin; k++) {
    int v = n->in[k];
    Value *x = &g->vals[v];
    in->out[k] = (Ref){-1, v};
    if (!x->needs_grad) continue;
    const Value *y = &g->vals[n->out[0]];
    if (!handed && dy >= 0 && x->view_of < 0 && g->grad_buf[v] < 0 &&
        x->dtype == y->dtype && shape_eq(&x->shape, &y->shape)) {
      handed = true;
      g->grad_buf[v] = dy;
      if (x->kind == VK_PARAM) g->bufs[dy].cat = CAT_GRAD;
      in->out[k] = (Ref){dy, v};
      in->accum[k] = false;
      continue;
    }
    in->out[k] = contribute(g, v, &in->accum[k]);
  }
}

/* A node's backward runs when a gradient reached one of its outputs. */
static bool reached(const Graph *g, const Node *n) {
  for (int o = 0; o < n->nreal; o++)
    if (g->grad_buf[value_root(g, n->out[o])] >= 0) return true;
  return false;
}

static void recompute_segment(Step *s, int seg) {
  Graph *g = s->g;
  s->seg_done[seg] = true;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->segment != seg) continue;
    /* views of recomputed values follow their base (ref_of) */
    if (!is_view_op(g, n)) emit_forward(s, i, true);
  }
}

/* ---- optimizer ----------------------------------------------------------- */

/* ZeRO >= 2: once parameter p's gradient is complete it is reduce-scattered
 * into a shard that lives until the update; the full gradient, a
 * communication buffer, dies there. */
static void emit_reduce(Step *s, int p) {
  Graph *g = s->g;
  const Value *x = &g->vals[p];
  int full = g->grad_buf[p];
  int b = new_buf(g, xsprintf("d:%s@shard", x->name), CAT_GRAD, x->dtype,
                  shard(g, shape_numel_ok(&x->shape), 2), false);
  g->bufs[b].param = p;
  Instr *in = new_instr(g, IK_REDUCE, p, 1, 1);
  in->in[0] = (Ref){full, p};
  in->out[0] = (Ref){b, p};
  s->shard_grad[p] = b;
}

static void emit_opt(Step *s, int param) {
  Graph *g = s->g;
  Instr *in = new_instr(g, IK_OPT, param, 5, 0);
  in->in[0] = (Ref){g->val_buf[param], param};
  int gb = s->shard_grad[param] >= 0 ? s->shard_grad[param] : g->grad_buf[param];
  in->in[1] = (Ref){gb, param};
  for (int k = 0; k < 3; k++) in->in[2 + k] = (Ref){s->opt_buf[param][k], param};
}

/* After the backward: each parameter whose gradient is complete at
 * instruction i gets, right after i, its reduce-scatter (ZeRO >= 2) and,
 * with --optimizer-in-backward, its update; otherwise the updates follow
 * the whole backward, in parameter order. after[i] lists, in value order,
 * the parameters completed by instruction i (linked through next[]). */
static void finish_step(Step *s) {
  Graph *g = s->g;
  bool reduce = g->cfg.gpus > 1 && g->cfg.zero >= 2;
  if (reduce || g->cfg.opt_in_backward) {
    int *param_of = xalloc(sizeof(int) * (size_t)(g->nbufs ? g->nbufs : 1));
    int *last = xalloc(sizeof(int) * (size_t)g->nvals);
    int *next = xalloc(sizeof(int) * (size_t)g->nvals);
    int *after = xalloc(sizeof(int) * (size_t)(g->nins ? g->nins : 1));
    for (int b = 0; b < g->nbufs; b++) param_of[b] = -1;
    for (int v = 0; v < g->nvals; v++) {
      last[v] = -1;
      if (g->vals[v].kind == VK_PARAM && g->grad_buf[v] >= 0)
        param_of[g->grad_buf[v]] = v;
    }
    for (int i = 0; i < g->nins; i++) {
      after[i] = -1;
      const Instr *in = &g->ins[i];
      for (int k = 0; k < in->nout; k++)
        if (in->out[k].buf >= 0 && param_of[in->out[k].buf] >= 0)
          last[param_of[in->out[k].buf]] = i;
    }
    for (int v = g->nvals - 1; v >= 0; v--)
      if (last[v] >= 0) {
        next[v] = after[last[v]];
        after[last[v]] = v;
      }
    Instr *old = g->ins;
    int nold = g->nins;
    g->ins = NULL;
    g->nins = g->capins = 0;
    for (int i = 0; i < nold; i++) {
      *VEC_PUSH(g->ins, g->nins, g->capins) = old[i];
      for (int v = after[i]; v >= 0; v = next[v]) {
        if (reduce) emit_reduce(s, v);
        if (g->cfg.opt_in_backward) emit_opt(s, v);
      }
    }
  }
  if (!g->cfg.opt_in_backward)
    for (int v = 0; v < g->nvals; v++)
      if (g->vals[v].kind == VK_PARAM && g->grad_buf[v] >= 0) emit_opt(s, v);
}

/* ZeRO 3: parameters are sharded; every forward, recompute and backward
 * operand that is a parameter names a gathered full copy instead, one per
 * pass (forward; recompute and backward), which liveness then allocates
 * before its first use in that pass and frees after its last. */
static void gather_params(Step *s) {
  Graph *g = s->g;
  int *gathered = xalloc(sizeof(int) * 2 * (size_t)g->nvals);
  for (int i = 0; i < 2 * g->nvals; i++) gathered[i] = -1;
  for (int i = 0; i < g->nins; i++) {
    Instr *in = &g->ins[i];
    if (in->kind != IK_FWD && in->kind != IK_RECOMPUTE && in->kind != IK_BWD)
      continue;
    int pass = in->kind == IK_FWD ? 0 : 1;
    for (int k = 0; k < in->nin; k++) {
      int b = in->in[k].buf;
      if (b < 0 || g->bufs[b].value < 0) continue;
      int v = g->bufs[b].value;
      if (g->vals[v].kind != VK_PARAM) continue;
      int *slot = &gathered[2 * v + pass];
      if (*slot < 0) {
        const Value *x = &g->vals[v];
        *slot = new_buf(g, xsprintf("%s@gathered%s", x->name,
                                    pass ? ".bwd" : ""),
                        CAT_PARAM, x->dtype, shape_numel_ok(&x->shape), false);
        g->bufs[*slot].value = v;
        g->bufs[*slot].gathered = true;
      }
      in->in[k].buf = *slot;
    }
  }
}

void pass_autodiff(Graph *g) {
  Step s = {.g = g};
  g->val_buf = xalloc(sizeof(int) * (size_t)g->nvals);
  g->grad_buf = xalloc(sizeof(int) * (size_t)g->nvals);
  s.rec_buf = xalloc(sizeof(int) * (size_t)g->nvals);
  s.seg_done = xalloc(sizeof(bool) * (size_t)(g->nsegments + 1));
  s.opt_buf = xalloc(sizeof(int[3]) * (size_t)(g->nvals ? g->nvals : 1));
  for (int v = 0; v < g->nvals; v++)
    s.opt_buf[v][0] = s.opt_buf[v][1] = s.opt_buf[v][2] = -1;
  s.shard_grad = xalloc(sizeof(int) * (size_t)(g->nvals ? g->nvals : 1));
  for (int v = 0; v < g->nvals; v++) s.shard_grad[v] = -1;
  for (int v = 0; v < g->nvals; v++)
    g->val_buf[v] = g->grad_buf[v] = s.rec_buf[v] = -1;

  if (g->cfg.infer) dropout_as_view(g);
  mark_needs_grad(g);
  persistent_bufs(&s);

  for (int i = 0; i < g->nnodes; i++) {
    if (is_view_op(g, &g->nodes[i])) bind_view(g, i);
    else emit_forward(&s, i, false);
  }
  if (g->cfg.infer || g->loss < 0 || !g->vals[g->loss].needs_grad) {
    if (g->cfg.gpus > 1 && g->cfg.zero >= 3) gather_params(&s);
    return;
  }

  Instr *seed = new_instr(g, IK_SEED, g->loss, 0, 1);
  bool accum;
  seed->out[0] = contribute(g, g->loss, &accum);
  seed->accum[0] = accum;

  for (int i = g->nnodes - 1; i >= 0; i--) {
    const Node *n = &g->nodes[i];
    if (is_view_op(g, n) || !reached(g, n)) continue;
    if (n->segment >= 0 && !s.seg_done[n->segment])
      recompute_segment(&s, n->segment);
    emit_backward(&s, i);
  }

  finish_step(&s);
  if (g->cfg.gpus > 1 && g->cfg.zero >= 3) gather_params(&s);
}
