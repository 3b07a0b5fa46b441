/* tests/unit/cpu_f16.c: f32 <-> f16/bf16 conversions of the CPU executor
 * against known bit patterns (ties to even, subnormals, overflow, NaN), an
 * exhaustive round trip of every f16 and bf16 pattern, and 2^20 random f32
 * values rounded by an independent method: the nearest of the two
 * neighbouring 16-bit values found by bisection over all 16-bit patterns
 * decoded with ldexp, ties to the even pattern.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdlc.h"

static int nfail;

static float fb(uint32_t x) {
  float f;
  memcpy(&f, &x, 4);
  return f;
}

static void want16(const char *what, float f, uint16_t got, uint16_t want) {
  if (got != want) {
    printf("FAIL %s(%a): got 0x%04x, want 0x%04x\n", what, f, got, want);
    nfail++;
  }
}

/* Decodes f16 independently of the code under test. */
static double f16_ref(uint16_t h) {
  int e = (h >> 10) & 31, m = h & 1023;
  double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
  if (e == 31) v = m ? NAN : INFINITY;
  return (h & 0x8000) ? -v : v;
}

static double bf16_ref(uint16_t h) {
  int e = (h >> 7) & 255, m = h & 127;
  double v = e == 0 ? ldexp(m, -133) : ldexp(128 + m, e - 134);
  if (e == 255) v = m ? NAN : INFINITY;
  return (h & 0x8000) ? -v : v;
}

/* Nearest representable, ties to even, among the positive finite patterns
 * 0..maxpat (values increase with the pattern); beyond the largest finite
 * value by half an ulp or more: infinity (inf_pat). */
static uint16_t round_ref(double a, double (*dec)(uint16_t), uint16_t maxpat,
                          uint16_t inf_pat, double half_ulp_top) {
  if (a >= dec(maxpat) + half_ulp_top) return inf_pat;
  uint16_t lo = 0, hi = maxpat;  /* dec(lo) <= a < dec(hi) */
  if (a >= dec(maxpat)) return maxpat;
  while (hi - lo > 1) {
    uint16_t mid = (uint16_t)((lo + hi) / 2);
    if (dec(mid) <= a) lo = mid;
    else hi = mid;
  }
  double dl = a - dec(lo), dh = dec(hi) - a;
  if (dl < dh) return lo;
  if (dh < dl) return hi;
  return (lo & 1) ? hi : lo;
}

