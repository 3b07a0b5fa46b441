/* ops/scan.c: selective_scan, Mamba's S6 recurrence.
 *
 * selective_scan(x, dt, b, c, state): x, dt [N, D, L]; b, c [N, state, L]
 * -> y [N, D, L], with parameters A_log [D, state] and Dskip [D]:
 *   h_t = exp(dt_t A) * h_{t-1} + dt_t b_t x_t,  y_t = c_t . h_t + Dskip x_t
 * over h [N, D, state] from h_0 = 0, A = -exp(A_log). It saves its four
 * inputs; the backward recomputes the states chunk by chunk, the chunk
 * states in the workspace (docs/scan.md). It writes its first input's
 * dtype; its parameters stay f32 under the mixed policies. A_log starts as
 * Mamba's S4D-real log(1..state), Dskip as ones. Kernels:
 * runtime/mdlrt_scan.cu, backend/cpu/scan.c.
 */
#include "mdlc.h"

enum { SCAN_X, SCAN_DT, SCAN_B, SCAN_C, SCAN_A, SCAN_D };

static int scan_lower(const Call *c) {
  const Args *A = c->A;
  int64_t S = A->v[4].i;
  for (int i = 0; i < 4; i++) {
    static const char *const what[] = {"x", "dt", "b", "c"};
    if (!call_need_float(c, A->v[i], what[i]) ||
        !call_need_rank(c, A->v[i], 3, 3, "[N, channels, L] tensor"))
      return -1;
  }
  const Shape xs = call_val(c, A->v[0])->shape;
  const Shape ds = call_val(c, A->v[1])->shape;
  const Shape bs = call_val(c, A->v[2])->shape;
  const Shape cs = call_val(c, A->v[3])->shape;
  Shape want = {3, {xs.dim[0], S, xs.dim[2]}};
  if (!shape_eq(&xs, &ds) || !shape_eq(&bs, &want) || !shape_eq(&cs, &want)) {
    char b1[160];
    diag_error(c->loc, "selective_scan: x and dt must be one [N, D, L] and b, "
               "c %s (state = %lld), got x %s, dt %s, b %s, c %s",
               shape_str(&want, b1), (long long)S, call_desc(c, A->v[0].v),
               call_desc(c, A->v[1].v), call_desc(c, A->v[2].v),
               call_desc(c, A->v[3].v));
    return -1;
  }
  const char *full = call_reserve(c, c->base);
  Shape as = {2, {xs.dim[1], S}}, dsk = {1, {xs.dim[1]}};
  int in[6] = {A->v[0].v, A->v[1].v, A->v[2].v, A->v[3].v,
               call_param(c, full, "A_log", VK_PARAM, &as),
               call_param(c, full, "Dskip", VK_PARAM, &dsk)};
  int n = call_node_named(c, OP_SELECTIVE_SCAN, full, in, 6);
  return call_out1(c, n, DT_F32, &xs);
}

/* Per (n, d, s, t): the update (exp, 2 multiplies, a multiply-add, 4) and
 * the output dot (2); plus 2 per (n, d, t) for the skip. */
static int64_t scan_flops(const Graph *g, const Node *n) {
  int64_t S = g->vals[n->in[SCAN_B]].shape.dim[1];
  int64_t N = op_numel(g, n->out[0]);
  return flops_add(flops_mul(6, flops_mul(N, S)), flops_mul(2, N));
}

static void scan_init(const Graph *g, const Node *n, int k, int s,
                      InitKind *kind, int64_t *fan, int64_t *limit) {
  (void)limit;
  if (k == SCAN_A) {
    kind[s] = INIT_S4D;
    fan[s] = g->vals[n->in[SCAN_A]].shape.dim[1];
  }
  if (k == SCAN_D) kind[s] = INIT_ONE;
}

static void scan_dims(const CpuOp *c, int64_t *N, int64_t *D, int64_t *S,
                      int64_t *L) {
  const Shape *x = &c->g->vals[c->n->in[SCAN_X]].shape;
  *N = x->dim[0], *D = x->dim[1], *L = x->dim[2];
  *S = c->g->vals[c->n->in[SCAN_B]].shape.dim[1];
}

static void scan_cpu_fwd(CpuOp *c) {
  int64_t N, D, S, L;
  scan_dims(c, &N, &D, &S, &L);
  float *const *x = c->x;
  cpu_scan_fwd(N, D, S, L, x[SCAN_X], x[SCAN_DT], x[SCAN_B], x[SCAN_C],
               x[SCAN_A], x[SCAN_D], c->y[0]);
}

static void scan_cpu_bwd(CpuOp *c) {
  int64_t N, D, S, L;
  scan_dims(c, &N, &D, &S, &L);
  float *x = cpu_saved(c, SCAN_X, "x"), *dt = cpu_saved(c, SCAN_DT, "dt"),
        *b = cpu_saved(c, SCAN_B, "b"), *cc = cpu_saved(c, SCAN_C, "c"),
        *a = cpu_saved(c, SCAN_A, "A_log"), *d = cpu_saved(c, SCAN_D, "Dskip");
  float *const *dx = c->dx;
  cpu_scan_bwd(N, D, S, L, x, dt, b, cc, a, d, c->dy[0], dx[SCAN_X],
               dx[SCAN_DT], dx[SCAN_B], dx[SCAN_C], dx[SCAN_A], dx[SCAN_D]);
}

static void scan_cuda_fwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_selective_scan_fwd(%s, %s, %s, %s, %s, %s, %s);\n",
              c->Y[0], c->X[SCAN_X], c->X[SCAN_DT], c->X[SCAN_B],
              c->X[SCAN_C], c->X[SCAN_A], c->X[SCAN_D]);
}

static void scan_cuda_bwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_selective_scan_bwd(");
  for (int k = 0; k < 6; k++)
    emit_printf(c, "%s, %d, ", c->DX[k], c->A[k]);
  emit_printf(c, "%s, %s, %s, %s, %s, %s, %s);\n", c->DY, c->I[SCAN_X],
              c->I[SCAN_DT], c->I[SCAN_B], c->I[SCAN_C], c->I[SCAN_A],
              c->I[SCAN_D]);
}

const OpDef opdef_SELECTIVE_SCAN = {
    "selective_scan(x, dt, b, c, state=16)",
    {ARG_TENSOR("x"), ARG_TENSOR("dt"), ARG_TENSOR("b"), ARG_TENSOR("c"),
     {"state", A_I, false, 16, ARG_POS}},
    scan_lower, scan_flops, NULL, scan_init,
    scan_cpu_fwd, scan_cpu_bwd, NULL, scan_cuda_fwd, scan_cuda_bwd,
};
