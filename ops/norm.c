/* ops/norm.c: batchnorm, layernorm, instancenorm, groupnorm and rmsnorm.
 *
 * One shape of op: x, then weight and bias (per channel, or per last-dim
 * element for layernorm), for batchnorm also its running mean and variance
 * (states, no gradient); outputs y and two f32 statistics as extras (mean
 * and rstd, batchnorm's invstd), which the backward reads with x. The
 * statistics are per channel (batchnorm), per row of the last dim
 * (layernorm), or per (sample, group) (groupnorm; instancenorm is groupnorm
 * with one group per channel). Running statistics are updated by the first
 * forward only, never by a recomputation. rmsnorm (Llama's) has a weight
 * only and one statistic, rstd per row of the last dim. Kernels:
 * runtime/mdlrt_norm.cu, backend/cpu/norm.c (one routine over x viewed as
 * [n, c, s], and rmsnorm's own).
 */
#include "mdlc.h"

/* x, weight/bias (per channel or last dim), stats as extras. */
static int norm(const Call *c, Op op, int x, double eps, int64_t groups,
                bool affine) {
  const Shape xs = c->g->vals[x].shape;
  const char *full = call_reserve(c, c->base);
  int64_t C = op == OP_LAYERNORM ? xs.dim[xs.rank - 1] : xs.dim[1];
  int64_t N = xs.dim[0], rows = 0;
  Shape cs = {1, {C}}, stat;
  int in[5] = {x}, nin = 1;
  if (affine) {
    in[nin++] = call_param(c, full, "weight", VK_PARAM, &cs);
    in[nin++] = call_param(c, full, "bias", VK_PARAM, &cs);
  }
  if (op == OP_BATCHNORM) {
    in[nin++] = call_param(c, full, "running_mean", VK_STATE, &cs);
    in[nin++] = call_param(c, full, "running_var", VK_STATE, &cs);
    stat = cs;
  } else if (op == OP_LAYERNORM) {
    shape_numel(&xs, &rows);
    stat = (Shape){1, {rows / C}};
  } else {
    stat = (Shape){1, {N * groups}};
  }
  int n = call_node_named(c, op, full, in, nin);
  Node *nd = &c->g->nodes[n];
  nd->a.norm.eps = eps;
  nd->a.norm.groups = op == OP_INSTANCENORM ? C : groups;
  nd->a.norm.affine = affine;
  int y = call_out1(c, n, DT_F32, &xs);
  call_out(c, n, xsprintf("%s.mean", full), DT_F32, &stat, true);
  call_out(c, n, xsprintf("%s.%s", full,
                          op == OP_BATCHNORM ? "invstd" : "rstd"),
           DT_F32, &stat, true);
  return y;
}

static int batchnorm_lower(const Call *c) {
  Ev x = c->A->v[0];
  if (!call_need_rank(c, x, 2, MAX_RANK, "a tensor")) return -1;
  return norm(c, OP_BATCHNORM, x.v, ev_num(c->A->v[1]), 0, true);
}

static int layernorm_lower(const Call *c) {
  Ev x = c->A->v[0];
  if (!call_need_rank(c, x, 1, MAX_RANK, "a tensor")) return -1;
  return norm(c, OP_LAYERNORM, x.v, ev_num(c->A->v[1]), 0, true);
}

static int instancenorm_lower(const Call *c) {
  Ev x = c->A->v[0];
  if (!call_need_rank(c, x, 3, MAX_RANK, "a tensor")) return -1;
  return norm(c, OP_INSTANCENORM, x.v, ev_num(c->A->v[1]),
              call_val(c, x)->shape.dim[1], c->A->v[2].i);
}

static int groupnorm_lower(const Call *c) {
  const Args *A = c->A;
  Ev x = A->v[0];
  if (!call_need_rank(c, x, 2, MAX_RANK, "a tensor")) return -1;
  int64_t gr = A->v[1].i, C = call_val(c, x)->shape.dim[1];
  if (C % gr) {
    diag_error(A->where[1], "groupnorm: groups = %lld does not divide the "
               "%lld channels of %s", (long long)gr, (long long)C,
               call_desc(c, x.v));
    return -1;
  }
  return norm(c, OP_GROUPNORM, x.v, ev_num(A->v[2]), gr, true);
}

