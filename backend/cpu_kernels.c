/* backend/cpu_kernels.c: the CPU reference kernels, forward and backward of
 * every op, the optimizers and the 16-bit float conversions.
 *
 * Key idea: every kernel sees contiguous row-major f32 arrays and is a
 * direct transcription of docs/ops.md, written to be read and trusted
 * rather than to be fast. Reductions accumulate in double and round once,
 * so the reference is at least as accurate as any GPU summation order.
 * Storage dtypes, views and accumulation are the executor's business
 * (backend/cpu_exec.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mdlc.h"
#include "runtime/mdlrt_rng.h"

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

static double *dzalloc(int64_t n) {
  double *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
  if (!p) {
    fprintf(stderr, "mdlc: out of host memory (%lld doubles)\n",
            (long long)n);
    exit(3);
  }
  return p;
}

static void dstore(float *dst, const double *src, int64_t n) {
  if (!dst) return;
  for (int64_t i = 0; i < n; i++) dst[i] = (float)src[i];
}

static int64_t numel_of(const Shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n *= s->dim[i];
  return n;
}

/* Strides (in elements) of a contiguous tensor of shape s, read at the
 * indices of shape sy (rank >= s's) by NumPy broadcasting: 0 where s has
 * no such dim or extent 1. */
static void bcast_strides(const Shape *s, const Shape *sy, int64_t *st) {
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
static int64_t offset_of(const Shape *sy, const int64_t *st, int64_t j) {
  int64_t off = 0;
  for (int d = sy->rank - 1; d >= 0; d--) {
    off += (j % sy->dim[d]) * st[d];
    j /= sy->dim[d];
  }
  return off;
}

/* ---- linear ----------------------------------------------------------- */

void cpu_linear_fwd(const float *x, const float *w, const float *b, float *y,
                    int64_t m, int64_t k, int64_t n) {
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double acc = b ? b[j] : 0.0;
      for (int64_t t = 0; t < k; t++)
        acc += (double)x[i * k + t] * w[j * k + t];
      y[i * n + j] = (float)acc;
    }
}

void cpu_linear_bwd(const float *x, const float *w, const float *dy,
                    float *dx, float *dw, float *db, int64_t m, int64_t k,
                    int64_t n) {
  if (dx)
    for (int64_t i = 0; i < m; i++)
      for (int64_t t = 0; t < k; t++) {
        double acc = 0;
        for (int64_t j = 0; j < n; j++)
          acc += (double)dy[i * n + j] * w[j * k + t];
        dx[i * k + t] = (float)acc;
      }
  if (dw)
    for (int64_t j = 0; j < n; j++)
      for (int64_t t = 0; t < k; t++) {
        double acc = 0;
        for (int64_t i = 0; i < m; i++)
          acc += (double)dy[i * n + j] * x[i * k + t];
        dw[j * k + t] = (float)acc;
      }
  if (db)
    for (int64_t j = 0; j < n; j++) {
      double acc = 0;
      for (int64_t i = 0; i < m; i++) acc += dy[i * n + j];
      db[j] = (float)acc;
    }
}

/* ---- matmul ----------------------------------------------------------- */

/* The batch part (all but the last two dims) of a shape. */
static Shape batch_of(const Shape *s) {
  Shape b = *s;
  b.rank = s->rank - 2;
  return b;
}

typedef struct {
  int64_t m, k, n;        /* op(a) is [m, k], op(b) is [k, n] */
  int64_t nbatch;         /* output batch elements */
  Shape by;               /* output batch shape */
  int64_t sta[MAX_RANK], stb[MAX_RANK]; /* batch strides, in matrices */
} MatGeom;

static MatGeom mat_geom(const Shape *sa, bool ta, const Shape *sb, bool tb,
                        const Shape *sy) {
  MatGeom g;
  g.m = sa->dim[sa->rank - (ta ? 1 : 2)];
  g.k = sa->dim[sa->rank - (ta ? 2 : 1)];
  g.n = sb->dim[sb->rank - (tb ? 2 : 1)];
  Shape ba = batch_of(sa), bb = batch_of(sb);
  g.by = batch_of(sy);
  g.nbatch = numel_of(&g.by);
  bcast_strides(&ba, &g.by, g.sta);
  bcast_strides(&bb, &g.by, g.stb);
  return g;
}

