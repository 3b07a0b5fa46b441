/* tests/unit/cpu_gradcheck.c: finite-difference check of the backward of
 * every CPU kernel (backend/cpu/), every option included.
 *
 * For each case, L(x) = sum_j r_j y_j over the real outputs with fixed
 * random weights r (accumulated in double). The analytic gradient is the
 * kernel's backward at dy = r. The numeric gradient is a central difference
 * taken twice, with h = 1/64 and h = 1/128 (exact in f32), combined by
 * Richardson extrapolation (4 D(h/2) - D(h)) / 3, whose truncation error is
 * O(h^4); the f32 rounding noise of L is then about 1e-5 of sum |r y|.
 * Tolerance: |analytic - numeric| <= 2e-3 + 1e-2 |numeric| per element.
 * Non-smooth ops get inputs away from their kinks (|x| >= 0.1 for relu,
 * distinct values at least 0.05 apart for maxpool). Prints the worst
 * element of each case; exits 1 if any case fails.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdlc.h"

enum { MAXT = 6 };

typedef struct Case Case;
struct Case {
  const char *name;
  int nin;                  /* float inputs */
  int64_t insz[MAXT];       /* their element counts */
  bool want[MAXT];          /* gradient checked */
  int nout, nreal;          /* outputs (real first, then saved extras) */
  int64_t outsz[MAXT];
  void (*fwd)(const Case *c, float *const *in, float *const *out);
  void (*bwd)(const Case *c, float *const *in, float *const *out,
              float *const *dy, float *const *din);
  int init;                 /* 0 uniform, 1 |x| >= 0.1, 2 distinct */
  /* per-op parameters */
  Shape sa, sb, sy;
  bool ta, tb, flag;
  CpuConv conv;
  CpuPool pool;
  CpuNorm norm;
  Op op;
  const CpuAct *act;        /* activations: which one */
  bool act_saves_out;       /* ... and whether its backward reads y */
  int ax, bx;
  int64_t m, k, n;
  int64_t ids[64];
  double p;
  Shape parts[3];
};

static uint64_t rng = 88172645463325252ull;
static double urand(void) { /* xorshift64, in [0, 1) */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (double)(rng >> 11) * (1.0 / 9007199254740992.0);
}

static float *falloc(int64_t n) {
  float *p = calloc((size_t)(n ? n : 1), sizeof *p);
  if (!p) abort();
  return p;
}

static Shape shp(int rank, ...) {
  Shape s = {.rank = rank};
  va_list ap;
  va_start(ap, rank);
  for (int i = 0; i < rank; i++) s.dim[i] = va_arg(ap, int64_t);
  va_end(ap);
  return s;
}
#define S(...) shp(PP_NARG(__VA_ARGS__), __VA_ARGS__)
#define PP_NARG(...) PP_NARG_(__VA_ARGS__, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define PP_NARG_(_1, _2, _3, _4, _5, _6, _7, _8, N, ...) N
#define I(x) ((int64_t)(x))

static int64_t nel(Shape s) {
  int64_t n = 1;
  for (int i = 0; i < s.rank; i++) n *= s.dim[i];
  return n;
}

/* L = sum r y over the real outputs. */
static double functional(const Case *c, float *const *in, float **out,
                         float *const *r) {
  c->fwd(c, in, out);
  double L = 0;
  for (int o = 0; o < c->nreal; o++)
    for (int64_t j = 0; j < c->outsz[o]; j++) L += (double)r[o][j] * out[o][j];
  return L;
}

static double central(const Case *c, float **in, float **out, float **r,
                      int t, int64_t i, float h) {
  float x0 = in[t][i];
  in[t][i] = x0 + h;
  double lp = functional(c, in, out, r);
  in[t][i] = x0 - h;
  double lm = functional(c, in, out, r);
  in[t][i] = x0;
  return (lp - lm) / (2.0 * (double)h);
}