/* 8 * I: mean 1, variance 3, normalize 2, affine 2. */
static int64_t norm_flops(const Graph *g, const Node *n) {
  return flops_mul(8, op_numel(g, n->in[0]));
}

static void norm_attrs(const Node *n, FILE *f) {
  fprintf(f, " eps=%g groups=%lld affine=%d", n->a.norm.eps,
          (long long)n->a.norm.groups, n->a.norm.affine);
}

/* Weight and running variance ones, bias and running mean zeros. */
static void norm_init(const Graph *g, const Node *n, int k, int s,
                      InitKind *kind, int64_t *fan, int64_t *limit) {
  (void)g, (void)n, (void)fan, (void)limit;
  if (k == NORM_W || k == NORM_RVAR) kind[s] = INIT_ONE;
  if (k == NORM_B || k == NORM_RMEAN) kind[s] = INIT_ZERO;
}

static CpuNorm norm_geom(const Node *n, const Shape *s) {
  CpuNorm p = {.eps = (float)n->a.norm.eps, .groups = 1};
  int64_t total = 1;
  for (int d = 0; d < s->rank; d++) total *= s->dim[d];
  if (n->op == OP_LAYERNORM) {
    p.kind = CPU_NORM_GROUP;
    p.c = s->rank ? s->dim[s->rank - 1] : 1;
    p.n = total / (p.c ? p.c : 1);
    p.s = 1;
    return p;
  }
  p.kind = n->op == OP_BATCHNORM ? CPU_NORM_BATCH : CPU_NORM_GROUP;
  p.n = s->dim[0];
  p.c = s->rank > 1 ? s->dim[1] : 1;
  p.s = p.n * p.c > 0 ? total / (p.n * p.c) : 1;
  if (n->op == OP_INSTANCENORM) p.groups = p.c;
  if (n->op == OP_GROUPNORM) p.groups = n->a.norm.groups;
  return p;
}

static void norm_cpu_fwd(CpuOp *c) {
  const Node *n = c->n;
  CpuNorm p = norm_geom(n, &c->g->vals[n->in[0]].shape);
  bool bn = n->op == OP_BATCHNORM;
  bool affine = n->nin > NORM_W;
  /* running statistics: updated by the first forward only, never by a
   * recomputation (docs/ops.md) */
  bool update = bn && c->train && c->first;
  float *const *x = c->x;
  cpu_norm_fwd(&p, x[NORM_X], affine ? x[NORM_W] : NULL,
               affine ? x[NORM_B] : NULL, c->y[NORM_Y],
               n->nout > NORM_MEAN ? c->y[NORM_MEAN] : NULL,
               n->nout > NORM_RSTD ? c->y[NORM_RSTD] : NULL,
               bn ? x[NORM_RMEAN] : NULL, bn ? x[NORM_RVAR] : NULL,
               bn && !c->train);
  if (update) {
    cpu_write_input(c, NORM_RMEAN, x[NORM_RMEAN]);
    cpu_write_input(c, NORM_RVAR, x[NORM_RVAR]);
  }
}

static void norm_cpu_bwd(CpuOp *c) {
  const Node *n = c->n;
  int ni = n->nin;
  CpuNorm p = norm_geom(n, &c->g->vals[n->in[0]].shape);
  bool affine = ni > NORM_W;
  float *x = cpu_saved(c, NORM_X, "the input");
  float *w = affine ? cpu_saved(c, NORM_W, "the weight") : NULL;
  float *mean = cpu_saved(c, ni + NORM_MEAN, "the mean");
  float *rstd = cpu_saved(c, ni + NORM_RSTD, "the inverse std");
  cpu_norm_bwd(&p, x, w, mean, rstd, c->dy[0], c->dx[NORM_X],
               affine ? c->dx[NORM_W] : NULL, affine ? c->dx[NORM_B] : NULL);
}

