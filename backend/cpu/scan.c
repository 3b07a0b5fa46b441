/* backend/cpu/scan.c: the CPU reference of Mamba's selective scan (S6) and
 * of conv1d, forward and backward (docs/scan.md).
 *
 * Key idea: each (n, d, s) state is one scalar recurrence
 *     h_t = exp(dt_t A) h_{t-1} + dt_t b_t x_t,   h_{-1} = 0,
 * read out as y_t = sum_s c_t h_t + Dskip x_t. The backward runs the same
 * recurrence forward, keeping that one state's L values, then its adjoint
 *     g_t = c_t dy_t + exp(dt_{t+1} A) g_{t+1},   g_L = 0
 * in reverse; every gradient is a sum of products of the two. Everything is
 * computed and accumulated in double and rounded to f32 once, so memory is
 * O(L) per state plus the outputs. Arrays are contiguous row-major f32:
 * x, dt [n, d, l]; b, c [n, s, l]; A_log [d, s]; Dskip [d].
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mdlc.h"

static double *zeros(int64_t n) {
  double *p = calloc((size_t)(n ? n : 1), sizeof *p);
  if (!p) abort();
  return p;
}

/* out = acc rounded to f32 (out may be NULL: not wanted). */
static void store(float *out, const double *acc, int64_t n) {
  if (!out) return;
  for (int64_t i = 0; i < n; i++) out[i] = (float)acc[i];
}

/* ---- selective scan --------------------------------------------------- */

void cpu_scan_fwd(int64_t n, int64_t d, int64_t s, int64_t l, const float *x,
                  const float *dt, const float *b, const float *c,
                  const float *A_log, const float *Dskip, float *y) {
  double *acc = zeros(l);
  for (int64_t in = 0; in < n; in++)
    for (int64_t id = 0; id < d; id++) {
      const float *xr = x + (in * d + id) * l, *dr = dt + (in * d + id) * l;
      for (int64_t t = 0; t < l; t++) acc[t] = (double)Dskip[id] * xr[t];
      for (int64_t is = 0; is < s; is++) {
        double A = -exp((double)A_log[id * s + is]), h = 0.0;
        const float *br = b + (in * s + is) * l, *cr = c + (in * s + is) * l;
        for (int64_t t = 0; t < l; t++) {
          h = exp(dr[t] * A) * h + (double)dr[t] * br[t] * xr[t];
          acc[t] += (double)cr[t] * h;
        }
      }
      store(y + (in * d + id) * l, acc, l);
    }
  free(acc);
}

/* For one state (n, d, s), with a_t = exp(dt_t A) and u_t = dt_t b_t x_t:
 *   dc[n,s,t]   += dy_t h_t                 (sum over d)
 *   db[n,s,t]   += g_t dt_t x_t             (sum over d)
 *   dx[n,d,t]   += g_t dt_t b_t             (sum over s; + Dskip dy_t)
 *   ddt[n,d,t]  += g_t (b_t x_t + A a_t h_{t-1})   (sum over s)
 *   dA[d,s]     += g_t a_t h_{t-1} dt_t     (sum over n, t)
 * and dA_log = dA * A, dDskip[d] = sum over n, t of dy x. */
