/* backend/cpu/softmax.c: the reference of softmax (ops/softmax.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mdlc.h"

/* ---- softmax ---------------------------------------------------------- */

void cpu_softmax_fwd(const float *x, float *y, int64_t rows, int64_t cols,
                     bool causal, int64_t srows) {
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * cols;
    float *yr = y + r * cols;
    int64_t lim = causal ? (r % srows) + 1 : cols;  /* unmasked columns */
    if (lim > cols) lim = cols;
    double m = -INFINITY, sum = 0;
    for (int64_t c = 0; c < lim; c++)
      if (xr[c] > m) m = xr[c];
    for (int64_t c = 0; c < lim; c++) sum += exp((double)xr[c] - m);
    for (int64_t c = 0; c < cols; c++)
      yr[c] = c < lim ? (float)(exp((double)xr[c] - m) / sum) : 0.0f;
  }
}

void cpu_softmax_bwd(const float *y, const float *dy, float *dx,
                     int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; r++) {
    const float *yr = y + r * cols, *gr = dy + r * cols;
    double dot = 0;
    for (int64_t c = 0; c < cols; c++) dot += (double)gr[c] * yr[c];
    for (int64_t c = 0; c < cols; c++)
      dx[r * cols + c] = (float)(yr[c] * ((double)gr[c] - dot));
  }
}
