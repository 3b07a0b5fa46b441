/* ir/types.c: element types and shapes.
 *
 * Shapes hold 64-bit extents; every product that could overflow is checked,
 * so a model with 2^70 elements is an error, never a wrapped number.
 */
#include "mdlc.h"

#include <string.h>

static const struct {
  const char *name; /* spelling in .mdl */
  int size;         /* bytes */
  bool is_float;    /* takes gradients */
} dtypes[DT_COUNT] = {
    [DT_F32] = {"f32", 4, true},   [DT_F16] = {"f16", 2, true},
    [DT_BF16] = {"bf16", 2, true}, [DT_I32] = {"i32", 4, false},
    [DT_I64] = {"i64", 8, false},  [DT_U8] = {"u8", 1, false},
};

int dtype_size(DType t) { return dtypes[t].size; }
const char *dtype_name(DType t) { return dtypes[t].name; }
bool dtype_is_float(DType t) { return dtypes[t].is_float; }

bool dtype_parse(const char *s, DType *out) {
  for (int t = 0; t < DT_COUNT; t++)
    if (strcmp(s, dtypes[t].name) == 0) {
      *out = (DType)t;
      return true;
    }
  return false;
}

bool shape_numel(const Shape *s, int64_t *out) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++)
    if (!mul_ok(n, s->dim[i], &n)) return false;
  *out = n;
  return true;
}

int64_t shape_numel_ok(const Shape *s) {
  int64_t n;
  if (!shape_numel(s, &n)) ICE("element count overflow past the frontend");
  return n;
}

bool shape_eq(const Shape *a, const Shape *b) {
  if (a->rank != b->rank) return false;
  for (int i = 0; i < a->rank; i++)
    if (a->dim[i] != b->dim[i]) return false;
  return true;
}

const char *shape_str(const Shape *s, char *buf) {
  size_t n = 0;
  buf[n++] = '[';
  for (int i = 0; i < s->rank; i++)
    n += (size_t)snprintf(buf + n, 160 - n, "%s%lld", i ? ", " : "",
                          (long long)s->dim[i]);
  snprintf(buf + n, 160 - n, "]");
  return buf;
}

/* NumPy: align trailing dims; each pair equal, or one of them 1. */
bool shape_broadcast(const Shape *a, const Shape *b, Shape *out) {
  int r = a->rank > b->rank ? a->rank : b->rank;
  Shape o = {.rank = r};
  for (int i = 0; i < r; i++) {
    int ia = a->rank - r + i, ib = b->rank - r + i;
    int64_t da = ia >= 0 ? a->dim[ia] : 1, db = ib >= 0 ? b->dim[ib] : 1;
    if (da != db && da != 1 && db != 1) return false;
    o.dim[i] = da == 1 ? db : da;
  }
  *out = o;
  return true;
}
