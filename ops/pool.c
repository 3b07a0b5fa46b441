/* ops/pool.c: maxpool2d, avgpool2d and global_avgpool on NCHW.
 *
 * Square windows; avgpool counts the padding (count_include_pad). maxpool
 * saves its input and output (the backward finds the winner again), the
 * others save nothing. Kernels: runtime/mdlrt_pool.cu, backend/cpu/pool.c.
 */
#include "mdlc.h"

static int pool_lower(const Call *c) {
  const Args *A = c->A;
  Ev x = A->v[0];
  if (!call_need_rank(c, x, 4, 4, "NCHW input")) return -1;
  const Shape xs = call_val(c, x)->shape;
  int64_t k = A->v[1].i, s = A->given[2] ? A->v[2].i : k, p = A->v[3].i;
  if (2 * p > k) {
    diag_error(A->where[3], "%s: pad = %lld must be at most half the "
               "kernel (%lld)", c->op, (long long)p, (long long)k);
    return -1;
  }
  int64_t h = conv_out_extent(xs.dim[2], k, s, p, 1);
  int64_t w = conv_out_extent(xs.dim[3], k, s, p, 1);
  if (h < 1 || w < 1) {
    diag_error(c->loc, "%s: a %lldx%lld window does not fit the input %s",
               c->op, (long long)k, (long long)k, call_desc(c, x.v));
    return -1;
  }
  Shape y = {4, {xs.dim[0], xs.dim[1], h, w}};
  int n = call_node(c, c->opc, c->base, &x.v, 1);
  Node *nd = &c->g->nodes[n];
  nd->a.pool.kernel = k, nd->a.pool.stride = s, nd->a.pool.pad = p;
  return call_out1(c, n, DT_F32, &y);
}

/* N * k * k: one compare or add per window element. */
static int64_t pool_flops(const Graph *g, const Node *n) {
  return flops_mul(op_numel(g, n->out[0]),
                   flops_mul(n->a.pool.kernel, n->a.pool.kernel));
}

static void pool_attrs(const Node *n, FILE *f) {
  fprintf(f, " k=%lld s=%lld p=%lld", (long long)n->a.pool.kernel,
          (long long)n->a.pool.stride, (long long)n->a.pool.pad);
}

static CpuPool pool_geom(const Graph *g, const Node *n) {
  const Shape *x = &g->vals[n->in[0]].shape;
  CpuPool p = {.nc = x->dim[0] * x->dim[1], .h = x->dim[2], .w = x->dim[3],
               .k = n->a.pool.kernel, .stride = n->a.pool.stride,
               .pad = n->a.pool.pad};
  cpu_pool_out(&p);
  return p;
}

static void maxpool_cpu_fwd(CpuOp *c) {
  CpuPool p = pool_geom(c->g, c->n);
  cpu_maxpool_fwd(&p, c->x[0], c->y[0]);
}

static void maxpool_cpu_bwd(CpuOp *c) {
  CpuPool p = pool_geom(c->g, c->n);
  float *x = cpu_saved(c, 0, "the input");
  float *y = cpu_saved(c, c->n->nin, "the output");
  if (c->dx[0]) cpu_maxpool_bwd(&p, x, y, c->dy[0], c->dx[0]);
}

static void avgpool_cpu_fwd(CpuOp *c) {
  CpuPool p = pool_geom(c->g, c->n);
  cpu_avgpool_fwd(&p, c->x[0], c->y[0]);
}

static void avgpool_cpu_bwd(CpuOp *c) {
  CpuPool p = pool_geom(c->g, c->n);
  if (c->dx[0]) cpu_avgpool_bwd(&p, c->dy[0], c->dx[0]);
}

static void pool_cuda_fwd(EmitOp *c) {
  const Node *n = c->n;
  emit_printf(c, "  mdlrt_pool_fwd(%d, %s, %s, %lld, %lld, %lld);\n",
              n->op == OP_AVGPOOL2D, c->Y[0], c->X[0],
              (long long)n->a.pool.kernel, (long long)n->a.pool.stride,
              (long long)n->a.pool.pad);
}

static void pool_cuda_bwd(EmitOp *c) {
  const Node *n = c->n;
  emit_printf(c, "  mdlrt_pool_bwd(%d, %s, %d, %s, %s, %s, %lld, %lld, "
              "%lld);\n", n->op == OP_AVGPOOL2D, c->DX[0], c->A[0], c->DY,
              c->I[0], c->I[n->nin], (long long)n->a.pool.kernel,
              (long long)n->a.pool.stride, (long long)n->a.pool.pad);
}

#define POOL_ARGS                                                            \
  {ARG_TENSOR("x"), {"kernel", A_I, true, 0, ARG_POS},                       \
   {"stride", A_I, false, 0, ARG_POS}, {"pad", A_I, false, 0, ARG_NNEG}}

const OpDef opdef_MAXPOOL2D = {
    "maxpool2d(x, kernel, stride=kernel, pad=0)", POOL_ARGS,
    pool_lower, pool_flops, pool_attrs, NULL,
    maxpool_cpu_fwd, maxpool_cpu_bwd, NULL, pool_cuda_fwd, pool_cuda_bwd,
};

const OpDef opdef_AVGPOOL2D = {
    "avgpool2d(x, kernel, stride=kernel, pad=0)", POOL_ARGS,
    pool_lower, pool_flops, pool_attrs, NULL,
    avgpool_cpu_fwd, avgpool_cpu_bwd, NULL, pool_cuda_fwd, pool_cuda_bwd,
};

/* ---- global_avgpool: [N, C, H, W] -> [N, C] ---------------------------------- */

static int gap_lower(const Call *c) {
  Ev x = c->A->v[0];
  if (!call_need_rank(c, x, 4, 4, "NCHW input")) return -1;
  const Shape xs = call_val(c, x)->shape;
  Shape y = {2, {xs.dim[0], xs.dim[1]}};
  int n = call_node(c, OP_GLOBAL_AVGPOOL, c->base, &x.v, 1);
  return call_out1(c, n, DT_F32, &y);
}

/* One add per input element. */
static int64_t gap_flops(const Graph *g, const Node *n) {
  return op_numel(g, n->in[0]);
}

static void gap_cpu_fwd(CpuOp *c) {
  const Shape *s = &c->g->vals[c->n->in[0]].shape;
  cpu_gap_fwd(c->x[0], c->y[0], s->dim[0] * s->dim[1], s->dim[2] * s->dim[3]);
}

static void gap_cpu_bwd(CpuOp *c) {
  const Shape *s = &c->g->vals[c->n->in[0]].shape;
  if (c->dx[0])
    cpu_gap_bwd(c->dy[0], c->dx[0], s->dim[0] * s->dim[1],
                s->dim[2] * s->dim[3]);
}

static void gap_cuda_fwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_global_avgpool_fwd(%s, %s);\n", c->Y[0], c->X[0]);
}

static void gap_cuda_bwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_global_avgpool_bwd(%s, %d, %s);\n", c->DX[0],
              c->A[0], c->DY);
}

const OpDef opdef_GLOBAL_AVGPOOL = {
    "global_avgpool(x)", {ARG_TENSOR("x")},
    gap_lower, gap_flops, NULL, NULL,
    gap_cpu_fwd, gap_cpu_bwd, NULL, gap_cuda_fwd, gap_cuda_bwd,
};
