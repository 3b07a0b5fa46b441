/* ops/linear.c: linear and matmul, the matrix products.
 *
 * linear(x, out, bias) makes weight [out, in] and bias [out] and computes
 * x [..., in] -> [..., out]; matmul multiplies two tensors' last two dims
 * with NumPy-broadcast batch dims (either side may be transposed). Both
 * autocast to 16-bit under the mixed policies (PC_MATMUL), and both save
 * their two operands. On the GPU they are cuBLAS GEMMs (runtime/
 * mdlrt_linear.cu), on the CPU plain triple loops (backend/cpu/linear.c).
 */
#include "mdlc.h"

#include <string.h>

/* ---- linear ---------------------------------------------------------------- */

int lower_linear(const Call *c, int x, int64_t o, bool bias, const char *full,
                 const char *outname, int weight) {
  const Value *xv = &c->g->vals[x];
  int64_t in_f = xv->shape.dim[xv->shape.rank - 1];
  Shape w = {2, {o, in_f}}, bb = {1, {o}}, y = xv->shape;
  y.dim[y.rank - 1] = o;
  if (!lower_shape_ok(c->L, &w, c->loc, "the weight") ||
      !call_shape_ok(c, &y))
    return -1;
  int in[3] = {x, weight >= 0 ? weight
                              : call_param(c, full, "weight", VK_PARAM, &w),
               0};
  if (bias) in[LINEAR_B] = call_param(c, full, "bias", VK_PARAM, &bb);
  int n = call_node_named(c, OP_LINEAR, full, in, bias ? 3 : 2);
  c->g->nodes[n].a.linear.out = o;
  c->g->nodes[n].a.linear.bias = bias;
  return call_out(c, n, outname ? outname : full, DT_F32, &y, false);
}

static int linear_lower(const Call *c) {
  Ev x = c->A->v[0];
  if (!call_need_rank(c, x, 1, MAX_RANK, "a tensor")) return -1;
  const Shape *xs = &call_val(c, x)->shape;
  Shape ws = {2, {c->A->v[1].i, xs->dim[xs->rank - 1]}};
  int w = call_weight(c, 3, &ws);
  if (w == -1) return -1;
  return lower_linear(c, x.v, c->A->v[1].i, c->A->v[2].i,
                      call_reserve(c, c->base), NULL, w);
}

/* 2 * rows * in * out, plus rows * out for the bias. */
static int64_t linear_flops(const Graph *g, const Node *n) {
  const Shape *x = &g->vals[n->in[0]].shape;
  int64_t in = x->rank ? x->dim[x->rank - 1] : 1;
  int64_t N = op_numel(g, n->out[0]);
  int64_t f = flops_mul(2, flops_mul(N, in));
  return n->a.linear.bias ? flops_add(f, N) : f;
}

static void linear_attrs(const Node *n, FILE *f) {
  fprintf(f, " out=%lld bias=%d", (long long)n->a.linear.out,
          n->a.linear.bias);
}

/* Weight and bias Kaiming-uniform with the weight's fan-in (PyTorch's). */
void linear_init(const Graph *g, const Node *n, int k, int s, InitKind *kind,
                 int64_t *fan, int64_t *limit) {
  (void)limit;
  if (k < LINEAR_W) return;
  const Value *w = &g->vals[init_source(g, n->in[LINEAR_W])];
  kind[s] = INIT_KAIMING;
  fan[s] = 1;
  for (int d = 1; d < w->shape.rank; d++) fan[s] *= w->shape.dim[d];
}

static void linear_cpu_fwd(CpuOp *c) {
  const Shape *s0 = &c->g->vals[c->n->in[0]].shape;
  int64_t k = cpu_last_dim(s0), m = op_numel(c->g, c->n->in[0]) / (k ? k : 1);
  cpu_linear_fwd(c->x[0], c->x[1], c->n->nin > 2 ? c->x[2] : NULL, c->y[0],
                 m, k, cpu_last_dim(&c->g->vals[c->n->out[0]].shape));
}

static void linear_cpu_bwd(CpuOp *c) {
  const Shape *s0 = &c->g->vals[c->n->in[0]].shape;
  int64_t k = cpu_last_dim(s0), m = op_numel(c->g, c->n->in[0]) / (k ? k : 1);
  float *x = c->dx[1] ? cpu_saved(c, 0, "the input x") : NULL;
  float *w = c->dx[0] ? cpu_saved(c, 1, "the weight") : NULL;
  cpu_linear_bwd(x, w, c->dy[0], c->dx[0], c->dx[1],
                 c->n->nin > 2 ? c->dx[2] : NULL, m, k,
                 cpu_last_dim(&c->g->vals[c->n->out[0]].shape));
}

