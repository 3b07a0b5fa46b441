/* ir/ops.c: the operator table, the hook table, and what ties them down.
 *
 * op_info and op_def are generated from ir/ops.def, so the enum, the names,
 * the constants and the hooks cannot drift apart: a row whose family file
 * defines no opdef_ENUM fails to link. The _Static_asserts tie mdlc's
 * DType to the runtime's dtype codes (emitted code passes them as
 * numbers) and every table to OP_COUNT. FLOPs (op_flops) are estimates of
 * the usual textbook kind, stated per op in its family's file; they price
 * recomputation (checkpoint placement) and are reported as "extra work".
 */
#include "mdlc.h"
#include "runtime/mdlrt.h"

const OpInfo op_info[OP_COUNT] = {
#define X(e, name, nin, nparam, nextra, flags, save, cls, rt)               \
  [OP_##e] = {name, nin, nparam, nextra, flags, save, cls, rt},
#include "ir/ops.def"
#undef X
};

const OpDef *const op_def[OP_COUNT] = {
#define X(e, name, nin, nparam, nextra, flags, save, cls, rt)               \
  [OP_##e] = &opdef_##e,
#include "ir/ops.def"
#undef X
};

_Static_assert(sizeof op_info / sizeof op_info[0] == OP_COUNT,
               "op_info covers every op");
_Static_assert(sizeof op_def / sizeof op_def[0] == OP_COUNT,
               "op_def covers every op");
_Static_assert((int)DT_F32 == (int)MDLRT_F32 &&
                   (int)DT_F16 == (int)MDLRT_F16 &&
                   (int)DT_BF16 == (int)MDLRT_BF16 &&
                   (int)DT_I32 == (int)MDLRT_I32 &&
                   (int)DT_I64 == (int)MDLRT_I64 &&
                   (int)DT_U8 == (int)MDLRT_U8 && DT_COUNT == 6,
               "mdlc's DType and the runtime's dtype codes agree");
_Static_assert((int)MAX_RANK == (int)MDLRT_MAX_RANK, "one rank limit");

int64_t op_numel(const Graph *g, int v) {
  int64_t n;
  return shape_numel(&g->vals[v].shape, &n) ? n : INT64_MAX;
}

int64_t flops_mul(int64_t a, int64_t b) {
  int64_t r;
  return mul_ok(a, b, &r) ? r : INT64_MAX;
}

int64_t flops_add(int64_t a, int64_t b) {
  int64_t r;
  return add_ok(a, b, &r) ? r : INT64_MAX;
}

int64_t flops_none(const Graph *g, const Node *n) {
  (void)g, (void)n;
  return 0;
}

bool op_saves_input(const Node *n, int k) {
  return k < 8 && (op_info[n->op].save & SV_IN(k));
}

bool op_saves_output(const Graph *g, const Node *n, int o) {
  int sv = op_info[n->op].save;
  if (g->vals[n->out[o]].is_extra) return sv & SV_EXTRA;
  return o == 0 && (sv & SV_OUT);
}

int64_t op_flops(const Graph *g, int n) {
  const Node *nd = &g->nodes[n];
  ASSERT(nd->op >= 0 && nd->op < OP_COUNT);
  return op_def[nd->op]->flops(g, nd);
}
