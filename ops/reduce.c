/* ops/reduce.c: mean and sum over one axis.
 *
 * mean(x, axis=-1, keepdim=false) and sum(x, ...) reduce one axis, which is
 * dropped from the shape or kept as 1. mean writes its input's dtype
 * (PC_KEEP), sum f32 under the mixed policies (autocast's f32 list). Neither
 * saves anything: the backward broadcasts dy along the axis (divided by its
 * extent for mean). Kernels: runtime/mdlrt_reduce.cu, backend/cpu/reduce.c.
 */
#include "mdlc.h"

static int reduce_lower(const Call *c) {
  const Args *A = c->A;
  Ev x = A->v[0];
  const Shape xs = call_val(c, x)->shape;
  if (!call_need_rank(c, x, 1, MAX_RANK, "a tensor")) return -1;
  int axis = call_axis(c, A->v[1].i, xs.rank,
                       A->given[1] ? A->where[1] : c->loc);
  if (axis < 0) return -1;
  bool keep = A->v[2].i;
  Shape y = xs;
  if (keep) {
    y.dim[axis] = 1;
  } else {
    for (int d = axis; d + 1 < y.rank; d++) y.dim[d] = y.dim[d + 1];
    y.rank--;
  }
  int n = call_node(c, c->opc, c->base, &x.v, 1);
  c->g->nodes[n].a.reduce.axis = axis;
  c->g->nodes[n].a.reduce.keepdim = keep;
  return call_out1(c, n, DT_F32, &y);
}

/* One add per input element (mean's one divide per output is not counted). */
static int64_t reduce_flops(const Graph *g, const Node *n) {
  return op_numel(g, n->in[0]);
}

static void reduce_attrs(const Node *n, FILE *f) {
  fprintf(f, " axis=%d keepdim=%d", n->a.reduce.axis, n->a.reduce.keepdim);
}

static void reduce_cpu_fwd(CpuOp *c) {
  cpu_reduce_fwd(c->n->op == OP_MEAN, &c->g->vals[c->n->in[0]].shape,
                 c->n->a.reduce.axis, c->x[0], c->y[0]);
}

static void reduce_cpu_bwd(CpuOp *c) {
  if (c->dx[0])
    cpu_reduce_bwd(c->n->op == OP_MEAN, &c->g->vals[c->n->in[0]].shape,
                   c->n->a.reduce.axis, c->dy[0], c->dx[0]);
}

static void reduce_cuda_fwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_reduce_fwd(%d, %s, %s, %d);\n", c->n->op == OP_MEAN,
              c->Y[0], c->X[0], c->n->a.reduce.axis);
}

static void reduce_cuda_bwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_reduce_bwd(%d, %s, %d, %s, %d);\n",
              c->n->op == OP_MEAN, c->DX[0], c->A[0], c->DY,
              c->n->a.reduce.axis);
}

#define REDUCE_ARGS                                                          \
  {ARG_TENSOR("x"), {"axis", A_I, false, -1, ARG_ANY},                       \
   {"keepdim", A_B, false, 0, ARG_ANY}}

const OpDef opdef_MEAN = {
    "mean(x, axis=-1, keepdim=false)", REDUCE_ARGS,
    reduce_lower, reduce_flops, reduce_attrs, NULL,
    reduce_cpu_fwd, reduce_cpu_bwd, NULL, reduce_cuda_fwd, reduce_cuda_bwd,
};

const OpDef opdef_SUM = {
    "sum(x, axis=-1, keepdim=false)", REDUCE_ARGS,
    reduce_lower, reduce_flops, reduce_attrs, NULL,
    reduce_cpu_fwd, reduce_cpu_bwd, NULL, reduce_cuda_fwd, reduce_cuda_bwd,
};