void cpu_scan_bwd(int64_t n, int64_t d, int64_t s, int64_t l, const float *x,
                  const float *dt, const float *b, const float *c,
                  const float *A_log, const float *Dskip, const float *dy,
                  float *dx, float *ddt, float *db, float *dc, float *dA_log,
                  float *dDskip) {
  double *h = zeros(l + 1); /* h[t + 1] = h_t, h[0] = h_{-1} = 0 */
  double *gx = zeros(l), *gdt = zeros(l);
  double *gb = zeros(n * s * l), *gc = zeros(n * s * l);
  double *gA = zeros(d * s), *gD = zeros(d);
  for (int64_t in = 0; in < n; in++)
    for (int64_t id = 0; id < d; id++) {
      int64_t row = (in * d + id) * l;
      const float *xr = x + row, *dr = dt + row, *gyr = dy + row;
      for (int64_t t = 0; t < l; t++) {
        gx[t] = (double)Dskip[id] * gyr[t];
        gdt[t] = 0.0;
        gD[id] += (double)gyr[t] * xr[t];
      }
      for (int64_t is = 0; is < s; is++) {
        double A = -exp((double)A_log[id * s + is]);
        const float *br = b + (in * s + is) * l, *cr = c + (in * s + is) * l;
        double *gbr = gb + (in * s + is) * l, *gcr = gc + (in * s + is) * l;
        for (int64_t t = 0; t < l; t++)
          h[t + 1] = exp(dr[t] * A) * h[t] + (double)dr[t] * br[t] * xr[t];
        double g = 0.0, a_next = 0.0; /* g_{t+1}, a_{t+1} */
        for (int64_t t = l - 1; t >= 0; t--) {
          double a = exp(dr[t] * A);
          g = (double)cr[t] * gyr[t] + a_next * g;
          gcr[t] += (double)gyr[t] * h[t + 1];
          gbr[t] += g * dr[t] * xr[t];
          gx[t] += g * dr[t] * br[t];
          gdt[t] += g * ((double)br[t] * xr[t] + A * a * h[t]);
          gA[id * s + is] += g * a * h[t] * dr[t];
          a_next = a;
        }
      }
      store(dx ? dx + row : NULL, gx, l);
      store(ddt ? ddt + row : NULL, gdt, l);
    }
  for (int64_t i = 0; i < d * s; i++) gA[i] *= -exp((double)A_log[i]);
  store(db, gb, n * s * l);
  store(dc, gc, n * s * l);
  store(dA_log, gA, d * s);
  store(dDskip, gD, d);
  free(h), free(gx), free(gdt), free(gb), free(gc), free(gA), free(gD);
}

/* ---- conv1d ----------------------------------------------------------- */

void cpu_conv1d_out(CpuConv1d *p) {
  p->ol = (p->l + p->pad_left + p->pad_right - p->dil * (p->k - 1) - 1) /
              p->stride + 1;
}

/* Visits every (output, weight tap) pair whose input element is in range:
 * x index xi, weight index wi, output index yi. */
#define CONV1D_LOOP(p, BODY)                                                 \
  do {                                                                       \
    int64_t cg_ = (p)->c / (p)->groups, og_ = (p)->out / (p)->groups;        \
    for (int64_t n_ = 0; n_ < (p)->n; n_++)                                  \
      for (int64_t o_ = 0; o_ < (p)->out; o_++) {                            \
        int64_t c0_ = (o_ / og_) * cg_;                                      \
        for (int64_t j_ = 0; j_ < (p)->ol; j_++) {                           \
          int64_t yi = (n_ * (p)->out + o_) * (p)->ol + j_;                  \
          for (int64_t c_ = 0; c_ < cg_; c_++)                               \
            for (int64_t u_ = 0; u_ < (p)->k; u_++) {                        \
              int64_t t_ = j_ * (p)->stride - (p)->pad_left + u_ * (p)->dil; \
              if (t_ < 0 || t_ >= (p)->l) continue;                          \
              int64_t xi = (n_ * (p)->c + c0_ + c_) * (p)->l + t_;           \
              int64_t wi = (o_ * cg_ + c_) * (p)->k + u_;                    \
              BODY;                                                          \
            }                                                                \
        }                                                                    \
      }                                                                      \
  } while (0)

void cpu_conv1d_fwd(const CpuConv1d *p, const float *x, const float *w,
                    const float *b, float *y) {
  int64_t ny = p->n * p->out * p->ol;
  double *acc = zeros(ny);
  CONV1D_LOOP(p, acc[yi] += (double)x[xi] * w[wi]);
  for (int64_t i = 0; i < ny; i++)
    y[i] = (float)(acc[i] + (b ? b[(i / p->ol) % p->out] : 0.0));
  free(acc);
}

void cpu_conv1d_bwd(const CpuConv1d *p, const float *x, const float *w,
                    const float *dy, float *dx, float *dw, float *db) {
  int64_t nx = p->n * p->c * p->l, nw = p->out * (p->c / p->groups) * p->k;
  int64_t ny = p->n * p->out * p->ol;
  double *gx = zeros(nx), *gw = zeros(nw), *gb = zeros(p->out);
  CONV1D_LOOP(p, {
    gx[xi] += (double)dy[yi] * w[wi];
    gw[wi] += (double)dy[yi] * x[xi];
  });
  for (int64_t i = 0; i < ny; i++) gb[(i / p->ol) % p->out] += dy[i];
  store(dx, gx, nx);
  store(dw, gw, nw);
  store(db, gb, p->out);
  free(gx), free(gw), free(gb);
}

#undef CONV1D_LOOP
