/* backend/cpu/numeric.c: the CPU reference's number formats and helpers.
 *
 * f16 and bf16 conversions with round-to-nearest-even (what the GPU's
 * conversions do), the double accumulators every reference kernel sums
 * into, and NumPy broadcasting over contiguous shapes. The reference
 * kernels of each family of ops live beside this file (backend/cpu/);
 * each sees contiguous row-major f32 arrays and is a direct transcription
 * of docs/ops.md, written to be read and trusted rather than to be fast.
 * Reductions accumulate in double and round once, so the reference is at
 * least as accurate as any GPU summation order. Storage dtypes, views and
 * accumulation are the executor's business (backend/cpu/exec.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mdlc.h"

/* ---- 16-bit floats ---------------------------------------------------- */

static uint32_t f32_bits(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  return x;
}

static float bits_f32(uint32_t x) {
  float f;
  memcpy(&f, &x, sizeof f);
  return f;
}

/* f16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
float cpu_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {  /* zero or subnormal: m * 2^-24, exact in f32 */
    float v = (float)m * (1.0f / 16777216.0f);
    return bits_f32(f32_bits(v) | sign);
  }
  if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));
  return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

/* Round to nearest, ties to even, as an IEEE conversion does. Example:
 * 65519 -> 0x7bff (65504); 65520, halfway to 65536, goes to even: inf. */
uint16_t cpu_f32_to_f16(float f) {
  uint32_t x = f32_bits(f);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u)  /* NaN: quiet, keep the top payload bits */
    return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 */
  if (ax < 0x38800000u) {  /* below 2^-14: a subnormal result (or zero) */
    if (ax < 0x33000000u) return sign;  /* below 2^-25: rounds to 0 */
    uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
    int shift = 126 - (int)e;  /* value in units of 2^-24 is m >> shift */
    uint32_t r = m >> shift, rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) r++;
    return (uint16_t)(sign | r);
  }
  uint32_t r = ax - 0x38000000u;  /* rebias the exponent: 127 -> 15 */
  r += 0xfffu + ((r >> 13) & 1);
  return (uint16_t)(sign | (r >> 13));
}

float cpu_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t cpu_f32_to_bf16(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
  x += 0x7fffu + ((x >> 16) & 1);
  return (uint16_t)(x >> 16);
}

float cpu_round_to(DType t, float x) {
  if (t == DT_F16) return cpu_f16_to_f32(cpu_f32_to_f16(x));
  if (t == DT_BF16) return cpu_bf16_to_f32(cpu_f32_to_bf16(x));
  return x;
}

/* ---- helpers ---------------------------------------------------------- */

double *cpu_dzalloc(int64_t n) {
  double *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
  if (!p) {
    fprintf(stderr, "mdlc: out of host memory (%lld doubles)\n",
            (long long)n);
    exit(3);
  }
  return p;
}

void cpu_dstore(float *dst, const double *src, int64_t n) {
  if (!dst) return;
  for (int64_t i = 0; i < n; i++) dst[i] = (float)src[i];
}

int64_t cpu_numel(const Shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n *= s->dim[i];
  return n;
}

/* Strides (in elements) of a contiguous tensor of shape s, read at the
 * indices of shape sy (rank >= s's) by NumPy broadcasting: 0 where s has
 * no such dim or extent 1. */
void cpu_bcast_strides(const Shape *s, const Shape *sy, int64_t *st) {
  int64_t acc = 1;
  for (int d = sy->rank - 1; d >= 0; d--) {
    int sd = d - (sy->rank - s->rank);
    if (sd < 0 || s->dim[sd] == 1) {
      st[d] = 0;
    } else {
      st[d] = acc;
    }
    if (sd >= 0) acc *= s->dim[sd];
  }
}

/* Offset of linear index j of shape sy under strides st. */
int64_t cpu_offset_of(const Shape *sy, const int64_t *st, int64_t j) {
  int64_t off = 0;
  for (int d = sy->rank - 1; d >= 0; d--) {
    off += (j % sy->dim[d]) * st[d];
    j /= sy->dim[d];
  }
  return off;
}
