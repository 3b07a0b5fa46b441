/* backend/cpu/reduce.c: the reference of mean and sum over one axis
 * (ops/reduce.c): x viewed as [outer, n, inner], summed in double. */
#include <stdlib.h>

#include "mdlc.h"

static void axis_geom(const Shape *s, int axis, int64_t *outer, int64_t *n,
                      int64_t *inner) {
  *outer = *inner = 1;
  for (int d = 0; d < axis; d++) *outer *= s->dim[d];
  for (int d = axis + 1; d < s->rank; d++) *inner *= s->dim[d];
  *n = s->dim[axis];
}

void cpu_reduce_fwd(bool mean, const Shape *sx, int axis, const float *x,
                    float *y) {
  int64_t outer, n, inner;
  axis_geom(sx, axis, &outer, &n, &inner);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      double s = 0;
      for (int64_t j = 0; j < n; j++) s += x[(o * n + j) * inner + i];
      y[o * inner + i] = (float)(mean ? s / (double)n : s);
    }
}

void cpu_reduce_bwd(bool mean, const Shape *sx, int axis, const float *dy,
                    float *dx) {
  int64_t outer, n, inner;
  axis_geom(sx, axis, &outer, &n, &inner);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < n; j++)
      for (int64_t i = 0; i < inner; i++) {
        double g = dy[o * inner + i];
        dx[(o * n + j) * inner + i] = (float)(mean ? g / (double)n : g);
      }
}
