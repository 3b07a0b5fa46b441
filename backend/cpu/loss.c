/* backend/cpu/loss.c: the reference of the losses (ops/loss.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mdlc.h"

/* ---- losses ----------------------------------------------------------- */

int64_t cpu_xent_fwd(const float *x, const int64_t *t, int64_t rows,
                     int64_t c, float *logprobs, float *loss) {
  double total = 0;
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * c;
    if (t[r] < 0 || t[r] >= c) return r;
    double m = -INFINITY, sum = 0;
    for (int64_t k = 0; k < c; k++)
      if (xr[k] > m) m = xr[k];
    for (int64_t k = 0; k < c; k++) sum += exp((double)xr[k] - m);
    double lse = m + log(sum);
    for (int64_t k = 0; k < c; k++) {
      float lp = (float)((double)xr[k] - lse);
      if (logprobs) logprobs[r * c + k] = lp;
      if (k == t[r]) total += lp;
    }
  }
  *loss = (float)(-total / (double)rows);
  return -1;
}

void cpu_xent_bwd(const float *logprobs, const int64_t *t, int64_t rows,
                  int64_t c, float dloss, float *dx) {
  double s = (double)dloss / (double)rows;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t k = 0; k < c; k++)
      dx[r * c + k] =
          (float)(s * (exp((double)logprobs[r * c + k]) - (k == t[r])));
}

void cpu_mse_fwd(const float *a, const float *b, int64_t n, float *loss) {
  double acc = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = (double)a[i] - b[i];
    acc += d * d;
  }
  *loss = (float)(acc / (double)n);
}

void cpu_mse_bwd(const float *a, const float *b, int64_t n, float dloss,
                 float *da, float *db) {
  for (int64_t i = 0; i < n; i++) {
    float g = (float)((double)dloss * 2.0 * ((double)a[i] - b[i]) / n);
    if (da) da[i] = g;
    if (db) db[i] = -g;
  }
}