int main(void) {
  /* known patterns: f16 */
  struct { float f; uint16_t h; } f16[] = {
      {1.0f, 0x3c00}, {-2.0f, 0xc000}, {0.1f, 0x2e66}, {1.0f / 3, 0x3555},
      {65504.0f, 0x7bff}, {65519.0f, 0x7bff}, {65520.0f, 0x7c00},
      {1e6f, 0x7c00}, {-1e6f, 0xfc00}, {INFINITY, 0x7c00},
      {-0.0f, 0x8000}, {0x1p-24f, 0x0001}, {0x1p-25f, 0x0000},
      {0x1.000002p-25f, 0x0001}, {0x3p-25f, 0x0002}, {0x1p-14f, 0x0400},
      {0x1.ff8p-15f, 0x03ff}, {0x1.002p0f, 0x3c00}, {0x1.006p0f, 0x3c02},
      {0x1.ffep-1f, 0x3c00}, {5.9604645e-08f, 0x0001}, {1e-9f, 0x0000},
  };
  for (size_t i = 0; i < sizeof f16 / sizeof *f16; i++)
    want16("f32_to_f16", f16[i].f, cpu_f32_to_f16(f16[i].f), f16[i].h);
  uint16_t hn = cpu_f32_to_f16(NAN);
  if ((hn & 0x7c00) != 0x7c00 || !(hn & 0x3ff)) {
    printf("FAIL f32_to_f16(NaN) = 0x%04x is not a NaN\n", hn);
    nfail++;
  }
  /* known patterns: bf16 */
  struct { uint32_t x; uint16_t h; } bf[] = {
      {0x3f800000, 0x3f80}, {0x3f808000, 0x3f80}, {0x3f818000, 0x3f82},
      {0x3dcccccd, 0x3dcd}, {0x7f7fffff, 0x7f80}, {0xff7fffff, 0xff80},
      {0x00012345, 0x0001}, {0x00008000, 0x0000}, {0x00018000, 0x0002},
      {0x7f800000, 0x7f80}, {0x7f800001, 0x7fc0}, {0x80000000, 0x8000},
  };
  for (size_t i = 0; i < sizeof bf / sizeof *bf; i++)
    want16("f32_to_bf16", fb(bf[i].x), cpu_f32_to_bf16(fb(bf[i].x)), bf[i].h);

  /* decode and round-trip every pattern */
  for (uint32_t h = 0; h < 65536; h++) {
    double r16 = f16_ref((uint16_t)h), rb = bf16_ref((uint16_t)h);
    float d16 = cpu_f16_to_f32((uint16_t)h), db = cpu_bf16_to_f32((uint16_t)h);
    if (!(isnan(r16) ? isnan(d16) : (double)d16 == r16 &&
                                        !signbit(d16) == !signbit(r16))) {
      if (nfail++ < 5)
        printf("FAIL f16_to_f32(0x%04x) = %.9g, want %.9g\n", h, d16, r16);
    }
    if (!(isnan(rb) ? isnan(db) : (double)db == rb)) {
      if (nfail++ < 5)
        printf("FAIL bf16_to_f32(0x%04x) = %.9g, want %.9g\n", h, db, rb);
    }
    if (!isnan(r16) && cpu_f32_to_f16(d16) != h) {
      if (nfail++ < 5)
        printf("FAIL f16 round trip 0x%04x -> 0x%04x\n", h,
               cpu_f32_to_f16(d16));
    }
    if (!isnan(rb) && cpu_f32_to_bf16(db) != h) {
      if (nfail++ < 5) printf("FAIL bf16 round trip 0x%04x\n", h);
    }
  }

  /* random values, every exponent, against the independent rounding */
  uint64_t s = 0x9e3779b97f4a7c15ull;
  int bad16 = 0, badb = 0;
  for (int i = 0; i < (1 << 20); i++) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    uint32_t x = (uint32_t)s & 0x7fffffffu;
    if ((x & 0x7f800000u) == 0x7f800000u) continue;  /* inf/NaN: above */
    /* half the draws in f16's range, so its subnormals are well covered */
    if (i & 1) x = 0x30000000u + x % 0x18000000u;
    float f = fb(x);
    uint16_t w16 = round_ref(f, f16_ref, 0x7bff, 0x7c00, 16.0);
    uint16_t wb = round_ref(f, bf16_ref, 0x7f7f, 0x7f80, ldexp(1, 119));
    uint16_t g16 = cpu_f32_to_f16(f), gb = cpu_f32_to_bf16(f);
    if (g16 != w16 && bad16++ < 5)
      printf("FAIL f32_to_f16(%a) = 0x%04x, want 0x%04x\n", f, g16, w16);
    if (gb != wb && badb++ < 5)
      printf("FAIL f32_to_bf16(%a) = 0x%04x, want 0x%04x\n", f, gb, wb);
    if (cpu_f32_to_f16(-f) != (g16 | 0x8000) && bad16++ < 5)
      printf("FAIL f32_to_f16(-%a) is not the negation\n", f);
  }
  nfail += bad16 + badb;
  /* cpu_round_to is the store-then-load */
  if (cpu_round_to(DT_BF16, 0.1f) != fb(0x3dcd0000) ||
      cpu_round_to(DT_F16, 0.1f) != (float)f16_ref(0x2e66) ||
      cpu_round_to(DT_F32, 0.1f) != 0.1f) {
    printf("FAIL cpu_round_to\n");
    nfail++;
  }
  printf("%s: %d failure(s)\n", nfail ? "FAIL" : "ok", nfail);
  return nfail != 0;
}