static int run_case(Case *c) {
  float *in[MAXT] = {0}, *out[MAXT] = {0}, *r[MAXT] = {0}, *din[MAXT] = {0};
  for (int t = 0; t < c->nin; t++) {
    in[t] = falloc(c->insz[t]);
    for (int64_t i = 0; i < c->insz[t]; i++) {
      double u = 2 * urand() - 1;
      if (c->init == 1) u = (u < 0 ? -0.1 : 0.1) + 0.9 * u;
      in[t][i] = (float)u;
    }
    if (c->init == 2) { /* a shuffled ladder: distinct, 0.05 apart */
      for (int64_t i = 0; i < c->insz[t]; i++)
        in[t][i] = (float)(0.05 * (double)(i - c->insz[t] / 2));
      for (int64_t i = c->insz[t] - 1; i > 0; i--) {
        int64_t j = (int64_t)(urand() * (double)(i + 1));
        float s = in[t][i];
        in[t][i] = in[t][j];
        in[t][j] = s;
      }
    }
    din[t] = c->want[t] ? falloc(c->insz[t]) : NULL;
  }
  for (int o = 0; o < c->nout; o++) {
    out[o] = falloc(c->outsz[o]);
    r[o] = falloc(c->outsz[o]);
    for (int64_t j = 0; j < c->outsz[o]; j++) r[o][j] = (float)(2 * urand() - 1);
  }
  c->fwd(c, in, out);
  float *dy[MAXT] = {0};
  for (int o = 0; o < c->nreal; o++) dy[o] = r[o];
  c->bwd(c, in, out, dy, din);

  double worst = -1, wa = 0, wn = 0;
  int wt = -1;
  int64_t wi = -1;
  int bad = 0;
  for (int t = 0; t < c->nin; t++) {
    if (!c->want[t]) continue;
    for (int64_t i = 0; i < c->insz[t]; i++) {
      double d1 = central(c, in, out, r, t, i, 1.0f / 64);
      double d2 = central(c, in, out, r, t, i, 1.0f / 128);
      double num = (4 * d2 - d1) / 3;
      double err = fabs(din[t][i] - num);
      double ratio = err / (2e-3 + 1e-2 * fabs(num));
      if (ratio > worst) {
        worst = ratio;
        wa = din[t][i];
        wn = num;
        wt = t;
        wi = i;
      }
      if (ratio > 1) bad = 1;
    }
  }
  printf("%s %-28s worst: input %d [%lld] analytic %+.6f numeric %+.6f "
         "(%.2f of tolerance)\n",
         bad ? "FAIL" : "ok  ", c->name, wt, (long long)wi, wa, wn, worst);
  for (int t = 0; t < MAXT; t++) {
    free(in[t]);
    free(din[t]);
    free(out[t]);
    free(r[t]);
  }
  return bad;
}

/* ---- the cases -------------------------------------------------------- */

static void linear_f(const Case *c, float *const *in, float *const *out) {
  cpu_linear_fwd(in[0], in[1], c->flag ? in[2] : NULL, out[0], c->m, c->k,
                 c->n);
}
static void linear_b(const Case *c, float *const *in, float *const *out,
                     float *const *dy, float *const *din) {
  cpu_linear_bwd(in[0], in[1], dy[0], din[0], din[1], c->flag ? din[2] : NULL,
                 c->m, c->k, c->n);
}

static void matmul_f(const Case *c, float *const *in, float *const *out) {
  cpu_matmul_fwd(&c->sa, in[0], c->ta, &c->sb, in[1], c->tb, &c->sy, out[0]);
}
static void matmul_b(const Case *c, float *const *in, float *const *out,
                     float *const *dy, float *const *din) {
  cpu_matmul_bwd(&c->sa, in[0], c->ta, &c->sb, in[1], c->tb, &c->sy, dy[0],
                 din[0], din[1]);
}

static void conv_f(const Case *c, float *const *in, float *const *out) {
  cpu_conv2d_fwd(&c->conv, in[0], in[1], c->flag ? in[2] : NULL, out[0]);
}
static void conv_b(const Case *c, float *const *in, float *const *out,
                   float *const *dy, float *const *din) {
  cpu_conv2d_bwd(&c->conv, in[0], in[1], dy[0], din[0], din[1],
                 c->flag ? din[2] : NULL);
}

