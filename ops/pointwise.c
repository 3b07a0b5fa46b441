/* ops/pointwise.c: the elementwise ops: activations, dropout, add, mul,
 * scale and cast.
 *
 * Each maps elements one to one (add and mul with NumPy broadcasting). The
 * activations differ only in what their backward reads: the output (relu,
 * tanh, sigmoid) or the input (gelu, silu), which is their save rule in
 * ir/ops.def (exp and softplus, on autocast's f32 list, compute and write
 * f32 under the mixed policies); dropout keeps its u8 mask as an extra output. On the GPU they
 * are one strided kernel each (runtime/mdlrt_pointwise.cu), told which
 * function by the op's runtime code (ir/ops.def's RT column).
 */
#include "mdlc.h"

#include <stdlib.h>
#include <string.h>

/* One per element (transcendentals count as 1). */
static int64_t per_element(const Graph *g, const Node *n) {
  return op_numel(g, n->out[0]);
}

/* ---- activations ---------------------------------------------------------------- */

static int unary_lower(const Call *c) {
  Ev x = c->A->v[0];
  int n = call_node(c, c->opc, c->base, &x.v, 1);
  return call_out1(c, n, DT_F32, &c->g->vals[x.v].shape);
}

static void unary_cpu_fwd(CpuOp *c, const CpuAct *a) {
  cpu_act_fwd(a, c->x[0], c->y[0], op_numel(c->g, c->n->in[0]));
}

/* The backward reads what the op saved: its output or its input. */
static void unary_cpu_bwd(CpuOp *c, const CpuAct *a) {
  bool out = op_info[c->n->op].save & SV_OUT;
  float *s = out ? cpu_saved(c, c->n->nin, "the output")
                 : cpu_saved(c, 0, "the input");
  if (c->dx[0])
    cpu_act_bwd(a, s, c->dy[0], c->dx[0], op_numel(c->g, c->n->in[0]));
}

static void unary_cuda_fwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_unary_fwd(%s, %s, %s, 0);\n", op_info[c->n->op].rt,
              c->Y[0], c->X[0]);
}

static void unary_cuda_bwd(EmitOp *c) {
  bool out = op_info[c->n->op].save & SV_OUT;
  emit_printf(c, "  mdlrt_unary_bwd(%s, %s, %d, %s, %s, 0);\n",
              op_info[c->n->op].rt, c->DX[0], c->A[0], c->DY,
              out ? c->I[c->n->nin] : c->I[0]);
}

/* An activation: its name and its CPU reference (backend/cpu/pointwise.c);
 * its runtime code is its RT column in ir/ops.def. */
#define UNARY(e, name, act)                                                  \
  static void act##_fwd(CpuOp *c) { unary_cpu_fwd(c, &act); }               \
  static void act##_bwd(CpuOp *c) { unary_cpu_bwd(c, &act); }               \
  const OpDef opdef_##e = {                                                  \
      name "(x)", {ARG_TENSOR("x")},                                         \
      unary_lower, per_element, NULL, NULL,                                  \
      act##_fwd, act##_bwd, NULL, unary_cuda_fwd, unary_cuda_bwd,            \
  };
UNARY(RELU, "relu", cpu_relu)
UNARY(GELU, "gelu", cpu_gelu)
UNARY(SILU, "silu", cpu_silu)
UNARY(TANH, "tanh", cpu_tanh)
UNARY(SIGMOID, "sigmoid", cpu_sigmoid)
UNARY(EXP, "exp", cpu_exp)
UNARY(SOFTPLUS, "softplus", cpu_softplus)

/* ---- dropout ---------------------------------------------------------------------- */

int lower_dropout(const Call *c, int x, double p, const char *local) {
  int n = call_node(c, OP_DROPOUT, local, &x, 1);
  c->g->nodes[n].a.dropout.p = p;
  Shape s = c->g->vals[x].shape; /* a copy: call_out1 may move g->vals */
  int y = call_out1(c, n, DT_F32, &s);
  call_out(c, n, xsprintf("%s.mask", c->g->nodes[n].name), DT_U8, &s, true);
  return y;
}

static int dropout_lower(const Call *c) {
  return lower_dropout(c, c->A->v[0].v, ev_num(c->A->v[1]), c->base);
}

static void dropout_attrs(const Node *n, FILE *f) {
  fprintf(f, " p=%g", n->a.dropout.p);
}

