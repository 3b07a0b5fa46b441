/* ops/conv.c: conv2d and conv1d.
 *
 * conv2d(x, out, kernel, stride, pad, dilation, groups, bias) on NCHW with a
 * square kernel: weight [out, C/groups, k, k], bias [out]. It autocasts to
 * 16-bit under the mixed policies and saves its input and weight. On the
 * GPU a plan (cuDNN descriptors and algorithms chosen among those whose
 * scratch fits the workspace) is made once in setup() (runtime/
 * mdlrt_conv.cu); the CPU reference is direct loops (backend/cpu/conv.c).
 * conv1d(x [N, C, L], out, kernel, ...) has weight [out, C/groups, k];
 * `causal = true` pads dilation*(kernel-1) on the left only (Mamba's
 * depthwise causal conv). Its kernels are direct (runtime/mdlrt_scan.cu,
 * backend/cpu/scan.c).
 */
#include "mdlc.h"

int64_t conv_out_extent(int64_t h, int64_t k, int64_t s, int64_t p,
                        int64_t d) {
  int64_t span, num;
  if (!mul_ok(d, k - 1, &span) || !add_ok(h, 2 * p, &num) ||
      num - span - 1 < 0)
    return -1;
  return (num - span - 1) / s + 1;
}

static int conv2d_lower(const Call *c) {
  const Args *A = c->A;
  Ev x = A->v[0];
  if (!call_need_rank(c, x, 4, 4, "NCHW input")) return -1;
  const Shape xs = call_val(c, x)->shape;
  int64_t o = A->v[1].i, k = A->v[2].i, s = A->v[3].i, p = A->v[4].i,
          d = A->v[5].i, gr = A->v[6].i;
  bool bias = A->v[7].i;
  if (xs.dim[1] % gr || o % gr) {
    diag_error(c->loc, "conv2d: groups = %lld must divide the input "
               "channels (%lld) and out (%lld)", (long long)gr,
               (long long)xs.dim[1], (long long)o);
    return -1;
  }
  int64_t h = conv_out_extent(xs.dim[2], k, s, p, d);
  int64_t w = conv_out_extent(xs.dim[3], k, s, p, d);
  if (h < 1 || w < 1) {
    diag_error(c->loc, "conv2d: a %lldx%lld kernel (dilation %lld, pad "
               "%lld) does not fit the %lldx%lld input %s", (long long)k,
               (long long)k, (long long)d, (long long)p,
               (long long)xs.dim[2], (long long)xs.dim[3], call_desc(c, x.v));
    return -1;
  }
  Shape ws = {4, {o, xs.dim[1] / gr, k, k}}, bs = {1, {o}};
  Shape y = {4, {xs.dim[0], o, h, w}};
  if (!lower_shape_ok(c->L, &ws, c->loc, "the weight") ||
      !call_shape_ok(c, &y))
    return -1;
  int wt = call_weight(c, 8, &ws);
  if (wt == -1) return -1;
  const char *full = call_reserve(c, c->base);
  int in[3] = {x.v, wt >= 0 ? wt : call_param(c, full, "weight", VK_PARAM, &ws),
               0};
  if (bias) in[LINEAR_B] = call_param(c, full, "bias", VK_PARAM, &bs);
  int n = call_node_named(c, OP_CONV2D, full, in, bias ? 3 : 2);
  Node *nd = &c->g->nodes[n];
  nd->a.conv.out = o, nd->a.conv.kernel = k;
  nd->a.conv.stride = s, nd->a.conv.pad = p;
  nd->a.conv.dilation = d, nd->a.conv.groups = gr;
  nd->a.conv.bias = bias;
  return call_out1(c, n, DT_F32, &y);
}

/* 2 * N * (C/groups) * k * k, plus N for the bias. */
static int64_t conv2d_flops(const Graph *g, const Node *n) {
  const Shape *x = &g->vals[n->in[0]].shape;
  int64_t cin = x->rank == 4 ? x->dim[1] : 1;
  int64_t k = n->a.conv.kernel;
  int64_t gr = n->a.conv.groups ? n->a.conv.groups : 1;
  int64_t N = op_numel(g, n->out[0]);
  int64_t f = flops_mul(2, flops_mul(N, flops_mul(cin / gr, flops_mul(k, k))));
  return n->a.conv.bias ? flops_add(f, N) : f;
}