static void maxp_f(const Case *c, float *const *in, float *const *out) {
  cpu_maxpool_fwd(&c->pool, in[0], out[0]);
}
static void maxp_b(const Case *c, float *const *in, float *const *out,
                   float *const *dy, float *const *din) {
  cpu_maxpool_bwd(&c->pool, in[0], out[0], dy[0], din[0]);
}
static void avgp_f(const Case *c, float *const *in, float *const *out) {
  cpu_avgpool_fwd(&c->pool, in[0], out[0]);
}
static void avgp_b(const Case *c, float *const *in, float *const *out,
                   float *const *dy, float *const *din) {
  cpu_avgpool_bwd(&c->pool, dy[0], din[0]);
}
static void gap_f(const Case *c, float *const *in, float *const *out) {
  cpu_gap_fwd(in[0], out[0], c->m, c->n);
}
static void gap_b(const Case *c, float *const *in, float *const *out,
                  float *const *dy, float *const *din) {
  cpu_gap_bwd(dy[0], din[0], c->m, c->n);
}

/* Norm inputs: x, then weight and bias when flag (affine). Outputs: y,
 * mean, rstd. */
static void norm_f(const Case *c, float *const *in, float *const *out) {
  cpu_norm_fwd(&c->norm, in[0], c->flag ? in[1] : NULL,
               c->flag ? in[2] : NULL, out[0], out[1], out[2], NULL, NULL,
               false);
}
static void norm_b(const Case *c, float *const *in, float *const *out,
                   float *const *dy, float *const *din) {
  cpu_norm_bwd(&c->norm, in[0], c->flag ? in[1] : NULL, out[1], out[2], dy[0],
               din[0], c->flag ? din[1] : NULL, c->flag ? din[2] : NULL);
}

static void act_f(const Case *c, float *const *in, float *const *out) {
  cpu_act_fwd(c->act, in[0], out[0], c->insz[0]);
}
static void act_b(const Case *c, float *const *in, float *const *out,
                  float *const *dy, float *const *din) {
  cpu_act_bwd(c->act, c->act_saves_out ? out[0] : in[0], dy[0], din[0],
              c->insz[0]);
}

static void drop_f(const Case *c, float *const *in, float *const *out) {
  uint8_t mask[256];
  cpu_dropout_mask(7, 3, 2, c->p, mask, c->insz[0]);
  cpu_dropout_apply(in[0], mask, c->p, out[0], c->insz[0]);
}
static void drop_b(const Case *c, float *const *in, float *const *out,
                   float *const *dy, float *const *din) {
  uint8_t mask[256];
  cpu_dropout_mask(7, 3, 2, c->p, mask, c->insz[0]);
  cpu_dropout_apply(dy[0], mask, c->p, din[0], c->insz[0]);
}

static void bin_f(const Case *c, float *const *in, float *const *out) {
  cpu_binary_fwd(c->op, &c->sa, in[0], &c->sb, in[1], &c->sy, out[0]);
}
static void bin_b(const Case *c, float *const *in, float *const *out,
                  float *const *dy, float *const *din) {
  cpu_binary_bwd(c->op, &c->sa, in[0], &c->sb, in[1], &c->sy, dy[0], din[0],
                 din[1]);
}

static void smax_f(const Case *c, float *const *in, float *const *out) {
  cpu_softmax_fwd(in[0], out[0], c->m, c->n, c->flag, c->k);
}
static void smax_b(const Case *c, float *const *in, float *const *out,
                   float *const *dy, float *const *din) {
  cpu_softmax_bwd(out[0], dy[0], din[0], c->m, c->n);
}

static void tr_f(const Case *c, float *const *in, float *const *out) {
  cpu_transpose(&c->sa, c->ax, c->bx, in[0], out[0]);
}
static void tr_b(const Case *c, float *const *in, float *const *out,
                 float *const *dy, float *const *din) {
  cpu_transpose(&c->sy, c->ax, c->bx, dy[0], din[0]);
}

static void cat_f(const Case *c, float *const *in, float *const *out) {
  const float *x[3] = {in[0], in[1], in[2]};
  cpu_concat(3, c->parts, x, c->ax, out[0]);
}
static void cat_b(const Case *c, float *const *in, float *const *out,
                  float *const *dy, float *const *din) {
  cpu_unconcat(3, c->parts, dy[0], c->ax, din);
}
/* split: one input, three real outputs (the parts). */
static void split_f(const Case *c, float *const *in, float *const *out) {
  cpu_unconcat(3, c->parts, in[0], c->ax, out);
}
static void split_b(const Case *c, float *const *in, float *const *out,
                    float *const *dy, float *const *din) {
  const float *d[3] = {dy[0], dy[1], dy[2]};
  cpu_concat(3, c->parts, d, c->ax, din[0]);
}

