/* ir/ops.c: the operator table and per-op FLOP counts.
 *
 * op_info is generated from ir/ops.def, so the enum, the names, the save
 * rules and the precision classes cannot drift apart. op_flops counts the
 * forward floating-point operations of one node from the shapes the
 * frontend inferred; a multiply-add counts as 2. Data movement (views,
 * transpose, concat, gathers, casts) counts 0: it costs bandwidth, not
 * arithmetic. These numbers price recomputation (checkpoint placement) and
 * are reported as "extra work"; they are estimates of the usual textbook
 * kind, stated per op below so that a reader can check them.
 */
#include "mdlc.h"

const OpInfo op_info[OP_COUNT] = {
#define X(e, name, save, cls) [OP_##e] = {name, save, cls},
#include "ir/ops.def"
#undef X
};

static int64_t numel_of(const Graph *g, int v) {
  int64_t n;
  return shape_numel(&g->vals[v].shape, &n) ? n : INT64_MAX;
}

/* a * b, saturating at INT64_MAX (FLOPs are estimates, never a crash). */
static int64_t smul(int64_t a, int64_t b) {
  int64_t r;
  return mul_ok(a, b, &r) ? r : INT64_MAX;
}

static int64_t sadd(int64_t a, int64_t b) {
  int64_t r;
  return add_ok(a, b, &r) ? r : INT64_MAX;
}

/* FLOPs of one forward run of node n. Per op (N = elements of output 0,
 * I = elements of input 0):
 *   linear       2 * rows * in * out, plus rows * out for the bias
 *   matmul       2 * N * k          (each output element is a k-long dot)
 *   conv2d       2 * N * (C/groups) * k * k, plus N for the bias
 *   max/avgpool  N * k * k          (one compare or add per window element)
 *   global_avgpool  I
 *   batchnorm, layernorm, instancenorm, groupnorm
 *                8 * I  (mean 1, variance 3, normalize 2, affine 2)
 *   relu tanh sigmoid gelu silu dropout add mul scale
 *                N      (one per element; transcendentals count as 1)
 *   softmax      5 * N  (max, subtract, exp, sum, divide)
 *   cross_entropy  5 * I + rows  (log-softmax over the logits, then pick)
 *   mse          3 * I  (subtract, square, sum)
 *   embedding reshape transpose concat split cast
 *                0      (data movement only)
 */
int64_t op_flops(const Graph *g, int n) {
  const Node *nd = &g->nodes[n];
  int64_t N = nd->nout > 0 ? numel_of(g, nd->out[0]) : 0;
  int64_t I = nd->nin > 0 ? numel_of(g, nd->in[0]) : 0;
  const Shape *x = nd->nin > 0 ? &g->vals[nd->in[0]].shape : NULL;
  switch (nd->op) {
  case OP_LINEAR: {
    int64_t in = x->rank ? x->dim[x->rank - 1] : 1;
    int64_t f = smul(2, smul(N, in));
    return nd->a.linear.bias ? sadd(f, N) : f;
  }
  case OP_MATMUL: {
    int64_t k = x->rank < 2 ? 1
                : nd->a.matmul.ta ? x->dim[x->rank - 2]
                                  : x->dim[x->rank - 1];
    return smul(2, smul(N, k));
  }
  case OP_CONV2D: {
    int64_t cin = x->rank == 4 ? x->dim[1] : 1;
    int64_t k = nd->a.conv.kernel;
    int64_t gr = nd->a.conv.groups ? nd->a.conv.groups : 1;
    int64_t f = smul(2, smul(N, smul(cin / gr, smul(k, k))));
    return nd->a.conv.bias ? sadd(f, N) : f;
  }
  case OP_MAXPOOL2D:
  case OP_AVGPOOL2D:
    return smul(N, smul(nd->a.pool.kernel, nd->a.pool.kernel));
  case OP_GLOBAL_AVGPOOL:
    return I;
  case OP_BATCHNORM:
  case OP_LAYERNORM:
  case OP_INSTANCENORM:
  case OP_GROUPNORM:
    return smul(8, I);
  case OP_RELU:
  case OP_GELU:
  case OP_SILU:
  case OP_TANH:
  case OP_SIGMOID:
  case OP_DROPOUT:
  case OP_ADD:
  case OP_MUL:
  case OP_SCALE:
    return N;
  case OP_SOFTMAX:
    return smul(5, N);
  case OP_CROSS_ENTROPY: {
    int64_t c = x->rank ? x->dim[x->rank - 1] : 1;
    return sadd(smul(5, I), c ? I / c : 0);
  }
  case OP_MSE:
    return smul(3, I);
  case OP_EMBEDDING:
  case OP_RESHAPE:
  case OP_TRANSPOSE:
  case OP_CONCAT:
  case OP_SPLIT:
  case OP_CAST:
    return 0;
  case OP_COUNT:
    break;
  }
  ICE("op_flops: bad op %d", (int)nd->op);
}
