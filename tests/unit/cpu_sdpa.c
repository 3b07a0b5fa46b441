/* tests/unit/cpu_sdpa.c: the attention reference (backend/cpu/sdpa.c)
 * against values computed here, independently of it.
 *
 *  1. Forward: the materialized attention in double, written here with its
 *     own indexing: the full [S, T] score matrix scale * q k^T with -inf
 *     above the diagonal if causal, softmax by rows, the dropout mask drawn
 *     here from runtime/mdlrt_rng.h by the contract's formula, o = (P * M /
 *     (1 - p)) v, and lse = log(sum exp(scores)) with no max subtracted.
 *     |o - ref| and |lse - ref| <= 1e-6 + 1e-6 |ref|.
 *  2. Backward: every element of dq, dk and dv against a central finite
 *     difference (h = 1e-5, in double) of L = sum r * o, r fixed random, of
 *     that double forward; cpu_sdpa_bwd gets dout = r and the o and lse of
 *     cpu_sdpa_fwd. |analytic - numeric| <= 1e-5 + 1e-4 |numeric|.
 * Cases: causal or not, grouped-query (H 4 over Hkv 2 and 1), dropout,
 * S != T both ways. Exit 1 on any failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mdlc.h"
#include "runtime/mdlrt_rng.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static double urand(void) { /* xorshift64, in [-1, 1) */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (double)(rng >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

static void *xcalloc(size_t n, size_t sz) {
  void *p = calloc(n ? n : 1, sz);
  if (!p) abort();
  return p;
}

/* The attention of p in double, materialized, on double q, k, v. */
static void naive(const CpuSdpa *p, const double *q, const double *k,
                  const double *v, double *o, double *lse) {
  const int64_t S = p->s, T = p->t, Dh = p->dh, rep = p->h / p->hkv;
  double *sc = xcalloc((size_t)(S * T), sizeof *sc);
  for (int64_t b = 0; b < p->b; b++)
    for (int64_t h = 0; h < p->h; h++) {
      const int64_t kh = h / rep;
      const double *Q = q + (b * p->h + h) * S * Dh;
      const double *K = k + (b * p->hkv + kh) * T * Dh;
      const double *V = v + (b * p->hkv + kh) * T * Dh;
      double *O = o + (b * p->h + h) * S * Dh;
      for (int64_t i = 0; i < S; i++) /* the score matrix */
        for (int64_t j = 0; j < T; j++) {
          double s = 0;
          for (int64_t d = 0; d < Dh; d++) s += Q[i * Dh + d] * K[j * Dh + d];
          sc[i * T + j] = p->causal && j > i ? -INFINITY : s * p->scale;
        }
      for (int64_t i = 0; i < S; i++) {
        double sum = 0;
        for (int64_t j = 0; j < T; j++) sum += exp(sc[i * T + j]);
        if (lse) lse[(b * p->h + h) * S + i] = log(sum);
        for (int64_t d = 0; d < Dh; d++) O[i * Dh + d] = 0;
        for (int64_t j = 0; j < T; j++) {
          double prob = exp(sc[i * T + j]) / sum;
          if (p->dropout > 0) {
            uint64_t e = (uint64_t)(((b * p->h + h) * S + i) * T + j);
            float u = mdlrt_uniform(p->seed, MDLRT_STREAM_DROP + (uint64_t)p->node,
                                    mdlrt_dropout_index(p->step, e));
            prob = u >= (float)p->dropout
                       ? prob * (double)(float)(1.0 / (1.0 - p->dropout))
                       : 0.0;
          }
          for (int64_t d = 0; d < Dh; d++) O[i * Dh + d] += prob * V[j * Dh + d];
        }
      }
    }
  free(sc);
}

static double linear(const double *r, const double *o, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += r[i] * o[i];
  return s;
}

/* max over x of |got - want| beyond tolerance; counts failures. */
static void compare(const char *name, const char *what, const float *got,
                    const double *want, int64_t n, double atol, double rtol) {
  int64_t bad = 0, worst = 0;
  double werr = 0;
  for (int64_t i = 0; i < n; i++) {
    double err = fabs(got[i] - want[i]);
    if (!(err <= atol + rtol * fabs(want[i]))) bad++;
    if (!(err <= werr)) werr = err, worst = i;
  }
  CHECK(!bad, "%s %s: %lld of %lld elements off, worst %lld: %.9g vs %.9g",
        name, what, (long long)bad, (long long)n, (long long)worst,
        got[worst], want[worst]);
  printf("  %-28s %-3s max|err| %.2e\n", name, what, werr);
}

static void run(const char *name, CpuSdpa p) {
  const int64_t nq = p.b * p.h * p.s * p.dh, nk = p.b * p.hkv * p.t * p.dh;
  const int64_t nl = p.b * p.h * p.s;
  float *fq = xcalloc((size_t)nq, 4), *fk = xcalloc((size_t)nk, 4);
  float *fv = xcalloc((size_t)nk, 4), *fr = xcalloc((size_t)nq, 4);
  float *fo = xcalloc((size_t)nq, 4), *fl = xcalloc((size_t)nl, 4);
  float *gq = xcalloc((size_t)nq, 4), *gk = xcalloc((size_t)nk, 4);
  float *gv = xcalloc((size_t)nk, 4);
  double *q = xcalloc((size_t)nq, 8), *k = xcalloc((size_t)nk, 8);
  double *v = xcalloc((size_t)nk, 8), *r = xcalloc((size_t)nq, 8);
  double *o = xcalloc((size_t)nq, 8), *l = xcalloc((size_t)nl, 8);
  double *num = xcalloc((size_t)(nq > nk ? nq : nk), 8);
  /* inputs exact in f32, so both sides see the same values */
  for (int64_t i = 0; i < nq; i++) fq[i] = (float)urand(), q[i] = fq[i];
  for (int64_t i = 0; i < nk; i++) fk[i] = (float)urand(), k[i] = fk[i];
  for (int64_t i = 0; i < nk; i++) fv[i] = (float)urand(), v[i] = fv[i];
  for (int64_t i = 0; i < nq; i++) fr[i] = (float)urand(), r[i] = fr[i];

  /* 1. forward */
  cpu_sdpa_fwd(&p, fq, fk, fv, fo, fl);
  naive(&p, q, k, v, o, l);
  compare(name, "o", fo, o, nq, 1e-6, 1e-6);
  compare(name, "lse", fl, l, nl, 1e-6, 1e-6);

  /* 2. backward against finite differences of sum r * o */
  cpu_sdpa_bwd(&p, fq, fk, fv, fo, fl, fr, gq, gk, gv);
  const double hh = 1e-5;
  struct {
    const char *what;
    double *x;
    const float *g;
    int64_t n;
  } in[3] = {{"dq", q, gq, nq}, {"dk", k, gk, nk}, {"dv", v, gv, nk}};
  for (int t = 0; t < 3; t++) {
    for (int64_t i = 0; i < in[t].n; i++) {
      const double x0 = in[t].x[i];
      in[t].x[i] = x0 + hh;
      naive(&p, q, k, v, o, NULL);
      double up = linear(r, o, nq);
      in[t].x[i] = x0 - hh;
      naive(&p, q, k, v, o, NULL);
      double down = linear(r, o, nq);
      in[t].x[i] = x0;
      num[i] = (up - down) / (2 * hh);
    }
    compare(name, in[t].what, in[t].g, num, in[t].n, 1e-5, 1e-4);
  }

  /* not wanted: NULL outputs are skipped, the others unchanged */
  float *gq2 = xcalloc((size_t)nq, 4);
  cpu_sdpa_bwd(&p, fq, fk, fv, fo, fl, fr, gq2, NULL, NULL);
  CHECK(!memcmp(gq, gq2, (size_t)nq * 4), "%s: dq alone differs", name);
  free(gq2);

  void *all[] = {fq, fk, fv, fr, fo, fl, gq, gk, gv, q, k, v, r, o, l, num};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

static CpuSdpa mk(int64_t b, int64_t h, int64_t hkv, int64_t s, int64_t t,
                  int64_t dh, bool causal, double dropout) {
  CpuSdpa p = {.b = b, .h = h, .hkv = hkv, .s = s, .t = t, .dh = dh,
               .causal = causal, .dropout = dropout,
               .scale = 1.0 / sqrt((double)dh), .seed = 7, .step = 2,
               .node = 3};
  return p;
}

int main(void) {
  run("noncausal gqa 4/2 S<T", mk(2, 4, 2, 5, 7, 3, false, 0));
  run("causal mqa 4/1", mk(1, 4, 1, 6, 6, 4, true, 0));
  run("causal gqa 4/2 dropout .3", mk(1, 4, 2, 6, 6, 3, true, 0.3));
  run("noncausal dropout .25 S<T", mk(2, 2, 2, 4, 9, 3, false, 0.25));
  run("causal S>T mqa dropout .2", mk(1, 4, 1, 7, 5, 2, true, 0.2));
  CpuSdpa big = mk(1, 2, 1, 3, 4, 5, true, 0);
  big.scale = 0.7; /* a scale of its own */
  run("causal S<T scale .7", big);
  if (failures) printf("cpu_sdpa: %d failures\n", failures);
  return failures ? 1 : 0;
}