static void xent_f(const Case *c, float *const *in, float *const *out) {
  cpu_xent_fwd(in[0], c->ids, c->m, c->n, out[1], out[0]);
}
static void xent_b(const Case *c, float *const *in, float *const *out,
                   float *const *dy, float *const *din) {
  cpu_xent_bwd(out[1], c->ids, c->m, c->n, dy[0][0], din[0]);
}
static void mse_f(const Case *c, float *const *in, float *const *out) {
  cpu_mse_fwd(in[0], in[1], c->insz[0], out[0]);
}
static void mse_b(const Case *c, float *const *in, float *const *out,
                  float *const *dy, float *const *din) {
  cpu_mse_bwd(in[0], in[1], c->insz[0], dy[0][0], din[0], din[1]);
}

static void emb_f(const Case *c, float *const *in, float *const *out) {
  if (cpu_embedding_fwd(c->ids, c->m, in[0], c->k, c->n, out[0]) >= 0) abort();
}
static void emb_b(const Case *c, float *const *in, float *const *out,
                  float *const *dy, float *const *din) {
  cpu_embedding_bwd(c->ids, c->m, dy[0], c->k, c->n, din[0]);
}

static int nfail;

static void check(Case c) { nfail += run_case(&c); }

static void linear_case(const char *name, bool bias) {
  Case c = {.name = name, .fwd = linear_f, .bwd = linear_b, .m = 3, .k = 4,
            .n = 5, .flag = bias, .nin = bias ? 3 : 2, .nout = 1, .nreal = 1};
  c.insz[0] = 12, c.insz[1] = 20, c.insz[2] = 5;
  c.want[0] = c.want[1] = c.want[2] = true;
  c.outsz[0] = 15;
  check(c);
}

static void matmul_case(const char *name, Shape sa, bool ta, Shape sb,
                        bool tb, Shape sy) {
  Case c = {.name = name, .fwd = matmul_f, .bwd = matmul_b, .sa = sa,
            .sb = sb, .sy = sy, .ta = ta, .tb = tb, .nin = 2, .nout = 1,
            .nreal = 1};
  c.insz[0] = nel(sa), c.insz[1] = nel(sb), c.outsz[0] = nel(sy);
  c.want[0] = c.want[1] = true;
  check(c);
}

static void conv_case(const char *name, int64_t n, int64_t ch, int64_t h,
                      int64_t w, int64_t o, int64_t k, int64_t s, int64_t p,
                      int64_t d, int64_t g, bool bias) {
  Case c = {.name = name, .fwd = conv_f, .bwd = conv_b, .flag = bias,
            .nin = bias ? 3 : 2, .nout = 1, .nreal = 1};
  c.conv = (CpuConv){.n = n, .c = ch, .h = h, .w = w, .o = o, .k = k,
                     .stride = s, .pad = p, .dil = d, .groups = g};
  cpu_conv_out(&c.conv);
  c.insz[0] = n * ch * h * w, c.insz[1] = o * (ch / g) * k * k, c.insz[2] = o;
  c.want[0] = c.want[1] = c.want[2] = true;
  c.outsz[0] = n * o * c.conv.oh * c.conv.ow;
  check(c);
}

static void pool_case(const char *name, bool max, int64_t nc, int64_t h,
                      int64_t w, int64_t k, int64_t s, int64_t p) {
  Case c = {.name = name, .fwd = max ? maxp_f : avgp_f,
            .bwd = max ? maxp_b : avgp_b, .nin = 1, .nout = 1, .nreal = 1,
            .init = max ? 2 : 0};
  c.pool = (CpuPool){.nc = nc, .h = h, .w = w, .k = k, .stride = s, .pad = p};
  cpu_pool_out(&c.pool);
  c.insz[0] = nc * h * w, c.want[0] = true;
  c.outsz[0] = nc * c.pool.oh * c.pool.ow;
  check(c);
}