/* Storage index of op(a)[i, t] within one matrix, and of op(b)[t, j]. */
#define A_AT(i, t) (ta ? (t) * G.m + (i) : (i) * G.k + (t))
#define B_AT(t, j) (tb ? (j) * G.k + (t) : (t) * G.n + (j))

void cpu_matmul_fwd(const Shape *sa, const float *a, bool ta, const Shape *sb,
                    const float *b, bool tb, const Shape *sy, float *y) {
  MatGeom G = mat_geom(sa, ta, sb, tb, sy);
  for (int64_t q = 0; q < G.nbatch; q++) {
    const float *A = a + offset_of(&G.by, G.sta, q) * G.m * G.k;
    const float *B = b + offset_of(&G.by, G.stb, q) * G.k * G.n;
    float *Y = y + q * G.m * G.n;
    for (int64_t i = 0; i < G.m; i++)
      for (int64_t j = 0; j < G.n; j++) {
        double acc = 0;
        for (int64_t t = 0; t < G.k; t++)
          acc += (double)A[A_AT(i, t)] * B[B_AT(t, j)];
        Y[i * G.n + j] = (float)acc;
      }
  }
}

void cpu_matmul_bwd(const Shape *sa, const float *a, bool ta, const Shape *sb,
                    const float *b, bool tb, const Shape *sy, const float *dy,
                    float *da, float *db) {
  MatGeom G = mat_geom(sa, ta, sb, tb, sy);
  int64_t na = numel_of(sa), nb = numel_of(sb);
  double *ga = da ? dzalloc(na) : NULL, *gb = db ? dzalloc(nb) : NULL;
  for (int64_t q = 0; q < G.nbatch; q++) {
    int64_t oa = offset_of(&G.by, G.sta, q) * G.m * G.k;
    int64_t ob = offset_of(&G.by, G.stb, q) * G.k * G.n;
    const float *A = a + oa, *B = b + ob, *DY = dy + q * G.m * G.n;
    if (ga)  /* d op(a)[i, t] = sum_j dy[i, j] op(b)[t, j] */
      for (int64_t i = 0; i < G.m; i++)
        for (int64_t t = 0; t < G.k; t++) {
          double acc = 0;
          for (int64_t j = 0; j < G.n; j++)
            acc += (double)DY[i * G.n + j] * B[B_AT(t, j)];
          ga[oa + A_AT(i, t)] += acc;
        }
    if (gb)  /* d op(b)[t, j] = sum_i op(a)[i, t] dy[i, j] */
      for (int64_t t = 0; t < G.k; t++)
        for (int64_t j = 0; j < G.n; j++) {
          double acc = 0;
          for (int64_t i = 0; i < G.m; i++)
            acc += (double)A[A_AT(i, t)] * DY[i * G.n + j];
          gb[ob + B_AT(t, j)] += acc;
        }
  }
  dstore(da, ga, na);
  dstore(db, gb, nb);
  free(ga);
  free(gb);
}

#undef A_AT
#undef B_AT

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
  double *acc = dzalloc(ny);
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
  double *gx = dzalloc(nx), *gw = dzalloc(nw);
  CONV_LOOP(p, {
    gx[xi] += (double)dy[yi] * w[wi];
    gw[wi] += (double)dy[yi] * x[xi];
  });
  dstore(dx, gx, nx);
  dstore(dw, gw, nw);
  free(gx);
  free(gw);
  if (db) {
    double *gb = dzalloc(p->o);
    for (int64_t i = 0; i < ny; i++) gb[(i / hw) % p->o] += dy[i];
    dstore(db, gb, p->o);
    free(gb);
  }
}

#undef CONV_LOOP

/* ---- pooling ---------------------------------------------------------- */

void cpu_pool_out(CpuPool *p) {
  p->oh = (p->h + 2 * p->pad - p->k) / p->stride + 1;
  p->ow = (p->w + 2 * p->pad - p->k) / p->stride + 1;
}