static void dropout_cpu_fwd(CpuOp *c) {
  int64_t nx = op_numel(c->g, c->n->in[0]);
  uint8_t *mask = cpu_host_alloc((size_t)(nx ? nx : 1));
  cpu_dropout_mask(c->seed, c->node, c->step, c->n->a.dropout.p, mask, nx);
  cpu_dropout_apply(c->x[0], mask, c->n->a.dropout.p, c->y[0], nx);
  if (c->n->nout > DROPOUT_MASK)
    for (int64_t i = 0; i < nx; i++) c->y[DROPOUT_MASK][i] = mask[i];
  free(mask);
}

static void dropout_cpu_bwd(CpuOp *c) {
  int64_t nx = op_numel(c->g, c->n->in[0]);
  float *m = cpu_saved(c, c->n->nin + DROPOUT_MASK, "the mask");
  uint8_t *mask = cpu_host_alloc((size_t)(nx ? nx : 1));
  for (int64_t i = 0; i < nx; i++) mask[i] = m[i] != 0;
  if (c->dx[0]) cpu_dropout_apply(c->dy[0], mask, c->n->a.dropout.p, c->dx[0], nx);
  free(mask);
}

static void dropout_cuda_fwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_dropout_fwd(%s, %s, %s, %.17g, %d);\n", c->Y[0],
              c->Y[DROPOUT_MASK], c->X[0], c->n->a.dropout.p, c->node);
}

static void dropout_cuda_bwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_dropout_bwd(%s, %d, %s, %s, %.17g);\n", c->DX[0],
              c->A[0], c->DY, c->I[c->n->nin + DROPOUT_MASK],
              c->n->a.dropout.p);
}

const OpDef opdef_DROPOUT = {
    "dropout(x, p=0.1)", {ARG_TENSOR("x"), {"p", A_P, false, 0.1, ARG_ANY}},
    dropout_lower, per_element, dropout_attrs, NULL,
    dropout_cpu_fwd, dropout_cpu_bwd, NULL, dropout_cuda_fwd,
    dropout_cuda_bwd,
};

/* ---- add and mul, with broadcasting ---------------------------------------------------- */

int lower_binary(const Call *c, Op op, Ev a, Ev b, const char *local) {
  if (!call_need_float(c, a, "the left operand") ||
      !call_need_float(c, b, "the right operand"))
    return -1;
  Shape y;
  if (!shape_broadcast(&call_val(c, a)->shape, &call_val(c, b)->shape, &y)) {
    diag_error(c->loc, "%s: shapes %s and %s do not broadcast", c->op,
               call_desc(c, a.v), call_desc(c, b.v));
    return -1;
  }
  int in[2] = {a.v, b.v};
  int n = call_node(c, op, local, in, 2);
  return call_out1(c, n, DT_F32, &y);
}

/* add(a, b) and mul(a, b) written as calls: the symbol's lowering, with the
 * call's dtype override. */
static int binary_lower(const Call *c) {
  Call sym = *c;
  sym.dtype = -1;
  int v = lower_binary(&sym, c->opc, c->A->v[0], c->A->v[1], c->base);
  if (v >= 0) c->g->nodes[c->g->vals[v].node].dtype_override = c->dtype;
  return v;
}

static void binary_cpu_fwd(CpuOp *c) {
  const Graph *g = c->g;
  const Node *n = c->n;
  cpu_binary_fwd(n->op, &g->vals[n->in[0]].shape, c->x[0],
                 &g->vals[n->in[1]].shape, c->x[1], &g->vals[n->out[0]].shape,
                 c->y[0]);
}

static void binary_cpu_bwd(CpuOp *c) {
  const Graph *g = c->g;
  const Node *n = c->n;
  float *a = NULL, *b = NULL;
  if (n->op == OP_MUL) {
    if (c->dx[1]) a = cpu_saved(c, 0, "operand a");
    if (c->dx[0]) b = cpu_saved(c, 1, "operand b");
  }
  cpu_binary_bwd(n->op, &g->vals[n->in[0]].shape, a, &g->vals[n->in[1]].shape,
                 b, &g->vals[n->out[0]].shape, c->dy[0], c->dx[0], c->dx[1]);
}

static void add_cuda_fwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_add_fwd(%s, %s, %s);\n", c->Y[0], c->X[0], c->X[1]);
}

static void mul_cuda_fwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_mul_fwd(%s, %s, %s);\n", c->Y[0], c->X[0], c->X[1]);
}

