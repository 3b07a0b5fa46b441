/* backend/cpu/sdpa.c: fused scaled-dot-product attention, the reference
 * (the `sdpa` op; the GPU's is runtime/mdlrt_attn.cu).
 *
 * Key idea: one query row at a time, its scores materialized as a row of
 * doubles: s_j = scale q_i . k_j (masked where causal and j > i),
 * P_j = exp(s_j - lse_i), lse_i = log sum_j exp(s_j), Z_j = P_j M_j / (1-p)
 * with the dropout mask M drawn exactly as the GPU draws it, o_i = Z V.
 * The backward is the textbook one, from the saved o and lse:
 *   dV_j += Z_j dO_i,  dP_j = (dO_i . v_j) M_j / (1-p),
 *   D_i = dO_i . o_i (= sum_j P_j dP_j),  dS_j = P_j (dP_j - D_i),
 *   dQ_i = scale sum_j dS_j k_j,  dK_j += scale dS_j q_i.
 * Grouped-query attention: query head h reads kv head h / (H / Hkv), so
 * dK and dV sum over the heads of a group. Everything accumulates in
 * double and is rounded to f32 once.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdlc.h"
#include "runtime/mdlrt_rng.h"

/* n zeroed doubles, or exit 3 as cpu_kernels.c does */
static double *sdpa_alloc(int64_t n) {
  double *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
  if (!p) {
    fprintf(stderr, "mdlc: out of host memory (%lld doubles)\n", (long long)n);
    exit(3);
  }
  return p;
}

/* Whether dropout keeps score element (b, h, i, j). */
static bool sdpa_kept(const CpuSdpa *p, int64_t b, int64_t h, int64_t i,
                      int64_t j) {
  if (p->dropout <= 0) return true;
  uint64_t e = (uint64_t)(((b * p->h + h) * p->s + i) * p->t + j);
  return mdlrt_uniform(p->seed, MDLRT_STREAM_DROP + (uint64_t)p->node,
                       mdlrt_dropout_index(p->step, e)) >= (float)p->dropout;
}

/* The scale of kept probabilities, as the dropout op rounds it. */
static double sdpa_keep(const CpuSdpa *p) {
  return p->dropout > 0 ? (double)cpu_dropout_scale(p->dropout) : 1.0;
}

static double dot(const float *x, const float *y, int64_t n) {
  double s = 0;
  for (int64_t d = 0; d < n; d++) s += (double)x[d] * y[d];
  return s;
}

/* Row i of (b, h): the scaled scores s[j], -inf where masked. */
static void sdpa_scores(const CpuSdpa *p, const float *qi, const float *kh,
                        int64_t i, double *s) {
  for (int64_t j = 0; j < p->t; j++)
    s[j] = p->causal && j > i ? -INFINITY
                              : p->scale * dot(qi, kh + j * p->dh, p->dh);
}

void cpu_sdpa_fwd(const CpuSdpa *p, const float *q, const float *k,
                  const float *v, float *o, float *lse) {
  const int64_t G = p->h / p->hkv, dh = p->dh;
  const double keep = sdpa_keep(p);
  double *s = sdpa_alloc(p->t + dh), *acc = s + p->t;
  for (int64_t b = 0; b < p->b; b++)
    for (int64_t h = 0; h < p->h; h++) {
      const int64_t row0 = (b * p->h + h) * p->s;
      const float *kh = k + (b * p->hkv + h / G) * p->t * dh;
      const float *vh = v + (b * p->hkv + h / G) * p->t * dh;
      for (int64_t i = 0; i < p->s; i++) {
        sdpa_scores(p, q + (row0 + i) * dh, kh, i, s);
        double m = -INFINITY, sum = 0;
        for (int64_t j = 0; j < p->t; j++) m = fmax(m, s[j]);
        for (int64_t j = 0; j < p->t; j++) sum += exp(s[j] - m);
        const double L = m + log(sum);
        memset(acc, 0, (size_t)dh * sizeof *acc);
        for (int64_t j = 0; j < p->t; j++) {
          if (!sdpa_kept(p, b, h, i, j)) continue;
          const double z = exp(s[j] - L) * keep;
          for (int64_t d = 0; d < dh; d++) acc[d] += z * vh[j * dh + d];
        }
        for (int64_t d = 0; d < dh; d++) o[(row0 + i) * dh + d] = (float)acc[d];
        if (lse) lse[row0 + i] = (float)L;
      }
    }
  free(s);
}

void cpu_sdpa_bwd(const CpuSdpa *p, const float *q, const float *k,
                  const float *v, const float *o, const float *lse,
                  const float *dout, float *dq, float *dk, float *dv) {
  const int64_t G = p->h / p->hkv, dh = p->dh;
  const int64_t nq = p->b * p->h * p->s * dh, nk = p->b * p->hkv * p->t * dh;
  const double keep = sdpa_keep(p);
  double *s = sdpa_alloc(p->t), *gq = sdpa_alloc(nq + 2 * nk);
  double *gk = gq + nq, *gv = gk + nk;
  for (int64_t b = 0; b < p->b; b++)
    for (int64_t h = 0; h < p->h; h++) {
      const int64_t row0 = (b * p->h + h) * p->s, kv0 = (b * p->hkv + h / G) * p->t;
      for (int64_t i = 0; i < p->s; i++) {
        const float *qi = q + (row0 + i) * dh, *gi = dout + (row0 + i) * dh;
        sdpa_scores(p, qi, k + kv0 * dh, i, s);
        const double D = dot(gi, o + (row0 + i) * dh, dh);
        for (int64_t j = 0; j < p->t; j++) {
          const float *kj = k + (kv0 + j) * dh, *vj = v + (kv0 + j) * dh;
          const double P = exp(s[j] - lse[row0 + i]); /* 0 where masked */
          const bool kept = sdpa_kept(p, b, h, i, j);
          const double z = kept ? P * keep : 0.0;
          const double dP = kept ? dot(gi, vj, dh) * keep : 0.0;
          const double dS = P * (dP - D) * p->scale;
          for (int64_t d = 0; d < dh; d++) {
            gq[(row0 + i) * dh + d] += dS * kj[d];
            gk[(kv0 + j) * dh + d] += dS * qi[d];
            gv[(kv0 + j) * dh + d] += z * gi[d];
          }
        }
      }
    }
  for (int64_t x = 0; dq && x < nq; x++) dq[x] = (float)gq[x];
  for (int64_t x = 0; dk && x < nk; x++) dk[x] = (float)gk[x];
  for (int64_t x = 0; dv && x < nk; x++) dv[x] = (float)gv[x];
  free(gq);
  free(s);
}