void cpu_maxpool_fwd(const CpuPool *p, const float *x, float *y) {
  for (int64_t q = 0; q < p->nc; q++)
    for (int64_t i = 0; i < p->oh; i++)
      for (int64_t j = 0; j < p->ow; j++) {
        float m = -INFINITY;  /* the padding */
        for (int64_t u = 0; u < p->k; u++)
          for (int64_t v = 0; v < p->k; v++) {
            int64_t h = i * p->stride - p->pad + u;
            int64_t w = j * p->stride - p->pad + v;
            if (h < 0 || h >= p->h || w < 0 || w >= p->w) continue;
            float t = x[(q * p->h + h) * p->w + w];
            if (t > m) m = t;
          }
        y[(q * p->oh + i) * p->ow + j] = m;
      }
}

void cpu_maxpool_bwd(const CpuPool *p, const float *x, const float *y,
                     const float *dy, float *dx) {
  int64_t nx = p->nc * p->h * p->w;
  double *gx = dzalloc(nx);
  for (int64_t q = 0; q < p->nc; q++)
    for (int64_t i = 0; i < p->oh; i++)
      for (int64_t j = 0; j < p->ow; j++) {
        int64_t yi = (q * p->oh + i) * p->ow + j;
        for (int64_t u = 0; u < p->k; u++)
          for (int64_t v = 0; v < p->k; v++) {
            int64_t h = i * p->stride - p->pad + u;
            int64_t w = j * p->stride - p->pad + v;
            if (h < 0 || h >= p->h || w < 0 || w >= p->w) continue;
            int64_t xi = (q * p->h + h) * p->w + w;
            if (x[xi] == y[yi]) {  /* the first maximum takes it all */
              gx[xi] += dy[yi];
              goto next;
            }
          }
      next:;
      }
  dstore(dx, gx, nx);
  free(gx);
}

void cpu_avgpool_fwd(const CpuPool *p, const float *x, float *y) {
  for (int64_t q = 0; q < p->nc; q++)
    for (int64_t i = 0; i < p->oh; i++)
      for (int64_t j = 0; j < p->ow; j++) {
        double acc = 0;
        for (int64_t u = 0; u < p->k; u++)
          for (int64_t v = 0; v < p->k; v++) {
            int64_t h = i * p->stride - p->pad + u;
            int64_t w = j * p->stride - p->pad + v;
            if (h < 0 || h >= p->h || w < 0 || w >= p->w) continue;
            acc += x[(q * p->h + h) * p->w + w];
          }
        y[(q * p->oh + i) * p->ow + j] = (float)(acc / (double)(p->k * p->k));
      }
}

void cpu_avgpool_bwd(const CpuPool *p, const float *dy, float *dx) {
  int64_t nx = p->nc * p->h * p->w;
  double *gx = dzalloc(nx);
  for (int64_t q = 0; q < p->nc; q++)
    for (int64_t i = 0; i < p->oh; i++)
      for (int64_t j = 0; j < p->ow; j++) {
        double g = dy[(q * p->oh + i) * p->ow + j] / (double)(p->k * p->k);
        for (int64_t u = 0; u < p->k; u++)
          for (int64_t v = 0; v < p->k; v++) {
            int64_t h = i * p->stride - p->pad + u;
            int64_t w = j * p->stride - p->pad + v;
            if (h < 0 || h >= p->h || w < 0 || w >= p->w) continue;
            gx[(q * p->h + h) * p->w + w] += g;
          }
      }
  dstore(dx, gx, nx);
  free(gx);
}

void cpu_gap_fwd(const float *x, float *y, int64_t nc, int64_t hw) {
  for (int64_t q = 0; q < nc; q++) {
    double acc = 0;
    for (int64_t i = 0; i < hw; i++) acc += x[q * hw + i];
    y[q] = (float)(acc / (double)hw);
  }
}

void cpu_gap_bwd(const float *dy, float *dx, int64_t nc, int64_t hw) {
  for (int64_t q = 0; q < nc; q++)
    for (int64_t i = 0; i < hw; i++)
      dx[q * hw + i] = (float)((double)dy[q] / (double)hw);
}

/* ---- normalisation ---------------------------------------------------- */

int64_t cpu_norm_nstats(const CpuNorm *p) {
  return p->kind == CPU_NORM_BATCH ? p->c : p->n * p->groups;
}

