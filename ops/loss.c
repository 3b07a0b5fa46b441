/* ops/loss.c: the losses, cross_entropy and mse, each a scalar mean.
 *
 * cross_entropy(logits [..., C], targets [...] integer class ids) keeps the
 * log-probabilities as an extra output for its backward (softmax - onehot);
 * mse(a, b) keeps both operands. Both compute and write f32 under the
 * mixed policies. Kernels: runtime/mdlrt_loss.cu, backend/cpu/loss.c.
 */
#include "mdlc.h"

/* ---- cross_entropy ---------------------------------------------------------- */

static int xent_lower(const Call *c) {
  const Args *A = c->A;
  Ev x = A->v[0], t = A->v[1];
  if (!call_need_float(c, x, "the logits") ||
      !call_need_rank(c, x, 1, MAX_RANK, "logits"))
    return -1;
  const Shape ls = call_val(c, x)->shape, ts = call_val(c, t)->shape;
  if (dtype_is_float(call_val(c, t)->dtype)) {
    diag_error(t.ast->loc, "cross_entropy takes integer class ids as "
               "targets, got %s", call_desc(c, t.v));
    return -1;
  }
  bool ok = ts.rank == ls.rank - 1;
  for (int i = 0; ok && i < ts.rank; i++) ok = ts.dim[i] == ls.dim[i];
  if (!ok) {
    char b[160];
    Shape want = ls;
    want.rank--;
    diag_error(c->loc, "cross_entropy: logits %s need targets of shape %s, "
               "got %s", call_desc(c, x.v), shape_str(&want, b),
               call_desc(c, t.v));
    return -1;
  }
  int in[2] = {x.v, t.v};
  int n = call_node(c, OP_CROSS_ENTROPY, c->base, in, 2);
  Shape sc = {0};
  int y = call_out1(c, n, DT_F32, &sc);
  call_out(c, n, xsprintf("%s.logprobs", c->g->nodes[n].name), DT_F32, &ls,
           true);
  return y;
}

/* 5 * I + rows: log-softmax over the logits, then pick. */
static int64_t xent_flops(const Graph *g, const Node *n) {
  const Shape *x = &g->vals[n->in[0]].shape;
  int64_t I = op_numel(g, n->in[0]);
  int64_t c = x->rank ? x->dim[x->rank - 1] : 1;
  return flops_add(flops_mul(5, I), c ? I / c : 0);
}

/* Class ids are drawn below the number of classes. */
static void xent_init(const Graph *g, const Node *n, int k, int s,
                      InitKind *kind, int64_t *fan, int64_t *limit) {
  (void)kind, (void)fan;
  if (k == LOSS_B) limit[s] = cpu_last_dim(&g->vals[n->in[LOSS_A]].shape);
}

static void xent_cpu_fwd(CpuOp *c) {
  int64_t *t = cpu_ints(c, LOSS_B, false, "the targets");
  int64_t cc = cpu_last_dim(&c->g->vals[c->n->in[0]].shape);
  int64_t rows = op_numel(c->g, c->n->in[0]) / (cc ? cc : 1);
  int64_t bad = cpu_xent_fwd(c->x[0], t, rows, cc,
                             c->n->nout > XENT_LOGPROBS ? c->y[XENT_LOGPROBS]
                                                        : NULL,
                             c->y[XENT_LOSS]);
  if (bad >= 0) cpu_data_error(c, "target", t[bad], cc);
}

static void xent_cpu_bwd(CpuOp *c) {
  float *lp = cpu_saved(c, c->n->nin + XENT_LOGPROBS, "the log-probabilities");
  int64_t *t = cpu_ints(c, LOSS_B, true, "the targets");
  int64_t cc = cpu_last_dim(&c->g->vals[c->n->in[0]].shape);
  int64_t nx = op_numel(c->g, c->n->in[0]);
  if (c->dx[0]) cpu_xent_bwd(lp, t, nx / (cc ? cc : 1), cc, c->dy[0][0], c->dx[0]);
}

static void xent_cuda_fwd(EmitOp *c) {
  emit_need_contig(c, c->in->in[0]);
  emit_printf(c, "  mdlrt_cross_entropy_fwd(%s, %s, %s, %s);\n",
              c->Y[XENT_LOSS], c->Y[XENT_LOGPROBS], c->X[LOSS_A],
              c->X[LOSS_B]);
}

static void xent_cuda_bwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_cross_entropy_bwd(%s, %d, %s, %s, %s);\n", c->DX[0],
              c->A[0], c->DY, c->I[c->n->nin + XENT_LOGPROBS], c->I[LOSS_B]);
}

const OpDef opdef_CROSS_ENTROPY = {
    "cross_entropy(logits, targets)",
    {ARG_TENSOR("logits"), ARG_TENSOR("targets")},
    xent_lower, xent_flops, NULL, xent_init,
    xent_cpu_fwd, xent_cpu_bwd, NULL, xent_cuda_fwd, xent_cuda_bwd,
};

/* ---- mse ----------------------------------------------------------------------- */

static int mse_lower(const Call *c) {
  Ev x = c->A->v[0], b = c->A->v[1];
  if (!call_need_float(c, b, "the second input")) return -1;
  if (!shape_eq(&call_val(c, x)->shape, &call_val(c, b)->shape)) {
    diag_error(c->loc, "mse: shapes differ: %s and %s", call_desc(c, x.v),
               call_desc(c, b.v));
    return -1;
  }
  int in[2] = {x.v, b.v};
  int n = call_node(c, OP_MSE, c->base, in, 2);
  Shape sc = {0};
  return call_out1(c, n, DT_F32, &sc);
}

/* 3 * I: subtract, square, sum. */
static int64_t mse_flops(const Graph *g, const Node *n) {
  return flops_mul(3, op_numel(g, n->in[0]));
}

static void mse_cpu_fwd(CpuOp *c) {
  cpu_mse_fwd(c->x[0], c->x[1], op_numel(c->g, c->n->in[0]), c->y[0]);
}

static void mse_cpu_bwd(CpuOp *c) {
  float *a = cpu_saved(c, LOSS_A, "operand a");
  float *b = cpu_saved(c, LOSS_B, "operand b");
  cpu_mse_bwd(a, b, op_numel(c->g, c->n->in[0]), c->dy[0][0], c->dx[0],
              c->dx[1]);
}

/* da = 2 (a - b) / n * dloss, db its negation. */
static void mse_cuda_bwd(EmitOp *c) {
  for (int k = 0; k < 2; k++)
    if (!emit_none(c->DX[k]))
      emit_printf(c, "  mdlrt_mse_bwd(%s, %d, %d, %s, %s, %s);\n", c->DX[k],
                  c->A[k], k ? -1 : 1, c->DY, c->I[LOSS_A], c->I[LOSS_B]);
}

static void mse_cuda_fwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_mse_fwd(%s, %s, %s);\n", c->Y[0], c->X[0], c->X[1]);
}

const OpDef opdef_MSE = {
    "mse(a, b)", {ARG_TENSOR("a"), ARG_TENSOR("b")},
    mse_lower, mse_flops, NULL, NULL,
    mse_cpu_fwd, mse_cpu_bwd, NULL, mse_cuda_fwd, mse_cuda_bwd,
};
