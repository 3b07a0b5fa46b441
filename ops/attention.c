/* ops/attention.c: fused scaled-dot-product attention (sdpa) and rotary
 * position embedding (rope).
 *
 * sdpa(q, k, v, causal, dropout, scale): q [B, H, S, Dh], k and v
 * [B, Hkv, T, Dh] with H % Hkv == 0 (grouped-query: query head h reads kv
 * head h / (H/Hkv)) -> [B, H, S, Dh], one op: the [S, T] scores never exist
 * as a tensor. It saves q, k, v, its output and the log-sum-exp of each
 * score row (f32 [B, H, S], an extra output); with dropout no mask is kept,
 * the backward redraws it from the step's seed (FlashAttention's way, and
 * the CPU reference's). Its backward's scratch (the row sums of dO * O)
 * comes from the workspace. Autocast's list: 16-bit under the mixed
 * policies. Kernels: runtime/mdlrt_attn.cu (docs/attention.md),
 * backend/cpu/sdpa.c.
 *
 * rope(x, base): [..., S, Dh] (Dh even), the "rotate half" convention: pair
 * (i, i + Dh/2) at position p (the index along dim -2) turns by
 * p * base^(-2i/Dh). Saves nothing: its backward turns dy back.
 */
#include "mdlc.h"

#include <math.h>

/* ---- sdpa ------------------------------------------------------------------------ */

int lower_sdpa(const Call *c, int q, int k, int v, bool causal, double p,
               double scale) {
  const Shape qs = c->g->vals[q].shape, ks = c->g->vals[k].shape,
              vs = c->g->vals[v].shape;
  if (qs.rank != 4 || ks.rank != 4 || vs.rank != 4) {
    diag_error(c->loc, "sdpa expects 4-D [batch, heads, seq, head_dim] q, k "
               "and v, got %s, %s and %s", call_desc(c, q), call_desc(c, k),
               call_desc(c, v));
    return -1;
  }
  if (!shape_eq(&ks, &vs) || ks.dim[0] != qs.dim[0] || ks.dim[3] != qs.dim[3]) {
    diag_error(c->loc, "sdpa: k and v must be [%lld, kv_heads, T, %lld] like "
               "q %s, got %s and %s", (long long)qs.dim[0],
               (long long)qs.dim[3], call_desc(c, q), call_desc(c, k),
               call_desc(c, v));
    return -1;
  }
  if (qs.dim[1] % ks.dim[1]) {
    diag_error(c->loc, "sdpa: the %lld kv heads of %s do not divide the %lld "
               "query heads of %s", (long long)ks.dim[1], call_desc(c, k),
               (long long)qs.dim[1], call_desc(c, q));
    return -1;
  }
  int in[3] = {q, k, v};
  int n = call_node(c, OP_SDPA, c->base, in, 3);
  Node *nd = &c->g->nodes[n];
  nd->a.sdpa.causal = causal;
  nd->a.sdpa.p = p;
  nd->a.sdpa.scale = scale > 0 ? scale : 1.0 / sqrt((double)qs.dim[3]);
  Shape lse = {3, {qs.dim[0], qs.dim[1], qs.dim[2]}};
  int y = call_out1(c, n, DT_F32, &qs);
  call_out(c, n, xsprintf("%s.lse", c->g->nodes[n].name), DT_F32, &lse, true);
  return y;
}

static int sdpa_lower(const Call *c) {
  const Args *A = c->A;
  for (int i = 1; i < 3; i++)
    if (!call_need_float(c, A->v[i], i == 1 ? "k" : "v")) return -1;
  return lower_sdpa(c, A->v[0].v, A->v[1].v, A->v[2].v, A->v[3].i,
                    ev_num(A->v[4]), A->given[5] ? ev_num(A->v[5]) : 0);
}

/* 4 * B * H * S * T * Dh: the two products, 2 FLOPs per multiply-add;
 * causal counts half (the masked half is skipped). */
static int64_t sdpa_flops(const Graph *g, const Node *n) {
  const Shape *q = &g->vals[n->in[0]].shape, *k = &g->vals[n->in[1]].shape;
  int64_t f = flops_mul(4, flops_mul(op_numel(g, n->in[0]), k->dim[2]));
  (void)q;
  return n->a.sdpa.causal ? f / 2 : f;
}

static void sdpa_attrs(const Node *n, FILE *f) {
  fprintf(f, " causal=%d p=%g scale=%g", n->a.sdpa.causal, n->a.sdpa.p,
          n->a.sdpa.scale);
}

static CpuSdpa sdpa_geom(const CpuOp *c) {
  const Shape *q = &c->g->vals[c->n->in[0]].shape;
  const Shape *k = &c->g->vals[c->n->in[1]].shape;
  CpuSdpa p = {.b = q->dim[0], .h = q->dim[1], .hkv = k->dim[1],
               .s = q->dim[2], .t = k->dim[2], .dh = q->dim[3],
               .causal = c->n->a.sdpa.causal, .dropout = c->n->a.sdpa.p,
               .scale = c->n->a.sdpa.scale, .seed = c->seed, .step = c->step,
               .node = c->node};
  return p;
}

static void sdpa_cpu_fwd(CpuOp *c) {
  CpuSdpa p = sdpa_geom(c);
  cpu_sdpa_fwd(&p, c->x[0], c->x[1], c->x[2], c->y[0],
               c->n->nout > 1 ? c->y[1] : NULL);
}