/* Statistic set of element (ni, ci). */
static int64_t norm_stat(const CpuNorm *p, int64_t ni, int64_t ci) {
  if (p->kind == CPU_NORM_BATCH) return ci;
  return ni * p->groups + ci / (p->c / p->groups);
}

void cpu_norm_fwd(const CpuNorm *p, const float *x, const float *w,
                  const float *b, float *y, float *mean, float *rstd,
                  float *run_mean, float *run_var, bool use_running) {
  int64_t ns = cpu_norm_nstats(p), total = p->n * p->c * p->s;
  int64_t cnt = total / ns;  /* M: elements per statistic set */
  float *mu = malloc((size_t)ns * sizeof *mu);
  float *rs = malloc((size_t)ns * sizeof *rs);
  if (!mu || !rs) {
    fprintf(stderr, "mdlc: out of host memory\n");
    exit(3);
  }
  if (use_running) {
    for (int64_t q = 0; q < ns; q++) {
      mu[q] = run_mean[q];
      rs[q] = (float)(1.0 / sqrt((double)run_var[q] + p->eps));
    }
  } else {
    double *sum = dzalloc(ns), *sq = dzalloc(ns);
    for (int64_t e = 0; e < total; e++) {
      int64_t ni = e / (p->c * p->s), ci = (e / p->s) % p->c;
      sum[norm_stat(p, ni, ci)] += x[e];
    }
    for (int64_t q = 0; q < ns; q++) sum[q] /= (double)cnt;
    for (int64_t e = 0; e < total; e++) {
      int64_t ni = e / (p->c * p->s), ci = (e / p->s) % p->c;
      int64_t q = norm_stat(p, ni, ci);
      double d = x[e] - sum[q];
      sq[q] += d * d;
    }
    for (int64_t q = 0; q < ns; q++) {
      double var = sq[q] / (double)cnt;
      mu[q] = (float)sum[q];
      rs[q] = (float)(1.0 / sqrt(var + p->eps));
      if (run_mean) {
        double unb = cnt > 1 ? var * (double)cnt / (double)(cnt - 1) : var;
        run_mean[q] = 0.9f * run_mean[q] + 0.1f * mu[q];
        run_var[q] = 0.9f * run_var[q] + 0.1f * (float)unb;
      }
    }
    free(sum);
    free(sq);
  }
  for (int64_t e = 0; e < total; e++) {
    int64_t ni = e / (p->c * p->s), ci = (e / p->s) % p->c;
    int64_t q = norm_stat(p, ni, ci);
    float xh = (x[e] - mu[q]) * rs[q];
    y[e] = xh * (w ? w[ci] : 1.0f) + (b ? b[ci] : 0.0f);
  }
  if (mean) memcpy(mean, mu, (size_t)ns * sizeof *mu);
  if (rstd) memcpy(rstd, rs, (size_t)ns * sizeof *rs);
  free(mu);
  free(rs);
}

void cpu_norm_bwd(const CpuNorm *p, const float *x, const float *w,
                  const float *mean, const float *rstd, const float *dy,
                  float *dx, float *dw, float *db) {
  int64_t ns = cpu_norm_nstats(p), total = p->n * p->c * p->s;
  double cnt = (double)(total / ns);
  double *sg = dzalloc(ns), *sgx = dzalloc(ns);
  double *gw = dzalloc(p->c), *gb = dzalloc(p->c);
  for (int64_t e = 0; e < total; e++) {
    int64_t ni = e / (p->c * p->s), ci = (e / p->s) % p->c;
    int64_t q = norm_stat(p, ni, ci);
    double xh = ((double)x[e] - mean[q]) * rstd[q];
    double g = (double)dy[e] * (w ? w[ci] : 1.0f);
    sg[q] += g;
    sgx[q] += g * xh;
    gw[ci] += (double)dy[e] * xh;
    gb[ci] += dy[e];
  }
  if (dx)
    for (int64_t e = 0; e < total; e++) {
      int64_t ni = e / (p->c * p->s), ci = (e / p->s) % p->c;
      int64_t q = norm_stat(p, ni, ci);
      double xh = ((double)x[e] - mean[q]) * rstd[q];
      double g = (double)dy[e] * (w ? w[ci] : 1.0f);
      dx[e] = (float)(rstd[q] * (g - sg[q] / cnt - xh * sgx[q] / cnt));
    }
  dstore(dw, gw, p->c);
  dstore(db, gb, p->c);
  free(sg);
  free(sgx);
  free(gw);
  free(gb);
}

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
  int64_t sta[MAX_RANK], stb[MAX_RANK], n = numel_of(sy);
  bcast_strides(sa, sy, sta);
  bcast_strides(sb, sy, stb);
  for (int64_t j = 0; j < n; j++) {
    float u = a[offset_of(sy, sta, j)], v = b[offset_of(sy, stb, j)];
    y[j] = op == OP_MUL ? u * v : u + v;
  }
}