/* d(a + b): dy summed over each operand's broadcast dims; d(a * b) the
 * same of dy times the other operand. */
static void binary_cuda_bwd(EmitOp *c) {
  bool mul = c->n->op == OP_MUL;
  for (int k = 0; k < 2; k++)
    if (!emit_none(c->DX[k]))
      emit_printf(c, "  mdlrt_bcast_bwd(%s, %d, %s, %s);\n", c->DX[k],
                  c->A[k], c->DY, mul ? c->I[1 - k] : "NONE");
}

const OpDef opdef_ADD = {
    "add(a, b)", {ARG_TENSOR("a"), ARG_TENSOR("b")},
    binary_lower, per_element, NULL, NULL,
    binary_cpu_fwd, binary_cpu_bwd, NULL, add_cuda_fwd, binary_cuda_bwd,
};

const OpDef opdef_MUL = {
    "mul(a, b)", {ARG_TENSOR("a"), ARG_TENSOR("b")},
    binary_lower, per_element, NULL, NULL,
    binary_cpu_fwd, binary_cpu_bwd, NULL, mul_cuda_fwd, binary_cuda_bwd,
};

/* ---- scale: x * c ---------------------------------------------------------------------------- */

int lower_scale(const Call *c, int x, double k, const char *local) {
  int n = call_node(c, OP_SCALE, local, &x, 1);
  c->g->nodes[n].a.scale.c = k;
  return call_out1(c, n, DT_F32, &c->g->vals[x].shape);
}

static int scale_lower(const Call *c) {
  return lower_scale(c, c->A->v[0].v, ev_num(c->A->v[1]), c->base);
}

static void scale_attrs(const Node *n, FILE *f) {
  fprintf(f, " c=%g", n->a.scale.c);
}

static void scale_cpu_fwd(CpuOp *c) {
  int64_t nx = op_numel(c->g, c->n->in[0]);
  float k = (float)c->n->a.scale.c;
  for (int64_t i = 0; i < nx; i++) c->y[0][i] = c->x[0][i] * k;
}

static void scale_cpu_bwd(CpuOp *c) {
  int64_t nx = op_numel(c->g, c->n->in[0]);
  float k = (float)c->n->a.scale.c;
  if (c->dx[0])
    for (int64_t i = 0; i < nx; i++) c->dx[0][i] = c->dy[0][i] * k;
}

static void scale_cuda_fwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_unary_fwd(%s, %s, %s, %.17g);\n",
              op_info[OP_SCALE].rt, c->Y[0], c->X[0], c->n->a.scale.c);
}

static void scale_cuda_bwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_unary_bwd(%s, %s, %d, %s, NONE, %.17g);\n",
              op_info[OP_SCALE].rt, c->DX[0], c->A[0], c->DY,
              c->n->a.scale.c);
}

const OpDef opdef_SCALE = {
    "scale(x, c)", {ARG_TENSOR("x"), {"c", A_F, true, 0, 0, 0}},
    scale_lower, per_element, scale_attrs, NULL,
    scale_cpu_fwd, scale_cpu_bwd, NULL, scale_cuda_fwd, scale_cuda_bwd,
};

/* ---- cast: made by passes/precision.c, never written ------------------------------------- */

static void cast_attrs(const Node *n, FILE *f) {
  fprintf(f, " to=%s", dtype_name(n->a.cast.to));
}

/* A copy: the executor rounds to the stored dtype. */
static void copy_cpu_fwd(CpuOp *c) {
  memcpy(c->y[0], c->x[0],
         (size_t)op_numel(c->g, c->n->in[0]) * sizeof *c->x[0]);
}

static void copy_cpu_bwd(CpuOp *c) {
  if (c->dx[0])
    memcpy(c->dx[0], c->dy[0],
           (size_t)op_numel(c->g, c->n->in[0]) * sizeof *c->dx[0]);
}

static void cast_cuda_fwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_copy(%s, %s, 0);\n", c->Y[0], c->X[0]);
}

static void cast_cuda_bwd(EmitOp *c) {
  emit_printf(c, "  mdlrt_copy(%s, %s, %d);\n", c->DX[0], c->DY, c->A[0]);
}

const OpDef opdef_CAST = {
    "", {{0}},
    NULL, flops_none, cast_attrs, NULL,
    copy_cpu_fwd, copy_cpu_bwd, NULL, cast_cuda_fwd, cast_cuda_bwd,
};