static void conv2d_attrs(const Node *n, FILE *f) {
  fprintf(f, " out=%lld k=%lld s=%lld p=%lld d=%lld g=%lld bias=%d",
          (long long)n->a.conv.out, (long long)n->a.conv.kernel,
          (long long)n->a.conv.stride, (long long)n->a.conv.pad,
          (long long)n->a.conv.dilation, (long long)n->a.conv.groups,
          n->a.conv.bias);
}

static CpuConv conv_geom(const Graph *g, const Node *n) {
  const Shape *x = &g->vals[n->in[0]].shape, *w = &g->vals[n->in[1]].shape;
  CpuConv p = {.n = x->dim[0], .c = x->dim[1], .h = x->dim[2], .w = x->dim[3],
               .o = w->dim[0], .k = n->a.conv.kernel,
               .stride = n->a.conv.stride, .pad = n->a.conv.pad,
               .dil = n->a.conv.dilation, .groups = n->a.conv.groups};
  cpu_conv_out(&p);
  return p;
}

static void conv2d_cpu_fwd(CpuOp *c) {
  CpuConv p = conv_geom(c->g, c->n);
  cpu_conv2d_fwd(&p, c->x[0], c->x[1], c->n->nin > 2 ? c->x[2] : NULL,
                 c->y[0]);
}

static void conv2d_cpu_bwd(CpuOp *c) {
  CpuConv p = conv_geom(c->g, c->n);
  float *x = cpu_saved(c, 0, "the input x");
  float *w = cpu_saved(c, 1, "the weight");
  cpu_conv2d_bwd(&p, x, w, c->dy[0], c->dx[0], c->dx[1],
                 c->n->nin > 2 ? c->dx[2] : NULL);
}

/* The plan: descriptors and algorithms, made once. */
static void conv2d_cuda_setup(EmitOp *c) {
  const Graph *g = c->g;
  const Node *n = c->n;
  const Shape *xs = &g->vals[n->in[0]].shape;
  const Shape *ys = &g->vals[n->out[0]].shape;
  emit_global(c, "static mdlrt_conv *conv_%d; /* %s */\n", c->node, n->name);
  emit_printf(c, "  /* conv2d '%s' (%s): descriptors and algorithms, once */\n",
              n->name, emit_loc(n->loc));
  emit_printf(c, "  conv_%d = mdlrt_conv_plan(%s, %lld, %lld, %lld, %lld, "
              "%lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld);\n", c->node,
              emit_dtype(g->vals[n->out[0]].dtype), (long long)xs->dim[0],
              (long long)xs->dim[1], (long long)xs->dim[2],
              (long long)xs->dim[3], (long long)n->a.conv.out,
              (long long)n->a.conv.kernel, (long long)n->a.conv.stride,
              (long long)n->a.conv.pad, (long long)n->a.conv.dilation,
              (long long)n->a.conv.groups, (long long)ys->dim[2],
              (long long)ys->dim[3]);
}

static void conv2d_cuda_fwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_conv_fwd(conv_%d, %s, %s, %s, %s);\n", c->node,
              c->Y[0], c->X[0], c->X[1], c->X[2]);
}

static void conv2d_cuda_bwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_conv_bwd(conv_%d, %s, %d, %s, %d, %s, %d, %s, %s, "
              "%s);\n", c->node, c->DX[0], c->A[0], c->DX[1], c->A[1],
              c->DX[2], c->A[2], c->DY, c->I[0], c->I[1]);
}