static void norm_case(const char *name, CpuNormKind kind, int64_t n,
                      int64_t ch, int64_t s, int64_t groups, bool affine) {
  Case c = {.name = name, .fwd = norm_f, .bwd = norm_b, .flag = affine,
            .nin = affine ? 3 : 1, .nout = 3, .nreal = 1};
  c.norm = (CpuNorm){.kind = kind, .n = n, .c = ch, .s = s, .groups = groups,
                     .eps = 1e-5f};
  c.insz[0] = n * ch * s, c.insz[1] = c.insz[2] = ch;
  c.want[0] = c.want[1] = c.want[2] = true;
  c.outsz[0] = n * ch * s;
  c.outsz[1] = c.outsz[2] = cpu_norm_nstats(&c.norm);
  check(c);
}

static void act_case(const char *name, Op op, const CpuAct *act) {
  Case c = {.name = name, .fwd = act_f, .bwd = act_b, .op = op, .act = act,
            .act_saves_out = (op_info[op].save & SV_OUT) != 0, .nin = 1,
            .nout = 1, .nreal = 1, .init = op == OP_RELU};
  c.insz[0] = c.outsz[0] = 24, c.want[0] = true;
  check(c);
}

static void bin_case(const char *name, Op op, Shape sa, Shape sb, Shape sy) {
  Case c = {.name = name, .fwd = bin_f, .bwd = bin_b, .op = op, .sa = sa,
            .sb = sb, .sy = sy, .nin = 2, .nout = 1, .nreal = 1};
  c.insz[0] = nel(sa), c.insz[1] = nel(sb), c.outsz[0] = nel(sy);
  c.want[0] = c.want[1] = true;
  check(c);
}

static void rms_f(const Case *c, float *const *in, float *const *out) {
  cpu_rmsnorm_fwd(in[0], in[1], out[0], out[1], c->m, c->n, 1e-6f);
}
static void rms_b(const Case *c, float *const *in, float *const *out,
                  float *const *dy, float *const *din) {
  cpu_rmsnorm_bwd(in[0], in[1], out[1], dy[0], din[0], din[1], c->m, c->n);
}
static void rmsnorm_case(const char *name, int64_t rows, int64_t d) {
  Case c = {.name = name, .fwd = rms_f, .bwd = rms_b, .m = rows, .n = d,
            .nin = 2, .nout = 2, .nreal = 1};
  c.insz[0] = c.outsz[0] = rows * d, c.insz[1] = d, c.outsz[1] = rows;
  c.want[0] = c.want[1] = true;
  check(c);
}

static void rope_f(const Case *c, float *const *in, float *const *out) {
  cpu_rope(&c->sa, in[0], out[0], c->p, false);
}
static void rope_b(const Case *c, float *const *in, float *const *out,
                   float *const *dy, float *const *din) {
  cpu_rope(&c->sa, dy[0], din[0], c->p, true);
}
static void rope_case(const char *name, Shape s, double base) {
  Case c = {.name = name, .fwd = rope_f, .bwd = rope_b, .sa = s, .p = base,
            .nin = 1, .nout = 1, .nreal = 1};
  c.insz[0] = c.outsz[0] = nel(s), c.want[0] = true;
  check(c);
}

static void red_f(const Case *c, float *const *in, float *const *out) {
  cpu_reduce_fwd(c->flag, &c->sa, c->ax, in[0], out[0]);
}
static void red_b(const Case *c, float *const *in, float *const *out,
                  float *const *dy, float *const *din) {
  cpu_reduce_bwd(c->flag, &c->sa, c->ax, dy[0], din[0]);
}
static void reduce_case(const char *name, bool mean, Shape s, int axis) {
  Case c = {.name = name, .fwd = red_f, .bwd = red_b, .flag = mean, .sa = s,
            .ax = axis, .nin = 1, .nout = 1, .nreal = 1};
  c.insz[0] = nel(s), c.outsz[0] = nel(s) / s.dim[axis], c.want[0] = true;
  check(c);
}

static void smax_case(const char *name, int64_t rows, int64_t cols,
                      bool causal, int64_t srows) {
  Case c = {.name = name, .fwd = smax_f, .bwd = smax_b, .m = rows, .n = cols,
            .flag = causal, .k = srows, .nin = 1, .nout = 1, .nreal = 1};
  c.insz[0] = c.outsz[0] = rows * cols, c.want[0] = true;
  check(c);
}

