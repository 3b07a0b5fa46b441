/* backend/cpu/conv.c: the reference of conv2d (ops/conv.c): direct loops. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mdlc.h"

/* ---- conv2d ----------------------------------------------------------- */

void cpu_conv_out(CpuConv *p) {
  p->oh = (p->h + 2 * p->pad - p->dil * (p->k - 1) - 1) / p->stride + 1;
  p->ow = (p->w + 2 * p->pad - p->dil * (p->k - 1) - 1) / p->stride + 1;
}

/* Visits every (output, weight tap) pair with an in-range input element:
 * x index xi, weight index wi, output index yi. */
#define CONV_LOOP(p, BODY)                                                   \
  do {                                                                       \
    int64_t cg_ = (p)->c / (p)->groups, og_ = (p)->o / (p)->groups;          \
    for (int64_t n_ = 0; n_ < (p)->n; n_++)                                  \
      for (int64_t o_ = 0; o_ < (p)->o; o_++) {                              \
        int64_t c0_ = (o_ / og_) * cg_;                                      \
        for (int64_t i_ = 0; i_ < (p)->oh; i_++)                             \
          for (int64_t j_ = 0; j_ < (p)->ow; j_++) {                         \
            int64_t yi = ((n_ * (p)->o + o_) * (p)->oh + i_) * (p)->ow + j_; \
            for (int64_t c_ = 0; c_ < cg_; c_++)                             \
              for (int64_t u_ = 0; u_ < (p)->k; u_++) {                      \
                int64_t h_ = i_ * (p)->stride - (p)->pad + u_ * (p)->dil;    \
                if (h_ < 0 || h_ >= (p)->h) continue;                        \
                for (int64_t v_ = 0; v_ < (p)->k; v_++) {                    \
                  int64_t w_ = j_ * (p)->stride - (p)->pad + v_ * (p)->dil;  \
                  if (w_ < 0 || w_ >= (p)->w) continue;                      \
                  int64_t xi =                                               \
                      ((n_ * (p)->c + c0_ + c_) * (p)->h + h_) * (p)->w + w_;\
                  int64_t wi = ((o_ * cg_ + c_) * (p)->k + u_) * (p)->k + v_;\
                  BODY;                                                      \
                }                                                            \
              }                                                              \
          }                                                                  \
      }                                                                      \
  } while (0)

void cpu_conv2d_fwd(const CpuConv *p, const float *x, const float *w,
                    const float *b, float *y) {
  int64_t ny = p->n * p->o * p->oh * p->ow, hw = p->oh * p->ow;
  double *acc = cpu_dzalloc(ny);
  CONV_LOOP(p, acc[yi] += (double)x[xi] * w[wi]);
  for (int64_t i = 0; i < ny; i++)
    y[i] = (float)(acc[i] + (b ? b[(i / hw) % p->o] : 0.0));
  free(acc);
}

void cpu_conv2d_bwd(const CpuConv *p, const float *x, const float *w,
                    const float *dy, float *dx, float *dw, float *db) {
  int64_t nx = p->n * p->c * p->h * p->w;
  int64_t nw = p->o * (p->c / p->groups) * p->k * p->k;
  int64_t hw = p->oh * p->ow, ny = p->n * p->o * hw;
  double *gx = cpu_dzalloc(nx), *gw = cpu_dzalloc(nw);
  CONV_LOOP(p, {
    gx[xi] += (double)dy[yi] * w[wi];
    gw[wi] += (double)dy[yi] * x[xi];
  });
  cpu_dstore(dx, gx, nx);
  cpu_dstore(dw, gw, nw);
  free(gx);
  free(gw);
  if (db) {
    double *gb = cpu_dzalloc(p->o);
    for (int64_t i = 0; i < ny; i++) gb[(i / hw) % p->o] += dy[i];
    cpu_dstore(db, gb, p->o);
    free(gb);
  }
}

#undef CONV_LOOP