void cpu_binary_bwd(Op op, const Shape *sa, const float *a, const Shape *sb,
                    const float *b, const Shape *sy, const float *dy,
                    float *da, float *db) {
  int64_t sta[MAX_RANK], stb[MAX_RANK], n = numel_of(sy);
  int64_t na = numel_of(sa), nb = numel_of(sb);
  bcast_strides(sa, sy, sta);
  bcast_strides(sb, sy, stb);
  double *ga = dzalloc(na), *gb = dzalloc(nb);
  for (int64_t j = 0; j < n; j++) {
    int64_t ia = offset_of(sy, sta, j), ib = offset_of(sy, stb, j);
    if (op == OP_MUL) {
      if (da) ga[ia] += (double)dy[j] * b[ib];
      if (db) gb[ib] += (double)dy[j] * a[ia];
    } else {
      ga[ia] += dy[j];
      gb[ib] += dy[j];
    }
  }
  dstore(da, ga, na);
  dstore(db, gb, nb);
  free(ga);
  free(gb);
}

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

/* ---- embedding -------------------------------------------------------- */

int64_t cpu_embedding_fwd(const int64_t *ids, int64_t n, const float *w,
                          int64_t vocab, int64_t dim, float *y) {
  for (int64_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= vocab) return i;
    memcpy(y + i * dim, w + ids[i] * dim, (size_t)dim * sizeof *y);
  }
  return -1;
}

void cpu_embedding_bwd(const int64_t *ids, int64_t n, const float *dy,
                       int64_t vocab, int64_t dim, float *dw) {
  double *g = dzalloc(vocab * dim);
  for (int64_t i = 0; i < n; i++)
    for (int64_t d = 0; d < dim; d++) g[ids[i] * dim + d] += dy[i * dim + d];
  dstore(dw, g, vocab * dim);
  free(g);
}

/* ---- shape ops -------------------------------------------------------- */

void cpu_transpose(const Shape *sx, int a, int b, const float *x, float *y) {
  Shape sy = *sx;
  sy.dim[a] = sx->dim[b];
  sy.dim[b] = sx->dim[a];
  int64_t cst[MAX_RANK], st[MAX_RANK], acc = 1;
  for (int d = sx->rank - 1; d >= 0; d--) {
    cst[d] = acc;
    acc *= sx->dim[d];
  }
  /* y's index (.., i_a, .., i_b, ..) reads x at (.., i_b, .., i_a, ..) */
  memcpy(st, cst, sizeof st);
  st[a] = cst[b];
  st[b] = cst[a];
  int64_t n = numel_of(sx);
  for (int64_t j = 0; j < n; j++) y[j] = x[offset_of(&sy, st, j)];
}

/* outer = product of dims before axis, inner = after it. */
static void axis_split(const Shape *s, int axis, int64_t *outer,
                       int64_t *inner) {
  *outer = *inner = 1;
  for (int d = 0; d < axis; d++) *outer *= s->dim[d];
  for (int d = axis + 1; d < s->rank; d++) *inner *= s->dim[d];
}

void cpu_concat(int n, const Shape *sx, const float *const *x, int axis,
                float *y) {
  int64_t outer, inner, total = 0;
  axis_split(&sx[0], axis, &outer, &inner);
  for (int i = 0; i < n; i++) total += sx[i].dim[axis];
  for (int64_t o = 0; o < outer; o++) {
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
      int64_t len = sx[i].dim[axis] * inner;
      memcpy(y + (o * total + at) * inner, x[i] + o * len,
             (size_t)len * sizeof *y);
      at += sx[i].dim[axis];
    }
  }
}