/* M rows of K inputs: the GEMM's shape. */
static void linear_mk(const Graph *g, const Node *n, int64_t *M, int64_t *K) {
  *K = cpu_last_dim(&g->vals[n->in[0]].shape);
  *M = op_numel(g, n->in[0]) / *K;
}

static void linear_cuda_fwd(EmitOp *c) {
  int64_t M, K;
  emit_need_contig(c, c->in->in[0]);
  linear_mk(c->g, c->n, &M, &K);
  emit_printf(c, "  mdlrt_linear_fwd(%s, %s, %s, %s, %lld, %lld, %lld);\n",
              c->Y[0], c->X[0], c->X[1], c->X[2], (long long)M, (long long)K,
              (long long)c->n->a.linear.out);
}

static void linear_cuda_bwd(EmitOp *c) {
  int64_t M, K;
  linear_mk(c->g, c->n, &M, &K);
  emit_printf(c, "  mdlrt_linear_bwd(%s, %d, %s, %d, %s, %d, %s, %s, %s, "
              "%lld, %lld, %lld);\n", c->DX[0], c->A[0], c->DX[1], c->A[1],
              c->DX[2], c->A[2], c->DY, c->I[0], c->I[1], (long long)M,
              (long long)K, (long long)c->n->a.linear.out);
}

const OpDef opdef_LINEAR = {
    "linear(x, out, bias=true, weight=NAME)",
    {ARG_TENSOR("x"), {"out", A_I, true, 0, ARG_POS},
     {"bias", A_B, false, 1, ARG_ANY}, {"weight", A_TOPT, false, 0, ARG_ANY}},
    linear_lower, linear_flops, linear_attrs, linear_init,
    linear_cpu_fwd, linear_cpu_bwd, NULL, linear_cuda_fwd, linear_cuda_bwd,
};

/* ---- matmul ------------------------------------------------------------------ */

/* matmul shapes: [..., m, k] x [..., k, n] -> [..., m, n]. */
static bool matmul_shape(const Call *c, int a, int b, bool ta, bool tb,
                         Shape *y) {
  const Shape *sa = &c->g->vals[a].shape, *sb = &c->g->vals[b].shape;
  int64_t m = sa->dim[sa->rank - (ta ? 1 : 2)];
  int64_t ka = sa->dim[sa->rank - (ta ? 2 : 1)];
  int64_t kb = sb->dim[sb->rank - (tb ? 1 : 2)];
  int64_t n = sb->dim[sb->rank - (tb ? 2 : 1)];
  if (ka != kb) {
    diag_error(c->loc, "matmul: inner dimensions differ: %s%s has %lld, "
               "%s%s has %lld", call_desc(c, a), ta ? " (transposed)" : "",
               (long long)ka, call_desc(c, b), tb ? " (transposed)" : "",
               (long long)kb);
    return false;
  }
  Shape ba = {sa->rank - 2, {0}}, bb = {sb->rank - 2, {0}};
  memcpy(ba.dim, sa->dim, sizeof(int64_t) * (size_t)ba.rank);
  memcpy(bb.dim, sb->dim, sizeof(int64_t) * (size_t)bb.rank);
  if (!shape_broadcast(&ba, &bb, y) || y->rank + 2 > MAX_RANK) {
    diag_error(c->loc, "matmul: batch dimensions of %s and %s do not "
               "broadcast", call_desc(c, a), call_desc(c, b));
    return false;
  }
  y->dim[y->rank++] = m;
  y->dim[y->rank++] = n;
  return call_shape_ok(c, y);
}

int lower_matmul(const Call *c, int a, int b, bool ta, bool tb,
                 const char *local) {
  Shape y;
  if (!matmul_shape(c, a, b, ta, tb, &y)) return -1;
  int in[2] = {a, b};
  int n = call_node(c, OP_MATMUL, local, in, 2);
  c->g->nodes[n].a.matmul.ta = ta;
  c->g->nodes[n].a.matmul.tb = tb;
  return call_out1(c, n, DT_F32, &y);
}

static int matmul_lower(const Call *c) {
  Ev x = c->A->v[0], b = c->A->v[1];
  if (!call_need_float(c, b, "the second input") ||
      !call_need_rank(c, x, 2, MAX_RANK, "matrices") ||
      !call_need_rank(c, b, 2, MAX_RANK, "matrices"))
    return -1;
  return lower_matmul(c, x.v, b.v, c->A->v[2].i, c->A->v[3].i, c->base);
}

