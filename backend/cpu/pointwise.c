/* backend/cpu/pointwise.c: the reference of the elementwise ops
 * (ops/pointwise.c): activations, dropout, add and mul with broadcasting. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mdlc.h"
#include "runtime/mdlrt_rng.h"

/* ---- activations ------------------------------------------------------ */

#define SQRT1_2 0.70710678118654752440 /* 1/sqrt(2) */

static double relu_f(double x) { return x > 0 ? x : 0; }
static double relu_b(double g, double y) { return y > 0 ? g : 0; }
const CpuAct cpu_relu = {relu_f, relu_b};

static double gelu_f(double v) { return 0.5 * v * (1.0 + erf(v * SQRT1_2)); }
static double gelu_b(double g, double v) {
  double cdf = 0.5 * (1.0 + erf(v * SQRT1_2));
  double pdf = exp(-0.5 * v * v) * 0.3989422804014327; /* 1/sqrt(2pi) */
  return g * (cdf + v * pdf);
}
const CpuAct cpu_gelu = {gelu_f, gelu_b};

static double silu_f(double v) { return v / (1.0 + exp(-v)); }
static double silu_b(double g, double v) {
  double s = 1.0 / (1.0 + exp(-v));
  return g * s * (1.0 + v * (1.0 - s));
}
const CpuAct cpu_silu = {silu_f, silu_b};

static double tanh_f(double v) { return tanh(v); }
static double tanh_b(double g, double y) { return g * (1.0 - y * y); }
const CpuAct cpu_tanh = {tanh_f, tanh_b};

static double sigmoid_f(double v) { return 1.0 / (1.0 + exp(-v)); }
static double sigmoid_b(double g, double y) { return g * y * (1.0 - y); }
const CpuAct cpu_sigmoid = {sigmoid_f, sigmoid_b};

static double exp_f(double v) { return exp(v); }
static double exp_b(double g, double y) { return g * y; }
const CpuAct cpu_exp = {exp_f, exp_b};

/* PyTorch's softplus (beta 1, threshold 20): linear above the threshold. */
static double softplus_f(double v) { return v > 20 ? v : log1p(exp(v)); }
static double softplus_b(double g, double v) {
  if (v > 20) return g;
  double z = exp(v);
  return g * z / (z + 1);
}
const CpuAct cpu_softplus = {softplus_f, softplus_b};

void cpu_act_fwd(const CpuAct *a, const float *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = (float)a->fwd(x[i]);
}

void cpu_act_bwd(const CpuAct *a, const float *s, const float *dy, float *dx,
                 int64_t n) {
  for (int64_t i = 0; i < n; i++) dx[i] = (float)a->bwd(dy[i], s[i]);
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