const OpDef opdef_CONV2D = {
    "conv2d(x, out, kernel, stride=1, pad=0, dilation=1, groups=1, "
    "bias=true, weight=NAME)",
    {ARG_TENSOR("x"), {"out", A_I, true, 0, ARG_POS},
     {"kernel", A_I, true, 0, ARG_POS}, {"stride", A_I, false, 1, ARG_POS},
     {"pad", A_I, false, 0, ARG_NNEG}, {"dilation", A_I, false, 1, ARG_POS},
     {"groups", A_I, false, 1, ARG_POS}, {"bias", A_B, false, 1, ARG_ANY},
     {"weight", A_TOPT, false, 0, ARG_ANY}},
    conv2d_lower, conv2d_flops, conv2d_attrs, linear_init,
    conv2d_cpu_fwd, conv2d_cpu_bwd, conv2d_cuda_setup, conv2d_cuda_fwd,
    conv2d_cuda_bwd,
};

/* ---- conv1d ------------------------------------------------------------------ */

static void conv1d_pads(const Node *n, int64_t *pl, int64_t *pr) {
  if (n->a.conv.causal) {
    *pl = n->a.conv.dilation * (n->a.conv.kernel - 1);
    *pr = 0;
  } else {
    *pl = *pr = n->a.conv.pad;
  }
}

static int conv1d_lower(const Call *c) {
  const Args *A = c->A;
  Ev x = A->v[0];
  if (!call_need_rank(c, x, 3, 3, "[N, C, L] input")) return -1;
  const Shape xs = call_val(c, x)->shape;
  int64_t o = A->v[1].i, k = A->v[2].i, s = A->v[3].i, p = A->v[4].i,
          d = A->v[5].i, gr = A->v[6].i;
  bool bias = A->v[7].i, causal = A->v[8].i;
  if (causal && A->given[4]) {
    diag_error(A->where[4], "conv1d: causal = true pads the left end itself; "
               "it takes no 'pad'");
    return -1;
  }
  if (xs.dim[1] % gr || o % gr) {
    diag_error(c->loc, "conv1d: groups = %lld must divide the input "
               "channels (%lld) and out (%lld)", (long long)gr,
               (long long)xs.dim[1], (long long)o);
    return -1;
  }
  int64_t span, lin, pl = causal ? 0 : p, pr = causal ? 0 : p;
  if (causal && !mul_ok(d, k - 1, &pl)) pl = INT64_MAX;
  int64_t len = -1;
  if (mul_ok(d, k - 1, &span) && add_ok(xs.dim[2], pl, &lin) &&
      add_ok(lin, pr, &lin) && lin - span - 1 >= 0)
    len = (lin - span - 1) / s + 1;
  if (len < 1) {
    diag_error(c->loc, "conv1d: a kernel of %lld (dilation %lld) does not "
               "fit the input %s", (long long)k, (long long)d,
               call_desc(c, x.v));
    return -1;
  }
  Shape ws = {3, {o, xs.dim[1] / gr, k}}, bs = {1, {o}};
  Shape y = {3, {xs.dim[0], o, len}};
  if (!lower_shape_ok(c->L, &ws, c->loc, "the weight") ||
      !call_shape_ok(c, &y))
    return -1;
  int wt = call_weight(c, 9, &ws);
  if (wt == -1) return -1;
  const char *full = call_reserve(c, c->base);
  int in[3] = {x.v, wt >= 0 ? wt : call_param(c, full, "weight", VK_PARAM, &ws),
               0};
  if (bias) in[LINEAR_B] = call_param(c, full, "bias", VK_PARAM, &bs);
  int n = call_node_named(c, OP_CONV1D, full, in, bias ? 3 : 2);
  Node *nd = &c->g->nodes[n];
  nd->a.conv.out = o, nd->a.conv.kernel = k;
  nd->a.conv.stride = s, nd->a.conv.pad = p;
  nd->a.conv.dilation = d, nd->a.conv.groups = gr;
  nd->a.conv.bias = bias, nd->a.conv.causal = causal;
  return call_out1(c, n, DT_F32, &y);
}