static void batchnorm_cuda_fwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_batchnorm_fwd(%s, %s, %s, %s, %s, %s, %s, %s, "
              "%.17g, %d);\n", c->Y[NORM_Y], c->Y[NORM_MEAN], c->Y[NORM_RSTD],
              c->X[NORM_X], c->X[NORM_W], c->X[NORM_B], c->X[NORM_RMEAN],
              c->X[NORM_RVAR], c->n->a.norm.eps, !c->g->cfg.infer);
}

static void layernorm_cuda_fwd(EmitOp *c) {
  emit_need_contig(c, c->in->in[0]);
  emit_printf(c, "  mdlrt_layernorm_fwd(%s, %s, %s, %s, %s, %s, %.17g);\n",
              c->Y[NORM_Y], c->Y[NORM_MEAN], c->Y[NORM_RSTD], c->X[NORM_X],
              c->X[NORM_W], c->X[NORM_B], c->n->a.norm.eps);
}

/* groupnorm's G (instancenorm: one group per channel). */
static int64_t norm_groups(const Graph *g, const Node *n) {
  return n->op == OP_INSTANCENORM ? g->vals[n->in[0]].shape.dim[1]
                                  : n->a.norm.groups;
}

static void groupnorm_cuda_fwd(EmitOp *c) {
  emit_need_contig(c, c->in->in[0]);
  emit_printf(c, "  mdlrt_groupnorm_fwd(%s, %s, %s, %s, %s, %s, %lld, "
              "%.17g);\n", c->Y[NORM_Y], c->Y[NORM_MEAN], c->Y[NORM_RSTD],
              c->X[NORM_X], c->X[NORM_W], c->X[NORM_B],
              (long long)norm_groups(c->g, c->n), c->n->a.norm.eps);
}

/* The backward's common arguments: dx, dw, db, dy, x, mean, rstd, w. */
static void norm_bwd_args(EmitOp *c) {
  int ni = c->n->nin;
  emit_printf(c, "%s, %d, %s, %d, %s, %d, %s, %s, %s, %s, %s", c->DX[0],
              c->A[0], c->DX[1], c->A[1], c->DX[2], c->A[2], c->DY,
              c->I[NORM_X], c->I[ni + NORM_MEAN], c->I[ni + NORM_RSTD],
              c->I[NORM_W]);
}

static void batchnorm_cuda_bwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_batchnorm_bwd(");
  norm_bwd_args(c);
  emit_printf(c, ");\n");
}

static void layernorm_cuda_bwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_layernorm_bwd(");
  norm_bwd_args(c);
  emit_printf(c, ");\n");
}

static void groupnorm_cuda_bwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_groupnorm_bwd(");
  norm_bwd_args(c);
  emit_printf(c, ", %lld);\n", (long long)norm_groups(c->g, c->n));
}

const OpDef opdef_BATCHNORM = {
    "batchnorm(x, eps=1e-5)", {ARG_TENSOR("x"), ARG_EPS},
    batchnorm_lower, norm_flops, norm_attrs, norm_init,
    norm_cpu_fwd, norm_cpu_bwd, NULL, batchnorm_cuda_fwd, batchnorm_cuda_bwd,
};

const OpDef opdef_LAYERNORM = {
    "layernorm(x, eps=1e-5)", {ARG_TENSOR("x"), ARG_EPS},
    layernorm_lower, norm_flops, norm_attrs, norm_init,
    norm_cpu_fwd, norm_cpu_bwd, NULL, layernorm_cuda_fwd, layernorm_cuda_bwd,
};

const OpDef opdef_INSTANCENORM = {
    "instancenorm(x, eps=1e-5, affine=true)",
    {ARG_TENSOR("x"), ARG_EPS, {"affine", A_B, false, 1, ARG_ANY}},
    instancenorm_lower, norm_flops, norm_attrs, norm_init,
    norm_cpu_fwd, norm_cpu_bwd, NULL, groupnorm_cuda_fwd, groupnorm_cuda_bwd,
};

const OpDef opdef_GROUPNORM = {
    "groupnorm(x, groups, eps=1e-5)",
    {ARG_TENSOR("x"), {"groups", A_I, true, 0, ARG_POS}, ARG_EPS},
    groupnorm_lower, norm_flops, norm_attrs, norm_init,
    norm_cpu_fwd, norm_cpu_bwd, NULL, groupnorm_cuda_fwd, groupnorm_cuda_bwd,
};

