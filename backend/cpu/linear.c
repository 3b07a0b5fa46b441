/* backend/cpu/linear.c: the reference of linear and matmul (ops/linear.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mdlc.h"

/* ---- linear ----------------------------------------------------------- */

void cpu_linear_fwd(const float *x, const float *w, const float *b, float *y,
                    int64_t m, int64_t k, int64_t n) {
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double acc = b ? b[j] : 0.0;
      for (int64_t t = 0; t < k; t++)
        acc += (double)x[i * k + t] * w[j * k + t];
      y[i * n + j] = (float)acc;
    }
}

void cpu_linear_bwd(const float *x, const float *w, const float *dy,
                    float *dx, float *dw, float *db, int64_t m, int64_t k,
                    int64_t n) {
  if (dx)
    for (int64_t i = 0; i < m; i++)
      for (int64_t t = 0; t < k; t++) {
        double acc = 0;
        for (int64_t j = 0; j < n; j++)
          acc += (double)dy[i * n + j] * w[j * k + t];
        dx[i * k + t] = (float)acc;
      }
  if (dw)
    for (int64_t j = 0; j < n; j++)
      for (int64_t t = 0; t < k; t++) {
        double acc = 0;
        for (int64_t i = 0; i < m; i++)
          acc += (double)dy[i * n + j] * x[i * k + t];
        dw[j * k + t] = (float)acc;
      }
  if (db)
    for (int64_t j = 0; j < n; j++) {
      double acc = 0;
      for (int64_t i = 0; i < m; i++) acc += dy[i * n + j];
      db[j] = (float)acc;
    }
}

/* ---- matmul ----------------------------------------------------------- */

/* The batch part (all but the last two dims) of a shape. */
static Shape batch_of(const Shape *s) {
  Shape b = *s;
  b.rank = s->rank - 2;
  return b;
}

typedef struct {
  int64_t m, k, n;        /* op(a) is [m, k], op(b) is [k, n] */
  int64_t nbatch;         /* output batch elements */
  Shape by;               /* output batch shape */
  int64_t sta[MAX_RANK], stb[MAX_RANK]; /* batch strides, in matrices */
} MatGeom;

static MatGeom mat_geom(const Shape *sa, bool ta, const Shape *sb, bool tb,
                        const Shape *sy) {
  MatGeom g;
  g.m = sa->dim[sa->rank - (ta ? 1 : 2)];
  g.k = sa->dim[sa->rank - (ta ? 2 : 1)];
  g.n = sb->dim[sb->rank - (tb ? 2 : 1)];
  Shape ba = batch_of(sa), bb = batch_of(sb);
  g.by = batch_of(sy);
  g.nbatch = cpu_numel(&g.by);
  cpu_bcast_strides(&ba, &g.by, g.sta);
  cpu_bcast_strides(&bb, &g.by, g.stb);
  return g;
}

/* Storage index of op(a)[i, t] within one matrix, and of op(b)[t, j]. */
#define A_AT(i, t) (ta ? (t) * G.m + (i) : (i) * G.k + (t))
#define B_AT(t, j) (tb ? (j) * G.k + (t) : (t) * G.n + (j))

void cpu_matmul_fwd(const Shape *sa, const float *a, bool ta, const Shape *sb,
                    const float *b, bool tb, const Shape *sy, float *y) {
  MatGeom G = mat_geom(sa, ta, sb, tb, sy);
  for (int64_t q = 0; q < G.nbatch; q++) {
    const float *A = a + cpu_offset_of(&G.by, G.sta, q) * G.m * G.k;
    const float *B = b + cpu_offset_of(&G.by, G.stb, q) * G.k * G.n;
    float *Y = y + q * G.m * G.n;
    for (int64_t i = 0; i < G.m; i++)
      for (int64_t j = 0; j < G.n; j++) {
        double acc = 0;
        for (int64_t t = 0; t < G.k; t++)
          acc += (double)A[A_AT(i, t)] * B[B_AT(t, j)];
        Y[i * G.n + j] = (float)acc;
      }
  }
}

void cpu_matmul_bwd(const Shape *sa, const float *a, bool ta, const Shape *sb,
                    const float *b, bool tb, const Shape *sy, const float *dy,
                    float *da, float *db) {
  MatGeom G = mat_geom(sa, ta, sb, tb, sy);
  int64_t na = cpu_numel(sa), nb = cpu_numel(sb);
  double *ga = da ? cpu_dzalloc(na) : NULL, *gb = db ? cpu_dzalloc(nb) : NULL;
  for (int64_t q = 0; q < G.nbatch; q++) {
    int64_t oa = cpu_offset_of(&G.by, G.sta, q) * G.m * G.k;
    int64_t ob = cpu_offset_of(&G.by, G.stb, q) * G.k * G.n;
    const float *A = a + oa, *B = b + ob, *DY = dy + q * G.m * G.n;
    if (ga)  /* d op(a)[i, t] = sum_j dy[i, j] op(b)[t, j] */
      for (int64_t i = 0; i < G.m; i++)
        for (int64_t t = 0; t < G.k; t++) {
          double acc = 0;
          for (int64_t j = 0; j < G.n; j++)
            acc += (double)DY[i * G.n + j] * B[B_AT(t, j)];
          ga[oa + A_AT(i, t)] += acc;
        }
    if (gb)  /* d op(b)[t, j] = sum_i op(a)[i, t] dy[i, j] */
      for (int64_t t = 0; t < G.k; t++)
        for (int64_t j = 0; j < G.n; j++) {
          double acc = 0;
          for (int64_t i = 0; i < G.m; i++)
            acc += (double)A[A_AT(i, t)] * DY[i * G.n + j];
          gb[ob + B_AT(t, j)] += acc;
        }
  }
  cpu_dstore(da, ga, na);
  cpu_dstore(db, gb, nb);
  free(ga);
  free(gb);
}

#undef A_AT
#undef B_AT
