/* backend/cpu/pointwise.c: the reference of the elementwise ops
 * (ops/pointwise.c): activations, dropout, add and mul with broadcasting. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mdlc.h"
#include "runtime/mdlrt_rng.h"

/* ---- activations ------------------------------------------------------ */

#define SQRT1_2 0.70710678118654752440 /* 1/sqrt(2) */

void cpu_act_fwd(Op op, const float *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    double v = x[i], r;
    switch (op) {
    case OP_RELU: r = v > 0 ? v : 0; break;
    case OP_GELU: r = 0.5 * v * (1.0 + erf(v * SQRT1_2)); break;
    case OP_SILU: r = v / (1.0 + exp(-v)); break;
    case OP_TANH: r = tanh(v); break;
    case OP_SIGMOID: r = 1.0 / (1.0 + exp(-v)); break;
    default: ICE("cpu_act_fwd: not an activation: %d", (int)op);
    }
    y[i] = (float)r;
  }
}

void cpu_act_bwd(Op op, const float *x, const float *y, const float *dy,
                 float *dx, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    double g = dy[i], r;
    switch (op) {
    case OP_RELU: r = y[i] > 0 ? g : 0; break;
    case OP_GELU: {
      double v = x[i];
      double cdf = 0.5 * (1.0 + erf(v * SQRT1_2));
      double pdf = exp(-0.5 * v * v) * 0.3989422804014327; /* 1/sqrt(2pi) */
      r = g * (cdf + v * pdf);
      break;
    }
    case OP_SILU: {
      double v = x[i], s = 1.0 / (1.0 + exp(-v));
      r = g * s * (1.0 + v * (1.0 - s));
      break;
    }
    case OP_TANH: r = g * (1.0 - (double)y[i] * y[i]); break;
    case OP_SIGMOID: r = g * y[i] * (1.0 - y[i]); break;
    default: ICE("cpu_act_bwd: not an activation: %d", (int)op);
    }
    dx[i] = (float)r;
  }
}

/* ---- dropout ---------------------------------------------------------- */

void cpu_dropout_mask(uint64_t seed, int node, uint64_t step, double p,
                      uint8_t *mask, int64_t n) {
  float fp = (float)p;
  for (int64_t i = 0; i < n; i++)
    mask[i] = mdlrt_uniform(seed, MDLRT_STREAM_DROP + (uint64_t)node,
                            mdlrt_dropout_index(step, (uint64_t)i)) >= fp;
}

float cpu_dropout_scale(double p) {
  return p >= 1.0 ? 0.0f : (float)(1.0 / (1.0 - p));
}

void cpu_dropout_apply(const float *x, const uint8_t *mask, double p,
                       float *y, int64_t n) {
  float s = cpu_dropout_scale(p);
  for (int64_t i = 0; i < n; i++) y[i] = mask[i] ? x[i] * s : 0.0f;
}

/* ---- add, mul --------------------------------------------------------- */

void cpu_binary_fwd(Op op, const Shape *sa, const float *a, const Shape *sb,
                    const float *b, const Shape *sy, float *y) {
  int64_t sta[MAX_RANK], stb[MAX_RANK], n = cpu_numel(sy);
  cpu_bcast_strides(sa, sy, sta);
  cpu_bcast_strides(sb, sy, stb);
  for (int64_t j = 0; j < n; j++) {
    float u = a[cpu_offset_of(sy, sta, j)], v = b[cpu_offset_of(sy, stb, j)];
    y[j] = op == OP_MUL ? u * v : u + v;
  }
}

void cpu_binary_bwd(Op op, const Shape *sa, const float *a, const Shape *sb,
                    const float *b, const Shape *sy, const float *dy,
                    float *da, float *db) {
  int64_t sta[MAX_RANK], stb[MAX_RANK], n = cpu_numel(sy);
  int64_t na = cpu_numel(sa), nb = cpu_numel(sb);
  cpu_bcast_strides(sa, sy, sta);
  cpu_bcast_strides(sb, sy, stb);
  double *ga = cpu_dzalloc(na), *gb = cpu_dzalloc(nb);
  for (int64_t j = 0; j < n; j++) {
    int64_t ia = cpu_offset_of(sy, sta, j), ib = cpu_offset_of(sy, stb, j);
    if (op == OP_MUL) {
      if (da) ga[ia] += (double)dy[j] * b[ib];
      if (db) gb[ib] += (double)dy[j] * a[ia];
    } else {
      ga[ia] += dy[j];
      gb[ib] += dy[j];
    }
  }
  cpu_dstore(da, ga, na);
  cpu_dstore(db, gb, nb);
  free(ga);
  free(gb);
}