/* 2 * N * k: each output element is a k-long dot. */
static int64_t matmul_flops(const Graph *g, const Node *n) {
  const Shape *x = &g->vals[n->in[0]].shape;
  int64_t k = x->rank < 2 ? 1
              : n->a.matmul.ta ? x->dim[x->rank - 2] : x->dim[x->rank - 1];
  return flops_mul(2, flops_mul(op_numel(g, n->out[0]), k));
}

static void matmul_attrs(const Node *n, FILE *f) {
  fprintf(f, " ta=%d tb=%d", n->a.matmul.ta, n->a.matmul.tb);
}

static void matmul_cpu_fwd(CpuOp *c) {
  const Graph *g = c->g;
  const Node *n = c->n;
  cpu_matmul_fwd(&g->vals[n->in[0]].shape, c->x[0], n->a.matmul.ta,
                 &g->vals[n->in[1]].shape, c->x[1], n->a.matmul.tb,
                 &g->vals[n->out[0]].shape, c->y[0]);
}

static void matmul_cpu_bwd(CpuOp *c) {
  const Graph *g = c->g;
  const Node *n = c->n;
  float *a = cpu_saved(c, 0, "operand a");
  float *b = cpu_saved(c, 1, "operand b");
  cpu_matmul_bwd(&g->vals[n->in[0]].shape, a, n->a.matmul.ta,
                 &g->vals[n->in[1]].shape, b, n->a.matmul.tb,
                 &g->vals[n->out[0]].shape, c->dy[0], c->dx[0], c->dx[1]);
}

/* The batched GEMM: batch of [m, k] x [k, n]; sa, sb the operands' batch
 * strides (0: broadcast). */
typedef struct {
  int64_t batch, m, k, n, sa, sb;
} MatGemm;

static MatGemm mat_gemm(const Graph *g, const Node *n) {
  const Shape *xs = &g->vals[n->in[0]].shape, *bs = &g->vals[n->in[1]].shape;
  const Shape *ys = &g->vals[n->out[0]].shape;
  MatGemm q;
  q.m = ys->dim[ys->rank - 2], q.n = ys->dim[ys->rank - 1];
  q.k = n->a.matmul.ta ? xs->dim[xs->rank - 2] : xs->dim[xs->rank - 1];
  q.batch = shape_numel_ok(ys) / (q.m * q.n);
  q.sa = shape_numel_ok(xs) == q.m * q.k ? 0 : q.m * q.k;
  q.sb = shape_numel_ok(bs) == q.k * q.n ? 0 : q.k * q.n;
  return q;
}

static void matmul_cuda_fwd(EmitOp *c) {
  const Graph *g = c->g;
  const Node *n = c->n;
  emit_need_contig(c, c->in->in[0]), emit_need_contig(c, c->in->in[1]);
  MatGemm q = mat_gemm(g, n);
  int64_t na = shape_numel_ok(&g->vals[n->in[0]].shape);
  int64_t nb = shape_numel_ok(&g->vals[n->in[1]].shape);
  if ((q.sa && na != q.batch * q.m * q.k) ||
      (q.sb && nb != q.batch * q.k * q.n))
    emit_unsupported(c, "matmul with partly broadcast batch dims");
  emit_printf(c, "  mdlrt_matmul_fwd(%s, %s, %s, %d, %d, %lld, %lld, %lld, "
              "%lld, %lld, %lld);\n", c->Y[0], c->X[0], c->X[1],
              n->a.matmul.ta, n->a.matmul.tb, (long long)q.batch,
              (long long)q.m, (long long)q.k, (long long)q.n,
              (long long)q.sa, (long long)q.sb);
}

static void matmul_cuda_bwd(EmitOp *c) {
  const Node *n = c->n;
  MatGemm q = mat_gemm(c->g, n);
  emit_printf(c, "  mdlrt_matmul_bwd(%s, %d, %s, %d, %s, %s, %s, %d, %d, "
              "%lld, %lld, %lld, %lld, %lld, %lld);\n", c->DX[0], c->A[0],
              c->DX[1], c->A[1], c->DY, c->I[0], c->I[1], n->a.matmul.ta,
              n->a.matmul.tb, (long long)q.batch, (long long)q.m,
              (long long)q.k, (long long)q.n, (long long)q.sa,
              (long long)q.sb);
}

const OpDef opdef_MATMUL = {
    "matmul(a, b, transpose_a=false, transpose_b=false)",
    {ARG_TENSOR("a"), ARG_TENSOR("b"),
     {"transpose_a", A_B, false, 0, ARG_ANY},
     {"transpose_b", A_B, false, 0, ARG_ANY}},
    matmul_lower, matmul_flops, matmul_attrs, NULL,
    matmul_cpu_fwd, matmul_cpu_bwd, NULL, matmul_cuda_fwd, matmul_cuda_bwd,
};