/* ---- rmsnorm: x * rsqrt(mean(x^2) + eps) * weight over the last dim ------------ */

static int rmsnorm_lower(const Call *c) {
  Ev x = c->A->v[0];
  if (!call_need_rank(c, x, 1, MAX_RANK, "a tensor")) return -1;
  const Shape xs = call_val(c, x)->shape;
  int64_t D = xs.dim[xs.rank - 1], rows;
  shape_numel(&xs, &rows);
  const char *full = call_reserve(c, c->base);
  Shape ws = {1, {D}}, stat = {1, {D ? rows / D : 0}};
  int in[2] = {x.v, call_param(c, full, "weight", VK_PARAM, &ws)};
  int n = call_node_named(c, OP_RMSNORM, full, in, 2);
  c->g->nodes[n].a.norm.eps = ev_num(c->A->v[1]);
  c->g->nodes[n].a.norm.affine = true;
  int y = call_out1(c, n, DT_F32, &xs);
  call_out(c, n, xsprintf("%s.rstd", full), DT_F32, &stat, true);
  return y;
}

/* 4 * I: square, sum, scale, weight. */
static int64_t rmsnorm_flops(const Graph *g, const Node *n) {
  return flops_mul(4, op_numel(g, n->in[0]));
}

static void rmsnorm_attrs(const Node *n, FILE *f) {
  fprintf(f, " eps=%g", n->a.norm.eps);
}

/* The weight is ones. */
static void rmsnorm_init(const Graph *g, const Node *n, int k, int s,
                         InitKind *kind, int64_t *fan, int64_t *limit) {
  (void)g, (void)n, (void)fan, (void)limit;
  if (k == NORM_W) kind[s] = INIT_ONE;
}

static void rms_geom(const CpuOp *c, int64_t *rows, int64_t *D) {
  *D = cpu_last_dim(&c->g->vals[c->n->in[0]].shape);
  *rows = *D ? op_numel(c->g, c->n->in[0]) / *D : 0;
}

static void rmsnorm_cpu_fwd(CpuOp *c) {
  int64_t rows, D;
  rms_geom(c, &rows, &D);
  cpu_rmsnorm_fwd(c->x[NORM_X], c->x[NORM_W], c->y[0],
                  c->n->nout > 1 ? c->y[1] : NULL, rows, D,
                  (float)c->n->a.norm.eps);
}

static void rmsnorm_cpu_bwd(CpuOp *c) {
  int64_t rows, D;
  rms_geom(c, &rows, &D);
  float *x = cpu_saved(c, NORM_X, "the input");
  float *w = cpu_saved(c, NORM_W, "the weight");
  float *rstd = cpu_saved(c, c->n->nin + 1, "the inverse rms");
  cpu_rmsnorm_bwd(x, w, rstd, c->dy[0], c->dx[NORM_X], c->dx[NORM_W], rows,
                  D);
}

static void rmsnorm_cuda_fwd(EmitOp *c) {
  emit_need_contig(c, c->in->in[0]);
  emit_printf(c, "  mdlrt_rmsnorm_fwd(%s, %s, %s, %s, %.17g);\n", c->Y[0],
              c->Y[1], c->X[NORM_X], c->X[NORM_W], c->n->a.norm.eps);
}

static void rmsnorm_cuda_bwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_rmsnorm_bwd(%s, %d, %s, %d, %s, %s, %s, %s);\n",
              c->DX[NORM_X], c->A[NORM_X], c->DX[NORM_W], c->A[NORM_W],
              c->DY, c->I[NORM_X], c->I[c->n->nin + 1], c->I[NORM_W]);
}

const OpDef opdef_RMSNORM = {
    "rmsnorm(x, eps=1e-6)",
    {ARG_TENSOR("x"), {"eps", A_F, false, 1e-6, 1, 0}},
    rmsnorm_lower, rmsnorm_flops, rmsnorm_attrs, rmsnorm_init,
    rmsnorm_cpu_fwd, rmsnorm_cpu_bwd, NULL, rmsnorm_cuda_fwd,
    rmsnorm_cuda_bwd,
};