/* 2 * N * (C/groups) * k, plus N for the bias. */
static int64_t conv1d_flops(const Graph *g, const Node *n) {
  const Shape *x = &g->vals[n->in[0]].shape;
  int64_t gr = n->a.conv.groups ? n->a.conv.groups : 1;
  int64_t N = op_numel(g, n->out[0]);
  int64_t f = flops_mul(2, flops_mul(N, flops_mul(x->dim[1] / gr,
                                                  n->a.conv.kernel)));
  return n->a.conv.bias ? flops_add(f, N) : f;
}

static void conv1d_attrs(const Node *n, FILE *f) {
  conv2d_attrs(n, f);
  fprintf(f, " causal=%d", n->a.conv.causal);
}

static CpuConv1d conv1d_geom(const Graph *g, const Node *n) {
  const Shape *x = &g->vals[n->in[0]].shape;
  CpuConv1d p = {.n = x->dim[0], .c = x->dim[1], .l = x->dim[2],
                 .out = n->a.conv.out, .k = n->a.conv.kernel,
                 .stride = n->a.conv.stride, .dil = n->a.conv.dilation,
                 .groups = n->a.conv.groups};
  conv1d_pads(n, &p.pad_left, &p.pad_right);
  cpu_conv1d_out(&p);
  return p;
}

static void conv1d_cpu_fwd(CpuOp *c) {
  CpuConv1d p = conv1d_geom(c->g, c->n);
  cpu_conv1d_fwd(&p, c->x[0], c->x[1], c->n->nin > 2 ? c->x[2] : NULL,
                 c->y[0]);
}

static void conv1d_cpu_bwd(CpuOp *c) {
  CpuConv1d p = conv1d_geom(c->g, c->n);
  float *x = cpu_saved(c, 0, "the input x");
  float *w = cpu_saved(c, 1, "the weight");
  cpu_conv1d_bwd(&p, x, w, c->dy[0], c->dx[0], c->dx[1],
                 c->n->nin > 2 ? c->dx[2] : NULL);
}

static void conv1d_cuda_fwd(EmitOp *c) {
  int64_t pl, pr;
  conv1d_pads(c->n, &pl, &pr);
  emit_printf(c, "  mdlrt_conv1d_fwd(%s, %s, %s, %s, %lld, %lld, %lld, %lld, "
              "%lld);\n", c->Y[0], c->X[0], c->X[1], c->X[2],
              (long long)c->n->a.conv.stride, (long long)pl, (long long)pr,
              (long long)c->n->a.conv.dilation,
              (long long)c->n->a.conv.groups);
}

static void conv1d_cuda_bwd(EmitOp *c) {
  int64_t pl, pr;
  conv1d_pads(c->n, &pl, &pr);
  emit_printf(c, "  mdlrt_conv1d_bwd(%s, %d, %s, %d, %s, %d, %s, %s, %s, "
              "%lld, %lld, %lld, %lld, %lld);\n", c->DX[0], c->A[0],
              c->DX[1], c->A[1], c->DX[2], c->A[2], c->DY, c->I[0], c->I[1],
              (long long)c->n->a.conv.stride, (long long)pl, (long long)pr,
              (long long)c->n->a.conv.dilation,
              (long long)c->n->a.conv.groups);
}

const OpDef opdef_CONV1D = {
    "conv1d(x, out, kernel, stride=1, pad=0, dilation=1, groups=1, "
    "bias=true, causal=false, weight=NAME)",
    {ARG_TENSOR("x"), {"out", A_I, true, 0, ARG_POS},
     {"kernel", A_I, true, 0, ARG_POS}, {"stride", A_I, false, 1, ARG_POS},
     {"pad", A_I, false, 0, ARG_NNEG}, {"dilation", A_I, false, 1, ARG_POS},
     {"groups", A_I, false, 1, ARG_POS}, {"bias", A_B, false, 1, ARG_ANY},
     {"causal", A_B, false, 0, ARG_ANY},
     {"weight", A_TOPT, false, 0, ARG_ANY}},
    conv1d_lower, conv1d_flops, conv1d_attrs, linear_init,
    conv1d_cpu_fwd, conv1d_cpu_bwd, NULL, conv1d_cuda_fwd, conv1d_cuda_bwd,
};
