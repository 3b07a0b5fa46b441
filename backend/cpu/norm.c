/* backend/cpu/norm.c: the reference of the normalisations (ops/norm.c):
 * one routine over x viewed as [n, c, s], per channel or per group. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mdlc.h"

/* ---- normalisation ---------------------------------------------------- */

int64_t cpu_norm_nstats(const CpuNorm *p) {
  return p->kind == CPU_NORM_BATCH ? p->c : p->n * p->groups;
}

/* Statistic set of element (ni, ci). */
static int64_t norm_stat(const CpuNorm *p, int64_t ni, int64_t ci) {
  if (p->kind == CPU_NORM_BATCH) return ci;
  return ni * p->groups + ci / (p->c / p->groups);
}

void cpu_norm_fwd(const CpuNorm *p, const float *x, const float *w,
                  const float *b, float *y, float *mean, float *rstd,
                  float *run_mean, float *run_var, bool use_running) {
  int64_t ns = cpu_norm_nstats(p), total = p->n * p->c * p->s;
  int64_t cnt = total / ns;  /* M: elements per statistic set */
  float *mu = malloc((size_t)ns * sizeof *mu);
  float *rs = malloc((size_t)ns * sizeof *rs);
  if (!mu || !rs) {
    fprintf(stderr, "mdlc: out of host memory\n");
    exit(3);
  }
  if (use_running) {
    for (int64_t q = 0; q < ns; q++) {
      mu[q] = run_mean[q];
      rs[q] = (float)(1.0 / sqrt((double)run_var[q] + p->eps));
    }
  } else {
    double *sum = cpu_dzalloc(ns), *sq = cpu_dzalloc(ns);
    for (int64_t e = 0; e < total; e++) {
      int64_t ni = e / (p->c * p->s), ci = (e / p->s) % p->c;
      sum[norm_stat(p, ni, ci)] += x[e];
    }
    for (int64_t q = 0; q < ns; q++) sum[q] /= (double)cnt;
    for (int64_t e = 0; e < total; e++) {
      int64_t ni = e / (p->c * p->s), ci = (e / p->s) % p->c;
      int64_t q = norm_stat(p, ni, ci);
      double d = x[e] - sum[q];
      sq[q] += d * d;
    }
    for (int64_t q = 0; q < ns; q++) {
      double var = sq[q] / (double)cnt;
      mu[q] = (float)sum[q];
      rs[q] = (float)(1.0 / sqrt(var + p->eps));
      if (run_mean) {
        double unb = cnt > 1 ? var * (double)cnt / (double)(cnt - 1) : var;
        run_mean[q] = 0.9f * run_mean[q] + 0.1f * mu[q];
        run_var[q] = 0.9f * run_var[q] + 0.1f * (float)unb;
      }
    }
    free(sum);
    free(sq);
  }
  for (int64_t e = 0; e < total; e++) {
    int64_t ni = e / (p->c * p->s), ci = (e / p->s) % p->c;
    int64_t q = norm_stat(p, ni, ci);
    float xh = (x[e] - mu[q]) * rs[q];
    y[e] = xh * (w ? w[ci] : 1.0f) + (b ? b[ci] : 0.0f);
  }
  if (mean) memcpy(mean, mu, (size_t)ns * sizeof *mu);
  if (rstd) memcpy(rstd, rs, (size_t)ns * sizeof *rs);
  free(mu);
  free(rs);
}

void cpu_norm_bwd(const CpuNorm *p, const float *x, const float *w,
                  const float *mean, const float *rstd, const float *dy,
                  float *dx, float *dw, float *db) {
  int64_t ns = cpu_norm_nstats(p), total = p->n * p->c * p->s;
  double cnt = (double)(total / ns);
  double *sg = cpu_dzalloc(ns), *sgx = cpu_dzalloc(ns);
  double *gw = cpu_dzalloc(p->c), *gb = cpu_dzalloc(p->c);
  for (int64_t e = 0; e < total; e++) {
    int64_t ni = e / (p->c * p->s), ci = (e / p->s) % p->c;
    int64_t q = norm_stat(p, ni, ci);
    double xh = ((double)x[e] - mean[q]) * rstd[q];
    double g = (double)dy[e] * (w ? w[ci] : 1.0f);
    sg[q] += g;
    sgx[q] += g * xh;
    gw[ci] += (double)dy[e] * xh;
    gb[ci] += dy[e];
  }
  if (dx)
    for (int64_t e = 0; e < total; e++) {
      int64_t ni = e / (p->c * p->s), ci = (e / p->s) % p->c;
      int64_t q = norm_stat(p, ni, ci);
      double xh = ((double)x[e] - mean[q]) * rstd[q];
      double g = (double)dy[e] * (w ? w[ci] : 1.0f);
      dx[e] = (float)(rstd[q] * (g - sg[q] / cnt - xh * sgx[q] / cnt));
    }
  cpu_dstore(dw, gw, p->c);
  cpu_dstore(db, gb, p->c);
  free(sg);
  free(sgx);
  free(gw);
  free(gb);
}

/* rmsnorm over rows of D: y = x * r * w, r = 1 / sqrt(mean(x^2) + eps). */
void cpu_rmsnorm_fwd(const float *x, const float *w, float *y, float *rstd,
                     int64_t rows, int64_t D, float eps) {
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * D;
    double ss = 0;
    for (int64_t j = 0; j < D; j++) ss += (double)xr[j] * xr[j];
    double inv = 1.0 / sqrt(ss / (double)D + (double)eps);
    if (rstd) rstd[r] = (float)inv;
    for (int64_t j = 0; j < D; j++)
      y[r * D + j] = (float)((double)xr[j] * inv * (double)w[j]);
  }
}

/* dx = r (w dy) - x r^3 / D * sum(w dy x); dw = sum over rows of dy x r. */
void cpu_rmsnorm_bwd(const float *x, const float *w, const float *rstd,
                     const float *dy, float *dx, float *dw, int64_t rows,
                     int64_t D) {
  double *acc = dw ? cpu_dzalloc(D) : NULL;
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * D, *gr = dy + r * D;
    double inv = rstd[r], dot = 0;
    for (int64_t j = 0; j < D; j++) dot += (double)w[j] * gr[j] * xr[j];
    for (int64_t j = 0; j < D; j++) {
      if (dx)
        dx[r * D + j] = (float)(inv * w[j] * gr[j] -
                                (double)xr[j] * inv * inv * inv * dot /
                                    (double)D);
      if (acc) acc[j] += (double)gr[j] * xr[j] * inv;
    }
  }
  if (acc) cpu_dstore(dw, acc, D);
  free(acc);
}