static void sdpa_cpu_bwd(CpuOp *c) {
  CpuSdpa p = sdpa_geom(c);
  int ni = c->n->nin;
  float *q = cpu_saved(c, 0, "q"), *k = cpu_saved(c, 1, "k"),
        *v = cpu_saved(c, 2, "v"), *o = cpu_saved(c, ni, "the output"),
        *lse = cpu_saved(c, ni + 1, "the log-sum-exp");
  cpu_sdpa_bwd(&p, q, k, v, o, lse, c->dy[0], c->dx[0], c->dx[1], c->dx[2]);
}

/* The kernels' limits (runtime/mdlrt_attn.cu): a located error at emission
 * rather than a failure in the middle of the step. */
static void sdpa_cuda_check(EmitOp *c) {
  const Value *q = &c->g->vals[c->n->in[0]];
  int64_t dh = q->shape.dim[3];
  bool wide = q->dtype == DT_F32;
  if (dh > 128 || (!wide && dh % 8))
    emit_unsupported(c, xsprintf("sdpa with head dim %lld in %s (the fused "
                                 "kernels take up to 128, a multiple of 8 in "
                                 "16-bit)", (long long)dh,
                                 dtype_name(q->dtype)));
}

static void sdpa_cuda_fwd(EmitOp *c) {
  const Node *n = c->n;
  sdpa_cuda_check(c);
  emit_printf(c, "  mdlrt_sdpa_fwd(%s, %s, %s, %s, %s, %d, %.17g, %.17g, "
              "%d);\n", c->Y[0], c->Y[1], c->X[0], c->X[1], c->X[2],
              n->a.sdpa.causal, n->a.sdpa.p, n->a.sdpa.scale, c->node);
}

static void sdpa_cuda_bwd(EmitOp *c) {
  const Node *n = c->n;
  int ni = n->nin;
  emit_printf(c, "  mdlrt_sdpa_bwd(%s, %d, %s, %d, %s, %d, %s, %s, %s, %s, "
              "%s, %s, %d, %.17g, %.17g, %d);\n", c->DX[0], c->A[0], c->DX[1],
              c->A[1], c->DX[2], c->A[2], c->DY, c->I[0], c->I[1], c->I[2],
              c->I[ni], c->I[ni + 1], n->a.sdpa.causal, n->a.sdpa.p,
              n->a.sdpa.scale, c->node);
}

const OpDef opdef_SDPA = {
    "sdpa(q, k, v, causal=false, dropout=0, scale=1/sqrt(head_dim))",
    {ARG_TENSOR("q"), ARG_TENSOR("k"), ARG_TENSOR("v"),
     {"causal", A_B, false, 0, ARG_ANY}, {"dropout", A_P, false, 0, ARG_ANY},
     {"scale", A_F, false, 0, 1, 0}},
    sdpa_lower, sdpa_flops, sdpa_attrs, NULL,
    sdpa_cpu_fwd, sdpa_cpu_bwd, NULL, sdpa_cuda_fwd, sdpa_cuda_bwd,
};

/* ---- rope --------------------------------------------------------------------------- */

int lower_rope(const Call *c, int x, double base, const char *local) {
  const Shape xs = c->g->vals[x].shape;
  if (xs.rank < 2 || xs.dim[xs.rank - 1] % 2) {
    diag_error(c->loc, "rope expects [..., seq, head_dim] with an even "
               "head_dim, got %s", call_desc(c, x));
    return -1;
  }
  int n = call_node(c, OP_ROPE, local, &x, 1);
  c->g->nodes[n].a.rope.base = base;
  return call_out1(c, n, DT_F32, &xs);
}

static int rope_lower(const Call *c) {
  return lower_rope(c, c->A->v[0].v, ev_num(c->A->v[1]), c->base);
}

/* 3 per element: two products and a sum (the angles are not counted). */
static int64_t rope_flops(const Graph *g, const Node *n) {
  return flops_mul(3, op_numel(g, n->in[0]));
}

static void rope_attrs(const Node *n, FILE *f) {
  fprintf(f, " base=%g", n->a.rope.base);
}

static void rope_cpu(CpuOp *c, bool inverse) {
  const Shape *s = &c->g->vals[c->n->in[0]].shape;
  float *dst = inverse ? c->dx[0] : c->y[0];
  if (dst)
    cpu_rope(s, inverse ? c->dy[0] : c->x[0], dst, c->n->a.rope.base,
             inverse);
}

static void rope_cpu_fwd(CpuOp *c) { rope_cpu(c, false); }
static void rope_cpu_bwd(CpuOp *c) { rope_cpu(c, true); }

static void rope_cuda_fwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_rope_fwd(%s, %s, %.17g);\n", c->Y[0], c->X[0],
              c->n->a.rope.base);
}

static void rope_cuda_bwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_rope_bwd(%s, %d, %s, %.17g);\n", c->DX[0], c->A[0],
              c->DY, c->n->a.rope.base);
}

const OpDef opdef_ROPE = {
    "rope(x, base=10000)",
    {ARG_TENSOR("x"), {"base", A_F, false, 10000, 1, 0}},
    rope_lower, rope_flops, rope_attrs, NULL,
    rope_cpu_fwd, rope_cpu_bwd, NULL, rope_cuda_fwd, rope_cuda_bwd,
};
