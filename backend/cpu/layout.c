/* backend/cpu/layout.c: the reference of the data-movement ops
 * (ops/layout.c): embedding's gather, transpose, concat. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mdlc.h"

/* ---- embedding -------------------------------------------------------- */

int64_t cpu_embedding_fwd(const int64_t *ids, int64_t n, const float *w,
                          int64_t vocab, int64_t dim, float *y) {
  for (int64_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= vocab) return i;
    memcpy(y + i * dim, w + ids[i] * dim, (size_t)dim * sizeof *y);
  }
  return -1;
}

void cpu_embedding_bwd(const int64_t *ids, int64_t n, const float *dy,
                       int64_t vocab, int64_t dim, float *dw) {
  double *g = cpu_dzalloc(vocab * dim);
  for (int64_t i = 0; i < n; i++)
    for (int64_t d = 0; d < dim; d++) g[ids[i] * dim + d] += dy[i * dim + d];
  cpu_dstore(dw, g, vocab * dim);
  free(g);
}

/* ---- shape ops -------------------------------------------------------- */

void cpu_transpose(const Shape *sx, int a, int b, const float *x, float *y) {
  Shape sy = *sx;
  sy.dim[a] = sx->dim[b];
  sy.dim[b] = sx->dim[a];
  int64_t cst[MAX_RANK], st[MAX_RANK], acc = 1;
  for (int d = sx->rank - 1; d >= 0; d--) {
    cst[d] = acc;
    acc *= sx->dim[d];
  }
  /* y's index (.., i_a, .., i_b, ..) reads x at (.., i_b, .., i_a, ..) */
  memcpy(st, cst, sizeof st);
  st[a] = cst[b];
  st[b] = cst[a];
  int64_t n = cpu_numel(sx);
  for (int64_t j = 0; j < n; j++) y[j] = x[cpu_offset_of(&sy, st, j)];
}

/* outer = product of dims before axis, inner = after it. */
static void axis_split(const Shape *s, int axis, int64_t *outer,
                       int64_t *inner) {
  *outer = *inner = 1;
  for (int d = 0; d < axis; d++) *outer *= s->dim[d];
  for (int d = axis + 1; d < s->rank; d++) *inner *= s->dim[d];
}

void cpu_concat(int n, const Shape *sx, const float *const *x, int axis,
                float *y) {
  int64_t outer, inner, total = 0;
  axis_split(&sx[0], axis, &outer, &inner);
  for (int i = 0; i < n; i++) total += sx[i].dim[axis];
  for (int64_t o = 0; o < outer; o++) {
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
      int64_t len = sx[i].dim[axis] * inner;
      memcpy(y + (o * total + at) * inner, x[i] + o * len,
             (size_t)len * sizeof *y);
      at += sx[i].dim[axis];
    }
  }
}

void cpu_unconcat(int n, const Shape *sx, const float *y, int axis,
                  float *const *x) {
  int64_t outer, inner, total = 0;
  axis_split(&sx[0], axis, &outer, &inner);
  for (int i = 0; i < n; i++) total += sx[i].dim[axis];
  for (int64_t o = 0; o < outer; o++) {
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
      int64_t len = sx[i].dim[axis] * inner;
      if (x[i])
        memcpy(x[i] + o * len, y + (o * total + at) * inner,
               (size_t)len * sizeof *y);
      at += sx[i].dim[axis];
    }
  }
}
