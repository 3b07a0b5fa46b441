/* backend/cpu/pool.c: the reference of the pooling ops (ops/pool.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mdlc.h"

/* ---- pooling ---------------------------------------------------------- */

void cpu_pool_out(CpuPool *p) {
  p->oh = (p->h + 2 * p->pad - p->k) / p->stride + 1;
  p->ow = (p->w + 2 * p->pad - p->k) / p->stride + 1;
}

void cpu_maxpool_fwd(const CpuPool *p, const float *x, float *y) {
  for (int64_t q = 0; q < p->nc; q++)
    for (int64_t i = 0; i < p->oh; i++)
      for (int64_t j = 0; j < p->ow; j++) {
        float m = -INFINITY;  /* the padding */
        for (int64_t u = 0; u < p->k; u++)
          for (int64_t v = 0; v < p->k; v++) {
            int64_t h = i * p->stride - p->pad + u;
            int64_t w = j * p->stride - p->pad + v;
            if (h < 0 || h >= p->h || w < 0 || w >= p->w) continue;
            float t = x[(q * p->h + h) * p->w + w];
            if (t > m) m = t;
          }
        y[(q * p->oh + i) * p->ow + j] = m;
      }
}

void cpu_maxpool_bwd(const CpuPool *p, const float *x, const float *y,
                     const float *dy, float *dx) {
  int64_t nx = p->nc * p->h * p->w;
  double *gx = cpu_dzalloc(nx);
  for (int64_t q = 0; q < p->nc; q++)
    for (int64_t i = 0; i < p->oh; i++)
      for (int64_t j = 0; j < p->ow; j++) {
        int64_t yi = (q * p->oh + i) * p->ow + j;
        for (int64_t u = 0; u < p->k; u++)
          for (int64_t v = 0; v < p->k; v++) {
            int64_t h = i * p->stride - p->pad + u;
            int64_t w = j * p->stride - p->pad + v;
            if (h < 0 || h >= p->h || w < 0 || w >= p->w) continue;
            int64_t xi = (q * p->h + h) * p->w + w;
            if (x[xi] == y[yi]) {  /* the first maximum takes it all */
              gx[xi] += dy[yi];
              goto next;
            }
          }
      next:;
      }
  cpu_dstore(dx, gx, nx);
  free(gx);
}

void cpu_avgpool_fwd(const CpuPool *p, const float *x, float *y) {
  for (int64_t q = 0; q < p->nc; q++)
    for (int64_t i = 0; i < p->oh; i++)
      for (int64_t j = 0; j < p->ow; j++) {
        double acc = 0;
        for (int64_t u = 0; u < p->k; u++)
          for (int64_t v = 0; v < p->k; v++) {
            int64_t h = i * p->stride - p->pad + u;
            int64_t w = j * p->stride - p->pad + v;
            if (h < 0 || h >= p->h || w < 0 || w >= p->w) continue;
            acc += x[(q * p->h + h) * p->w + w];
          }
        y[(q * p->oh + i) * p->ow + j] = (float)(acc / (double)(p->k * p->k));
      }
}

void cpu_avgpool_bwd(const CpuPool *p, const float *dy, float *dx) {
  int64_t nx = p->nc * p->h * p->w;
  double *gx = cpu_dzalloc(nx);
  for (int64_t q = 0; q < p->nc; q++)
    for (int64_t i = 0; i < p->oh; i++)
      for (int64_t j = 0; j < p->ow; j++) {
        double g = dy[(q * p->oh + i) * p->ow + j] / (double)(p->k * p->k);
        for (int64_t u = 0; u < p->k; u++)
          for (int64_t v = 0; v < p->k; v++) {
            int64_t h = i * p->stride - p->pad + u;
            int64_t w = j * p->stride - p->pad + v;
            if (h < 0 || h >= p->h || w < 0 || w >= p->w) continue;
            gx[(q * p->h + h) * p->w + w] += g;
          }
      }
  cpu_dstore(dx, gx, nx);
  free(gx);
}

void cpu_gap_fwd(const float *x, float *y, int64_t nc, int64_t hw) {
  for (int64_t q = 0; q < nc; q++) {
    double acc = 0;
    for (int64_t i = 0; i < hw; i++) acc += x[q * hw + i];
    y[q] = (float)(acc / (double)hw);
  }
}

void cpu_gap_bwd(const float *dy, float *dx, int64_t nc, int64_t hw) {
  for (int64_t q = 0; q < nc; q++)
    for (int64_t i = 0; i < hw; i++)
      dx[q * hw + i] = (float)((double)dy[q] / (double)hw);
}
