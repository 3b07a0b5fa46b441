/* ops/softmax.c: softmax over the last dim, optionally causal.
 *
 * causal = true masks column > row, the row being the index in the
 * second-to-last dim (the naive attention's [B, H, S, S] scores). It
 * computes and writes f32 under the mixed policies and saves its output,
 * which is all the backward needs: dx = y * (dy - sum(dy * y)).
 */
#include "mdlc.h"

int lower_softmax(const Call *c, int x, bool causal, const char *local) {
  int n = call_node(c, OP_SOFTMAX, local, &x, 1);
  c->g->nodes[n].a.softmax.causal = causal;
  return call_out1(c, n, DT_F32, &c->g->vals[x].shape);
}

static int softmax_lower(const Call *c) {
  Ev x = c->A->v[0];
  if (c->A->v[1].i && !call_need_rank(c, x, 2, MAX_RANK, "scores")) return -1;
  return lower_softmax(c, x.v, c->A->v[1].i, c->base);
}

/* 5 * N: max, subtract, exp, sum, divide. */
static int64_t softmax_flops(const Graph *g, const Node *n) {
  return flops_mul(5, op_numel(g, n->out[0]));
}

static void softmax_attrs(const Node *n, FILE *f) {
  fprintf(f, " causal=%d", n->a.softmax.causal);
}

static void softmax_cpu_fwd(CpuOp *c) {
  const Shape *s = &c->g->vals[c->n->in[0]].shape;
  int64_t nx = op_numel(c->g, c->n->in[0]), cols = cpu_last_dim(s);
  int64_t srows = s->rank >= 2 ? s->dim[s->rank - 2] : 1;
  cpu_softmax_fwd(c->x[0], c->y[0], nx / (cols ? cols : 1), cols,
                  c->n->a.softmax.causal, srows);
}

static void softmax_cpu_bwd(CpuOp *c) {
  const Shape *s = &c->g->vals[c->n->in[0]].shape;
  int64_t nx = op_numel(c->g, c->n->in[0]), cols = cpu_last_dim(s);
  float *y = cpu_saved(c, c->n->nin, "the output");
  if (c->dx[0])
    cpu_softmax_bwd(y, c->dy[0], c->dx[0], nx / (cols ? cols : 1), cols);
}

static void softmax_cuda_fwd(EmitOp *c) {
  emit_need_contig(c, c->in->in[0]);
  emit_printf(c, "  mdlrt_softmax_fwd(%s, %s, %d);\n", c->Y[0], c->X[0],
              c->n->a.softmax.causal);
}

static void softmax_cuda_bwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_softmax_bwd(%s, %d, %s, %s);\n", c->DX[0], c->A[0],
              c->DY, c->I[c->n->nin]);
}

const OpDef opdef_SOFTMAX = {
    "softmax(x, causal=false)",
    {ARG_TENSOR("x"), {"causal", A_B, false, 0, ARG_ANY}},
    softmax_lower, softmax_flops, softmax_attrs, NULL,
    softmax_cpu_fwd, softmax_cpu_bwd, NULL, softmax_cuda_fwd,
    softmax_cuda_bwd,
};