void cpu_unconcat(int n, const Shape *sx, const float *y, int axis,
                  float *const *x) {
  int64_t outer, inner, total = 0;
  axis_split(&sx[0], axis, &outer, &inner);
  for (int i = 0; i < n; i++) total += sx[i].dim[axis];
  for (int64_t o = 0; o < outer; o++) {
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
      int64_t len = sx[i].dim[axis] * inner;
      if (x[i])
        memcpy(x[i] + o * len, y + (o * total + at) * inner,
               (size_t)len * sizeof *y);
      at += sx[i].dim[axis];
    }
  }
}

/* ---- losses ----------------------------------------------------------- */

int64_t cpu_xent_fwd(const float *x, const int64_t *t, int64_t rows,
                     int64_t c, float *logprobs, float *loss) {
  double total = 0;
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * c;
    if (t[r] < 0 || t[r] >= c) return r;
    double m = -INFINITY, sum = 0;
    for (int64_t k = 0; k < c; k++)
      if (xr[k] > m) m = xr[k];
    for (int64_t k = 0; k < c; k++) sum += exp((double)xr[k] - m);
    double lse = m + log(sum);
    for (int64_t k = 0; k < c; k++) {
      float lp = (float)((double)xr[k] - lse);
      if (logprobs) logprobs[r * c + k] = lp;
      if (k == t[r]) total += lp;
    }
  }
  *loss = (float)(-total / (double)rows);
  return -1;
}

void cpu_xent_bwd(const float *logprobs, const int64_t *t, int64_t rows,
                  int64_t c, float dloss, float *dx) {
  double s = (double)dloss / (double)rows;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t k = 0; k < c; k++)
      dx[r * c + k] =
          (float)(s * (exp((double)logprobs[r * c + k]) - (k == t[r])));
}

void cpu_mse_fwd(const float *a, const float *b, int64_t n, float *loss) {
  double acc = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = (double)a[i] - b[i];
    acc += d * d;
  }
  *loss = (float)(acc / (double)n);
}

void cpu_mse_bwd(const float *a, const float *b, int64_t n, float dloss,
                 float *da, float *db) {
  for (int64_t i = 0; i < n; i++) {
    float g = (float)((double)dloss * 2.0 * ((double)a[i] - b[i]) / n);
    if (da) da[i] = g;
    if (db) db[i] = -g;
  }
}

/* ---- optimizers ------------------------------------------------------- */

double cpu_default_lr(Optimizer o) {
  (void)o;  /* torch >= 2.2: 1e-3 for SGD, SGD+momentum, Adam and AdamW */
  return 1e-3;
}

void cpu_optim_step(const CpuOptim *o, float *p, const float *g, float *s0,
                    float *s1, int64_t n) {
  float lr = (float)o->lr;
  switch (o->kind) {
  case OPTIM_SGD:
    for (int64_t i = 0; i < n; i++) p[i] = p[i] - lr * g[i];
    break;
  case OPTIM_MOMENTUM:
    for (int64_t i = 0; i < n; i++) {
      s0[i] = 0.9f * s0[i] + g[i];
      p[i] = p[i] - lr * s0[i];
    }
    break;
  case OPTIM_ADAM:
  case OPTIM_ADAMW: {
    double bc1 = 1.0 - pow(0.9, (double)o->t);
    double bc2 = 1.0 - pow(0.999, (double)o->t);
    float step = (float)(o->lr / bc1), bc2s = (float)sqrt(bc2);
    float decay = (float)(1.0 - o->lr * 0.01);
    for (int64_t i = 0; i < n; i++) {
      if (o->kind == OPTIM_ADAMW) p[i] = p[i] * decay;
      s0[i] = 0.9f * s0[i] + 0.1f * g[i];
      s1[i] = 0.999f * s1[i] + 0.001f * g[i] * g[i];
      float denom = sqrtf(s1[i]) / bc2s + 1e-8f;
      p[i] = p[i] - step * s0[i] / denom;
    }
    break;
  }
  default: ICE("cpu_optim_step: optimizer %d", (int)o->kind);
  }
}