int main(void) {
  linear_case("linear", true);
  linear_case("linear bias=false", false);

  matmul_case("matmul", S(I(2), I(3), I(4)), false, S(I(2), I(4), I(5)),
              false, S(I(2), I(3), I(5)));
  matmul_case("matmul transpose_a", S(I(2), I(4), I(3)), true,
              S(I(2), I(4), I(5)), false, S(I(2), I(3), I(5)));
  matmul_case("matmul transpose_b", S(I(2), I(3), I(4)), false,
              S(I(2), I(5), I(4)), true, S(I(2), I(3), I(5)));
  matmul_case("matmul ta tb", S(I(3), I(4)), true, S(I(5), I(3)), true,
              S(I(4), I(5)));
  matmul_case("matmul broadcast batch", S(I(2), I(1), I(3), I(4)), false,
              S(I(3), I(4), I(2)), false, S(I(2), I(3), I(3), I(2)));

  conv_case("conv2d k3", 2, 2, 5, 5, 3, 3, 1, 0, 1, 1, true);
  conv_case("conv2d stride2 pad1", 1, 2, 6, 5, 2, 3, 2, 1, 1, 1, true);
  conv_case("conv2d dilation2 pad2", 1, 1, 7, 6, 2, 3, 1, 2, 2, 1, true);
  conv_case("conv2d groups2 nobias", 2, 4, 4, 4, 6, 2, 1, 0, 1, 2, false);
  conv_case("conv2d depthwise s2", 1, 3, 5, 5, 3, 3, 2, 1, 1, 3, true);

  pool_case("maxpool2d k2", true, 3, 4, 4, 2, 2, 0);
  pool_case("maxpool2d k3 s2 p1", true, 2, 5, 6, 3, 2, 1);
  pool_case("maxpool2d k3 s1 overlap", true, 1, 5, 5, 3, 1, 1);
  pool_case("avgpool2d k2", false, 3, 4, 4, 2, 2, 0);
  pool_case("avgpool2d k3 s2 p1", false, 2, 5, 6, 3, 2, 1);
  {
    Case c = {.name = "global_avgpool", .fwd = gap_f, .bwd = gap_b, .m = 6,
              .n = 9, .nin = 1, .nout = 1, .nreal = 1};
    c.insz[0] = 54, c.outsz[0] = 6, c.want[0] = true;
    check(c);
  }

  norm_case("batchnorm [3,4,2x2]", CPU_NORM_BATCH, 3, 4, 4, 1, true);
  norm_case("batchnorm [5,3]", CPU_NORM_BATCH, 5, 3, 1, 1, true);
  norm_case("layernorm [6,5]", CPU_NORM_GROUP, 6, 5, 1, 1, true);
  norm_case("groupnorm G=3 [2,6,3]", CPU_NORM_GROUP, 2, 6, 3, 3, true);
  norm_case("instancenorm [2,3,4]", CPU_NORM_GROUP, 2, 3, 4, 3, true);
  norm_case("instancenorm affine=false", CPU_NORM_GROUP, 2, 3, 4, 3, false);

  rmsnorm_case("rmsnorm [4,6]", 4, 6);
  rmsnorm_case("rmsnorm [1,9]", 1, 9);
  rope_case("rope [2,5,8]", S(I(2), I(5), I(8)), 10000);
  rope_case("rope [3,4] base 7", S(I(3), I(4)), 7);
  reduce_case("mean last axis", true, S(I(3), I(4), I(5)), 2);
  reduce_case("mean middle axis", true, S(I(3), I(4), I(5)), 1);
  reduce_case("sum first axis", false, S(I(3), I(4), I(5)), 0);

  act_case("relu", OP_RELU, &cpu_relu);
  act_case("gelu", OP_GELU, &cpu_gelu);
  act_case("silu", OP_SILU, &cpu_silu);
  act_case("tanh", OP_TANH, &cpu_tanh);
  act_case("sigmoid", OP_SIGMOID, &cpu_sigmoid);
  act_case("exp", OP_EXP, &cpu_exp);
  act_case("softplus", OP_SOFTPLUS, &cpu_softplus);
  {
    Case c = {.name = "dropout p=0.3", .fwd = drop_f, .bwd = drop_b,
              .p = 0.3, .nin = 1, .nout = 1, .nreal = 1};
    c.insz[0] = c.outsz[0] = 40, c.want[0] = true;
    check(c);
  }

  bin_case("add broadcast", OP_ADD, S(I(2), I(3), I(4)), S(I(3), I(1)),
           S(I(2), I(3), I(4)));
  bin_case("add same shape", OP_ADD, S(I(3), I(4)), S(I(3), I(4)),
           S(I(3), I(4)));
  bin_case("mul broadcast both", OP_MUL, S(I(2), I(1), I(4)), S(I(3), I(1)),
           S(I(2), I(3), I(4)));
  bin_case("mul scalar-like", OP_MUL, S(I(3), I(4)), S(I(1)), S(I(3), I(4)));

  smax_case("softmax", 4, 6, false, 4);
  smax_case("softmax causal [2,5,5]", 10, 5, true, 5);

  {
    Case c = {.name = "transpose (0,2)", .fwd = tr_f, .bwd = tr_b,
              .sa = S(I(2), I(3), I(4)), .sy = S(I(4), I(3), I(2)), .ax = 0,
              .bx = 2, .nin = 1, .nout = 1, .nreal = 1};
    c.insz[0] = c.outsz[0] = 24, c.want[0] = true;
    check(c);
  }
  {
    Case c = {.name = "transpose (1,2) [2,3,4,2]", .fwd = tr_f, .bwd = tr_b,
              .sa = S(I(2), I(3), I(4), I(2)), .sy = S(I(2), I(4), I(3), I(2)),
              .ax = 1, .bx = 2, .nin = 1, .nout = 1, .nreal = 1};
    c.insz[0] = c.outsz[0] = 48, c.want[0] = true;
    check(c);
  }
  {
    Case c = {.name = "concat axis=1", .fwd = cat_f, .bwd = cat_b, .ax = 1,
              .nin = 3, .nout = 1, .nreal = 1};
    c.parts[0] = S(I(2), I(1), I(3));
    c.parts[1] = S(I(2), I(2), I(3));
    c.parts[2] = S(I(2), I(3), I(3));
    c.insz[0] = 6, c.insz[1] = 12, c.insz[2] = 18, c.outsz[0] = 36;
    c.want[0] = c.want[1] = c.want[2] = true;
    check(c);
  }
  {
    Case c = {.name = "split 3 axis=-1", .fwd = split_f, .bwd = split_b,
              .ax = 1, .nin = 1, .nout = 3, .nreal = 3};
    for (int i = 0; i < 3; i++) c.parts[i] = S(I(4), I(2)), c.outsz[i] = 8;
    c.insz[0] = 24, c.want[0] = true;
    check(c);
  }
  {
    Case c = {.name = "cross_entropy [4,5]", .fwd = xent_f, .bwd = xent_b,
              .m = 4, .n = 5, .nin = 1, .nout = 2, .nreal = 1};
    int64_t t[4] = {0, 4, 2, 2};
    memcpy(c.ids, t, sizeof t);
    c.insz[0] = 20, c.outsz[0] = 1, c.outsz[1] = 20, c.want[0] = true;
    check(c);
  }
  {
    Case c = {.name = "mse [3,4]", .fwd = mse_f, .bwd = mse_b, .nin = 2,
              .nout = 1, .nreal = 1};
    c.insz[0] = c.insz[1] = 12, c.outsz[0] = 1;
    c.want[0] = c.want[1] = true;
    check(c);
  }
  {
    Case c = {.name = "embedding (repeated ids)", .fwd = emb_f,
              .bwd = emb_b, .m = 6, .k = 5, .n = 3, .nin = 1, .nout = 1,
              .nreal = 1};
    int64_t t[6] = {1, 4, 1, 0, 3, 1};
    memcpy(c.ids, t, sizeof t);
    c.insz[0] = 15, c.outsz[0] = 18, c.want[0] = true;
    check(c);
  }
  printf("%s: %d case(s) failed\n", nfail ? "FAIL" : "ok", nfail);
  return nfail != 0;
}
