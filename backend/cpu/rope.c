/* backend/cpu/rope.c: the reference of rope (ops/attention.c): the
 * "rotate half" rotary embedding, angles in double. */
#include <math.h>

#include "mdlc.h"

/* x [..., S, Dh] -> y: pair (i, i + Dh/2) at position p turns by
 * p * base^(-2i/Dh); inverse turns it back (the backward of dy). */
void cpu_rope(const Shape *s, const float *x, float *y, double base,
              bool inverse) {
  int64_t Dh = s->dim[s->rank - 1], S = s->dim[s->rank - 2], h = Dh / 2;
  int64_t rows = cpu_numel(s) / Dh;
  for (int64_t r = 0; r < rows; r++) {
    double pos = (double)(r % S);
    const float *xr = x + r * Dh;
    float *yr = y + r * Dh;
    for (int64_t i = 0; i < h; i++) {
      double a = pos * pow(base, -2.0 * (double)i / (double)Dh);
      double cs = cos(a), sn = inverse ? -sin(a) : sin(a);
      double u = xr[i], w = xr[i + h];
      yr[i] = (float)(u * cs - w * sn);
      yr[i + h] = (float)(w * cs + u * sn);
    }
  }
}
