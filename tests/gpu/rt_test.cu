/* tests/gpu/rt_test.cu: runs every runtime kernel on random inputs and
 * dumps inputs and results; tests/gpu/rt_check.py recomputes each case with
 * PyTorch in float64 and compares (atol + rtol*|ref|, worst element).
 *
 * Also probes the memory pool: requested bytes (odd sizes included) must
 * show exactly in cudaMemPoolAttrUsedMemCurrent/High, which is what makes
 * the byte-exact peak of memory.md measurable.
 *
 * Usage: rt_test DIR   (writes DIR/<case>.bin; format in rt_check.py)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <initializer_list>

#include "mdlrt.h"

static const char *dir;
static FILE *cur;
static unsigned long long rng = 88172645463325252ull;

static double urand(void) { /* xorshift64, uniform in [-1, 1) */
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* A contiguous tensor: its geometry and its buffer. */
typedef struct {
  mdlrt_tensor t;
  void *p;
} Tensor;

static Tensor mkr(int dt, int rank, const int64_t *dim) {
  Tensor x;
  memset(&x, 0, sizeof x);
  x.t.dt = dt, x.t.rank = rank;
  int64_t n = 1;
  for (int d = rank - 1; d >= 0; d--) {
    x.t.dim[d] = dim[d];
    x.t.st[d] = n;
    n *= dim[d];
  }
  static const int size[] = {4, 2, 2, 4, 8, 1};
  x.p = mdlrt_alloc(n * size[dt], 1);
  return x;
}

static Tensor mk(int dt, std::initializer_list<int64_t> dims) {
  return mkr(dt, (int)dims.size(), dims.begin());
}

static int64_t numel(const Tensor *x) {
  int64_t n = 1;
  for (int d = 0; d < x->t.rank; d++) n *= x->t.dim[d];
  return n;
}

static mdlrt_ref R(Tensor *x) { return mdlrt_at(x->p, &x->t); }
static const mdlrt_ref NONE = {NULL, NULL};

/* Random values (integers in [0, hi) if hi > 0). */
static Tensor rnd(int dt, std::initializer_list<int64_t> dims, int hi) {
  Tensor x = mk(dt, dims);
  int64_t n = numel(&x);
  double *h = (double *)malloc(n * sizeof(double));
  for (int64_t i = 0; i < n; i++)
    h[i] = hi > 0 ? (double)(int64_t)((urand() + 1.0) * 0.5 * hi) : urand();
  mdlrt_write_all(R(&x), h);
  free(h);
  return x;
}

static void begin(const char *name) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s.bin", dir, name);
  cur = fopen(path, "wb");
  if (!cur) {
    perror(path);
    exit(2);
  }
}

/* Record: u32 name length, name, u32 rank, i64 dims, f64 data. */
static void dump(const char *name, Tensor *x) {
  int64_t n = numel(x);
  double *h = (double *)malloc((n ? n : 1) * sizeof(double));
  mdlrt_read_all(R(x), h);
  unsigned len = (unsigned)strlen(name), rank = (unsigned)x->t.rank;
  fwrite(&len, 4, 1, cur);
  fwrite(name, 1, len, cur);
  fwrite(&rank, 4, 1, cur);
  fwrite(x->t.dim, 8, rank, cur);
  fwrite(h, 8, n, cur);
  free(h);
}

static void end(void) { fclose(cur); }

#define F MDLRT_F32

static void t_linear(const char *name, int dt) {
  begin(name);
  Tensor x = rnd(dt, {6, 5}, 0), w = rnd(dt, {4, 5}, 0);
  Tensor b = rnd(dt, {4}, 0), dy = rnd(dt, {6, 4}, 0);
  Tensor y = mk(dt, {6, 4}), dx = mk(dt, {6, 5});
  Tensor dw0 = rnd(dt, {4, 5}, 0), db = mk(dt, {4});
  dump("x", &x), dump("w", &w), dump("b", &b), dump("dy", &dy);
  dump("dw0", &dw0);
  mdlrt_linear_fwd(R(&y), R(&x), R(&w), R(&b), 6, 5, 4);
  /* dw accumulates onto dw0 */
  mdlrt_linear_bwd(R(&dx), 0, R(&dw0), 1, R(&db), 0, R(&dy), R(&x), R(&w), 6,
                   5, 4);
  dump("y", &y), dump("dx", &dx), dump("dw", &dw0), dump("db", &db);
  end();
}

static void t_matmul(const char *name, int ta, int tb, int bcast) {
  begin(name);
  int64_t B = 3, m = 4, k = 5, n = 6;
  Tensor a = ta ? rnd(F, {B, k, m}, 0) : rnd(F, {B, m, k}, 0);
  Tensor b = bcast ? (tb ? rnd(F, {n, k}, 0) : rnd(F, {k, n}, 0))
                   : (tb ? rnd(F, {B, n, k}, 0) : rnd(F, {B, k, n}, 0));
  Tensor dy = rnd(F, {B, m, n}, 0), y = mk(F, {B, m, n});
  Tensor da = mkr(F, a.t.rank, a.t.dim), db = mkr(F, b.t.rank, b.t.dim);
  dump("a", &a), dump("b", &b), dump("dy", &dy);
  int64_t sb = bcast ? 0 : k * n;
  mdlrt_matmul_fwd(R(&y), R(&a), R(&b), ta, tb, B, m, k, n, m * k, sb);
  mdlrt_matmul_bwd(R(&da), 0, R(&db), 0, R(&dy), R(&a), R(&b), ta, tb, B, m,
                   k, n, m * k, sb);
  dump("y", &y), dump("da", &da), dump("db", &db);
  end();
}

/* conv2d in bf16 with 3 input channels (not a multiple of 8), as a
 * ResNet's stem: the algorithm search must find one that runs. */
static void t_conv_bf16(void) {
  begin("conv2d_bf16");
  int B = MDLRT_BF16;
  Tensor x = rnd(B, {2, 3, 9, 9}, 0), w = rnd(B, {8, 3, 3, 3}, 0);
  Tensor b = rnd(B, {8}, 0), dy = rnd(B, {2, 8, 9, 9}, 0);
  Tensor y = mk(B, {2, 8, 9, 9}), dx = mk(B, {2, 3, 9, 9});
  Tensor dw = mk(B, {8, 3, 3, 3}), db = mk(B, {8});
  mdlrt_conv *c = mdlrt_conv_plan(B, 2, 3, 9, 9, 8, 3, 1, 1, 1, 1, 9, 9);
  mdlrt_conv_fwd(c, R(&y), R(&x), R(&w), R(&b));
  mdlrt_conv_bwd(c, R(&dx), 0, R(&dw), 0, R(&db), 0, R(&dy), R(&x), R(&w));
  dump("x", &x), dump("w", &w), dump("b", &b), dump("dy", &dy);
  dump("y", &y), dump("dx", &dx), dump("dw", &dw), dump("db", &db);
  end();
}

static void t_conv(void) {
  begin("conv2d");
  Tensor x = rnd(F, {2, 4, 7, 7}, 0), w = rnd(F, {6, 2, 3, 3}, 0);
  Tensor b = rnd(F, {6}, 0), dy = rnd(F, {2, 6, 4, 4}, 0);
  Tensor y = mk(F, {2, 6, 4, 4}), dx = mk(F, {2, 4, 7, 7});
  Tensor dw = mk(F, {6, 2, 3, 3}), db = mk(F, {6});
  mdlrt_conv *c = mdlrt_conv_plan(F, 2, 4, 7, 7, 6, 3, 2, 1, 1, 2, 4, 4);
  mdlrt_conv_fwd(c, R(&y), R(&x), R(&w), R(&b));
  mdlrt_conv_bwd(c, R(&dx), 0, R(&dw), 0, R(&db), 0, R(&dy), R(&x), R(&w));
  dump("x", &x), dump("w", &w), dump("b", &b), dump("dy", &dy);
  dump("y", &y), dump("dx", &dx), dump("dw", &dw), dump("db", &db);
  end();
}

/* conv2d at a size where cuDNN's graph engines (not only the small-shape
 * fallbacks) run, in f32 (must not be TF32) and f16, with the backward
 * passes adding into gradients that already hold values (beta = 1). */
static void t_conv_big(const char *name, int dt) {
  begin(name);
  Tensor x = rnd(dt, {4, 64, 16, 16}, 0), w = rnd(dt, {64, 64, 3, 3}, 0);
  Tensor b = rnd(dt, {64}, 0), dy = rnd(dt, {4, 64, 16, 16}, 0);
  Tensor y = mk(dt, {4, 64, 16, 16});
  Tensor dx = rnd(dt, {4, 64, 16, 16}, 0), dw = rnd(dt, {64, 64, 3, 3}, 0);
  Tensor db = mk(dt, {64});
  dump("x", &x), dump("w", &w), dump("b", &b), dump("dy", &dy);
  dump("dx0", &dx), dump("dw0", &dw);
  mdlrt_conv *c = mdlrt_conv_plan(dt, 4, 64, 16, 16, 64, 3, 1, 1, 1, 1, 16, 16);
  mdlrt_conv_fwd(c, R(&y), R(&x), R(&w), R(&b));
  mdlrt_conv_bwd(c, R(&dx), 1, R(&dw), 1, R(&db), 0, R(&dy), R(&x), R(&w));
  dump("y", &y), dump("dx", &dx), dump("dw", &dw), dump("db", &db);
  end();
}

/* The backward-filter through im2col + cuBLAS (mdlrt_conv.cu, fg_run) into a
 * dw that holds values (aw = 1). Its chunk rule: n images a chunk need the
 * f32 accumulator, dy's chunk (n > 1), n images' columns and 4 MiB left for
 * cuBLAS; failing that, one image needs the accumulator and its columns
 * (cuBLAS then gets what is left). fg_ws(n) is the workspace that makes n
 * the chunk (MDLRT_PROF=1 prints each plan's). f16 and bf16 take the path
 * by the default rule; f32 and groups by MDLRT_CONV_GEMM=1, set for their
 * plan only (the plan reads it) and restored. */
static int64_t fg_ws(int dt, int64_t n, int64_t C, int64_t K, int64_t g,
                     int64_t R, int64_t PQ) {
  int64_t es = dt == F ? 4 : 2;
  int64_t acc = (K * C / g * R * R * 4 + 255) & ~(int64_t)255;
  int64_t dyc = n > 1 ? (K * n * PQ * es + 255) & ~(int64_t)255 : 0;
  int64_t col = (C * R * R * n * PQ * es + 255) & ~(int64_t)255;
  return acc + dyc + col + (n > 1 ? 4 << 20 : 0);
}

static void t_conv_gemm(void *ws) {
  static const struct {
    const char *name;
    int dt;
    int64_t N, C, H, K, R, s, p, d, g;
    int64_t n;       /* images a chunk to force; 0: a 32 MiB workspace */
    const char *env; /* MDLRT_CONV_GEMM for the plan, or NULL (unset) */
  } cs[] = {
      /* 4 chunks of 1 image, dy in place, no cuBLAS scratch */
      {"conv2d_gemm_f16", MDLRT_F16, 4, 64, 16, 64, 3, 1, 1, 1, 1, 1, NULL},
      /* 2 chunks of 2 images, dy staged */
      {"conv2d_gemm_bf16", MDLRT_BF16, 4, 64, 16, 64, 3, 1, 1, 1, 1, 2,
       NULL},
      /* stride 2, 13 -> 7: one chunk of 4, scalar copies (Q = 7) */
      {"conv2d_gemm_s2", MDLRT_F16, 4, 64, 13, 64, 3, 2, 1, 1, 1, 0, NULL},
      /* dilation 2, 16 -> 14: chunks of 2, 2 and 1 image */
      {"conv2d_gemm_dil", MDLRT_F16, 5, 64, 16, 64, 3, 1, 1, 2, 1, 2, NULL},
      /* f32 (plain f32 products), 4 chunks of 1 */
      {"conv2d_gemm_f32", F, 4, 64, 16, 64, 3, 1, 1, 1, 1, 1, "1"},
      /* 4 groups: one product per group, batched */
      {"conv2d_gemm_grp", MDLRT_F16, 4, 64, 16, 64, 3, 1, 1, 1, 4, 0, "1"},
  };
  for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
    int dt = cs[k].dt;
    int64_t N = cs[k].N, C = cs[k].C, H = cs[k].H, K = cs[k].K;
    int64_t kr = cs[k].R, g = cs[k].g;
    int64_t P = (H + 2 * cs[k].p - cs[k].d * (kr - 1) - 1) / cs[k].s + 1;
    begin(cs[k].name);
    Tensor x = rnd(dt, {N, C, H, H}, 0), w = rnd(dt, {K, C / g, kr, kr}, 0);
    Tensor dy = rnd(dt, {N, K, P, P}, 0);
    Tensor dw = rnd(dt, {K, C / g, kr, kr}, 0), db = mk(dt, {K});
    dump("x", &x), dump("w", &w), dump("dy", &dy), dump("dw0", &dw);
    mdlrt_set_workspace(ws, cs[k].n ? fg_ws(dt, cs[k].n, C, K, g, kr, P * P)
                                    : 32 << 20);
    const char *old = getenv("MDLRT_CONV_GEMM");
    char keep[64] = "";
    if (old) snprintf(keep, sizeof keep, "%s", old);
    if (cs[k].env) setenv("MDLRT_CONV_GEMM", cs[k].env, 1);
    else unsetenv("MDLRT_CONV_GEMM");
    mdlrt_conv *c = mdlrt_conv_plan(dt, N, C, H, H, K, kr, cs[k].s, cs[k].p,
                                    cs[k].d, g, P, P);
    if (old) setenv("MDLRT_CONV_GEMM", keep, 1);
    else unsetenv("MDLRT_CONV_GEMM");
    mdlrt_conv_bwd(c, NONE, 0, R(&dw), 1, R(&db), 0, R(&dy), R(&x), R(&w));
    dump("dw", &dw), dump("db", &db);
    end();
  }
  mdlrt_set_workspace(ws, 32 << 20);
}

static void t_pool(void) {
  begin("pool");
  Tensor x = rnd(F, {2, 3, 7, 7}, 0);
  Tensor ym = mk(F, {2, 3, 4, 4}), ya = mk(F, {2, 3, 3, 3});
  Tensor yg = mk(F, {2, 3});
  Tensor dym = rnd(F, {2, 3, 4, 4}, 0), dya = rnd(F, {2, 3, 3, 3}, 0);
  Tensor dyg = rnd(F, {2, 3}, 0);
  Tensor dxm = mk(F, {2, 3, 7, 7}), dxa = mk(F, {2, 3, 7, 7});
  Tensor dxg = mk(F, {2, 3, 7, 7});
  mdlrt_pool_fwd(0, R(&ym), R(&x), 3, 2, 1);
  mdlrt_pool_fwd(1, R(&ya), R(&x), 2, 2, 0);
  mdlrt_global_avgpool_fwd(R(&yg), R(&x));
  mdlrt_pool_bwd(0, R(&dxm), 0, R(&dym), R(&x), R(&ym), 3, 2, 1);
  mdlrt_pool_bwd(1, R(&dxa), 0, R(&dya), R(&x), R(&ya), 2, 2, 0);
  mdlrt_global_avgpool_bwd(R(&dxg), 0, R(&dyg));
  dump("x", &x), dump("ym", &ym), dump("ya", &ya), dump("yg", &yg);
  dump("dym", &dym), dump("dya", &dya), dump("dyg", &dyg);
  dump("dxm", &dxm), dump("dxa", &dxa), dump("dxg", &dxg);
  end();
}

static void t_norms(void) {
  begin("norms");
  /* layernorm */
  /* 80 rows: the weight gradients' column sums take several chunks */
  Tensor x = rnd(F, {4, 20, 10}, 0), w = rnd(F, {10}, 0);
  Tensor b = rnd(F, {10}, 0), dy = rnd(F, {4, 20, 10}, 0);
  Tensor y = mk(F, {4, 20, 10}), mean = mk(F, {80}), rstd = mk(F, {80});
  Tensor dx = mk(F, {4, 20, 10}), dw = mk(F, {10}), db = mk(F, {10});
  mdlrt_layernorm_fwd(R(&y), R(&mean), R(&rstd), R(&x), R(&w), R(&b), 1e-5);
  mdlrt_layernorm_bwd(R(&dx), 0, R(&dw), 0, R(&db), 0, R(&dy), R(&x),
                      R(&mean), R(&rstd), R(&w));
  dump("ln_x", &x), dump("ln_w", &w), dump("ln_b", &b), dump("ln_dy", &dy);
  dump("ln_y", &y), dump("ln_dx", &dx), dump("ln_dw", &dw), dump("ln_db", &db);
  /* groupnorm, 3 groups of 2 channels */
  Tensor gx = rnd(F, {2, 6, 3, 4}, 0), gw = rnd(F, {6}, 0);
  Tensor gb = rnd(F, {6}, 0), gdy = rnd(F, {2, 6, 3, 4}, 0);
  Tensor gy = mk(F, {2, 6, 3, 4}), gm = mk(F, {6}), gr = mk(F, {6});
  Tensor gdx = mk(F, {2, 6, 3, 4}), gdw = mk(F, {6}), gdb = mk(F, {6});
  mdlrt_groupnorm_fwd(R(&gy), R(&gm), R(&gr), R(&gx), R(&gw), R(&gb), 3, 1e-5);
  mdlrt_groupnorm_bwd(R(&gdx), 0, R(&gdw), 0, R(&gdb), 0, R(&gdy), R(&gx),
                      R(&gm), R(&gr), R(&gw), 3);
  dump("gn_x", &gx), dump("gn_w", &gw), dump("gn_b", &gb), dump("gn_dy", &gdy);
  dump("gn_y", &gy), dump("gn_dx", &gdx), dump("gn_dw", &gdw);
  dump("gn_db", &gdb);
  /* batchnorm, training */
  Tensor bx = rnd(F, {4, 3, 2, 5}, 0), bw = rnd(F, {3}, 0);
  Tensor bb = rnd(F, {3}, 0), bdy = rnd(F, {4, 3, 2, 5}, 0);
  Tensor rm = rnd(F, {3}, 0), rv = mk(F, {3});
  mdlrt_fill(R(&rv), 1.0);
  dump("bn_rm0", &rm);
  Tensor by = mk(F, {4, 3, 2, 5}), bm = mk(F, {3}), bi = mk(F, {3});
  Tensor bdx = mk(F, {4, 3, 2, 5}), bdw = mk(F, {3}), bdb = mk(F, {3});
  mdlrt_batchnorm_fwd(R(&by), R(&bm), R(&bi), R(&bx), R(&bw), R(&bb), R(&rm),
                      R(&rv), 1e-5, 1);
  mdlrt_batchnorm_bwd(R(&bdx), 0, R(&bdw), 0, R(&bdb), 0, R(&bdy), R(&bx),
                      R(&bm), R(&bi), R(&bw));
  dump("bn_x", &bx), dump("bn_w", &bw), dump("bn_b", &bb), dump("bn_dy", &bdy);
  dump("bn_y", &by), dump("bn_dx", &bdx), dump("bn_dw", &bdw);
  dump("bn_db", &bdb), dump("bn_rm", &rm), dump("bn_rv", &rv);
  end();
}

/* ---- the fast paths of batchnorm, groupnorm and pooling's backward -------
 * (mdlrt_norm.cu, mdlrt_pool.cu) at sizes where they run, at odd sizes,
 * and where they give way (a workspace of 0 bytes, or one too small for
 * segments). Each norm case runs a second time on copies that start one
 * element off 16-byte alignment (the loads' width changes, the order of
 * the sums must not): "same" is 1 if every output of the second run equals
 * the first's bit for bit. */

/* Packed, uniform in [shift - 1, shift + 1) if fill (else zeros), its
 * first element `off` elements into its buffer. */
static Tensor fp_tensor(int dt, int rank, const int64_t *dim, double shift,
                        int64_t off, int fill) {
  static const int size[] = {4, 2, 2, 4, 8, 1};
  Tensor x;
  memset(&x, 0, sizeof x);
  x.t.dt = dt, x.t.rank = rank, x.t.off = off;
  int64_t n = 1;
  for (int d = rank - 1; d >= 0; d--) {
    x.t.dim[d] = dim[d];
    x.t.st[d] = n;
    n *= dim[d];
  }
  x.p = mdlrt_alloc((n + off) * size[dt], 1);
  if (fill) {
    double *h = (double *)malloc(n * sizeof(double));
    for (int64_t i = 0; i < n; i++) h[i] = urand() + shift;
    mdlrt_write_all(R(&x), h);
    free(h);
  }
  return x;
}

/* A copy of a, one element off alignment. */
static Tensor fp_off(Tensor *a) {
  Tensor c = fp_tensor(a->t.dt, a->t.rank, a->t.dim, 0, 1, 0);
  mdlrt_copy(R(&c), R(a), 0);
  return c;
}

static int fp_same(Tensor *a, Tensor *b) {
  int64_t n = numel(a);
  double *ha = (double *)malloc(n * sizeof(double));
  double *hb = (double *)malloc(n * sizeof(double));
  mdlrt_read_all(R(a), ha);
  mdlrt_read_all(R(b), hb);
  int s = numel(b) == n && !memcmp(ha, hb, n * sizeof(double));
  free(ha), free(hb);
  return s;
}

static void fp_flag(const char *name, int v) {
  Tensor t = mk(F, {});
  mdlrt_fill(R(&t), v);
  dump(name, &t);
  mdlrt_free(t.p);
}

static void fp_free(std::initializer_list<Tensor *> ts) {
  for (Tensor *t : ts)
    if (t->p) mdlrt_free(t->p);
}

/* batchnorm, training, forward and backward; x shifted (statistics away
 * from 0), running statistics; dx, dw, db overwritten or (acc) added to.
 * w, b, dw, db in wdt (x's dtype if < 0; f32 under the mixed policies);
 * infer: also the inference forward from the updated running statistics
 * ("y_inf"). */
static void t_bn_fast(const char *name, int dt, int64_t N, int64_t C,
                      int64_t H, int64_t W, double shift, int acc,
                      int wdt = -1, int infer = 0) {
  begin(name);
  if (wdt < 0) wdt = dt;
  int64_t d[4] = {N, C, H, W}, dc[1] = {C};
  Tensor x = fp_tensor(dt, 4, d, shift, 0, 1);
  Tensor dy = fp_tensor(dt, 4, d, 0, 0, 1);
  Tensor w = fp_tensor(wdt, 1, dc, 0, 0, 1);
  Tensor b = fp_tensor(wdt, 1, dc, 0, 0, 1);
  Tensor rm = fp_tensor(F, 1, dc, 0, 0, 1), rv = fp_tensor(F, 1, dc, 2, 0, 1);
  Tensor dx = fp_tensor(dt, 4, d, 0, 0, acc);
  Tensor dw = fp_tensor(wdt, 1, dc, 0, 0, acc);
  Tensor db = fp_tensor(wdt, 1, dc, 0, 0, acc);
  dump("x", &x), dump("dy", &dy), dump("w", &w), dump("b", &b);
  dump("rm0", &rm), dump("rv0", &rv);
  if (acc) dump("dx0", &dx), dump("dw0", &dw), dump("db0", &db);
  Tensor x2 = fp_off(&x), dy2 = fp_off(&dy), rm2 = fp_off(&rm);
  Tensor rv2 = fp_off(&rv), dx2 = fp_off(&dx), dw2 = fp_off(&dw);
  Tensor db2 = fp_off(&db);
  Tensor y = fp_tensor(dt, 4, d, 0, 0, 0), y2 = fp_tensor(dt, 4, d, 0, 1, 0);
  Tensor m = fp_tensor(F, 1, dc, 0, 0, 0), m2 = fp_tensor(F, 1, dc, 0, 1, 0);
  Tensor is = fp_tensor(F, 1, dc, 0, 0, 0), is2 = fp_tensor(F, 1, dc, 0, 1, 0);
  mdlrt_batchnorm_fwd(R(&y), R(&m), R(&is), R(&x), R(&w), R(&b), R(&rm),
                      R(&rv), 1e-5, 1);
  mdlrt_batchnorm_bwd(R(&dx), acc, R(&dw), acc, R(&db), acc, R(&dy), R(&x),
                      R(&m), R(&is), R(&w));
  mdlrt_batchnorm_fwd(R(&y2), R(&m2), R(&is2), R(&x2), R(&w), R(&b), R(&rm2),
                      R(&rv2), 1e-5, 1);
  mdlrt_batchnorm_bwd(R(&dx2), acc, R(&dw2), acc, R(&db2), acc, R(&dy2),
                      R(&x2), R(&m2), R(&is2), R(&w));
  if (infer) {
    Tensor yi = fp_tensor(dt, 4, d, 0, 0, 0);
    mdlrt_batchnorm_fwd(R(&yi), NONE, NONE, R(&x), R(&w), R(&b), R(&rm),
                        R(&rv), 1e-5, 0);
    dump("y_inf", &yi);
    mdlrt_free(yi.p);
  }
  dump("y", &y), dump("mean", &m), dump("invstd", &is), dump("rm", &rm);
  dump("rv", &rv), dump("dx", &dx), dump("dw", &dw), dump("db", &db);
  fp_flag("same", fp_same(&y, &y2) && fp_same(&m, &m2) &&
                      fp_same(&is, &is2) && fp_same(&rm, &rm2) &&
                      fp_same(&rv, &rv2) && fp_same(&dx, &dx2) &&
                      fp_same(&dw, &dw2) && fp_same(&db, &db2));
  end();
  fp_free({&x, &dy, &w, &b, &rm, &rv, &dx, &dw, &db, &x2, &dy2, &rm2, &rv2,
           &dx2, &dw2, &db2, &y, &y2, &m, &m2, &is, &is2});
}

/* groupnorm (G groups; affine or not), forward and backward, as above. */
static void t_gn_fast(const char *name, int dt, int64_t N, int64_t C,
                      int64_t H, int64_t W, int64_t G, double shift,
                      int affine, int acc, int wdt = -1) {
  begin(name);
  if (wdt < 0) wdt = dt;
  int64_t d[4] = {N, C, H, W}, dc[1] = {C}, ds[1] = {N * G};
  Tensor x = fp_tensor(dt, 4, d, shift, 0, 1);
  Tensor dy = fp_tensor(dt, 4, d, 0, 0, 1);
  Tensor w = {}, b = {}, dw = {}, db = {};
  if (affine) {
    w = fp_tensor(wdt, 1, dc, 0, 0, 1), b = fp_tensor(wdt, 1, dc, 0, 0, 1);
    dw = fp_tensor(wdt, 1, dc, 0, 0, acc);
    db = fp_tensor(wdt, 1, dc, 0, 0, acc);
  }
  Tensor dx = fp_tensor(dt, 4, d, 0, 0, acc);
  dump("x", &x), dump("dy", &dy);
  if (affine) dump("w", &w), dump("b", &b);
  if (acc) {
    dump("dx0", &dx);
    if (affine) dump("dw0", &dw), dump("db0", &db);
  }
  Tensor x2 = fp_off(&x), dy2 = fp_off(&dy), dx2 = fp_off(&dx);
  Tensor dw2 = {}, db2 = {};
  if (affine) dw2 = fp_off(&dw), db2 = fp_off(&db);
  Tensor y = fp_tensor(dt, 4, d, 0, 0, 0), y2 = fp_tensor(dt, 4, d, 0, 1, 0);
  Tensor m = fp_tensor(F, 1, ds, 0, 0, 0), m2 = fp_tensor(F, 1, ds, 0, 1, 0);
  Tensor rs = fp_tensor(F, 1, ds, 0, 0, 0), rs2 = fp_tensor(F, 1, ds, 0, 1, 0);
  mdlrt_ref rw = affine ? R(&w) : NONE, rb = affine ? R(&b) : NONE;
  mdlrt_groupnorm_fwd(R(&y), R(&m), R(&rs), R(&x), rw, rb, G, 1e-5);
  mdlrt_groupnorm_bwd(R(&dx), acc, affine ? R(&dw) : NONE, acc,
                      affine ? R(&db) : NONE, acc, R(&dy), R(&x), R(&m),
                      R(&rs), rw, G);
  mdlrt_groupnorm_fwd(R(&y2), R(&m2), R(&rs2), R(&x2), rw, rb, G, 1e-5);
  mdlrt_groupnorm_bwd(R(&dx2), acc, affine ? R(&dw2) : NONE, acc,
                      affine ? R(&db2) : NONE, acc, R(&dy2), R(&x2), R(&m2),
                      R(&rs2), rw, G);
  dump("y", &y), dump("mean", &m), dump("rstd", &rs), dump("dx", &dx);
  if (affine) dump("dw", &dw), dump("db", &db);
  int same = fp_same(&y, &y2) && fp_same(&m, &m2) && fp_same(&rs, &rs2) &&
             fp_same(&dx, &dx2);
  if (affine) same = same && fp_same(&dw, &dw2) && fp_same(&db, &db2);
  fp_flag("same", same);
  end();
  fp_free({&x, &dy, &w, &b, &dw, &db, &dx, &x2, &dy2, &dx2, &dw2, &db2, &y,
           &y2, &m, &m2, &rs, &rs2});
}

/* pooling (op 0 max, 1 avg), forward then backward into dx (acc: adding
 * to values). */
static void t_pool_fast(const char *name, int dt, int64_t N, int64_t C,
                        int64_t H, int64_t W, int op, int64_t k, int64_t s,
                        int64_t p, int acc) {
  begin(name);
  int64_t P = (H + 2 * p - k) / s + 1, Q = (W + 2 * p - k) / s + 1;
  int64_t xd[4] = {N, C, H, W}, yd[4] = {N, C, P, Q};
  Tensor x = fp_tensor(dt, 4, xd, 0, 0, 1), dy = fp_tensor(dt, 4, yd, 0, 0, 1);
  Tensor y = fp_tensor(dt, 4, yd, 0, 0, 0);
  Tensor dx = fp_tensor(dt, 4, xd, 0, 0, acc);
  dump("x", &x), dump("dy", &dy);
  if (acc) dump("dx0", &dx);
  mdlrt_pool_fwd(op, R(&y), R(&x), k, s, p);
  mdlrt_pool_bwd(op, R(&dx), acc, R(&dy), R(&x), R(&y), k, s, p);
  dump("y", &y), dump("dx", &dx);
  end();
  fp_free({&x, &dy, &y, &dx});
}

static void t_fast_paths(void *ws) {
  int H = MDLRT_F16, B = MDLRT_BF16;
  /* resnet18's shape (segments of whole rows), its stem's (4 segments a
   * row), 7x7 (L = 49: one element at a time), odd f16, bf16 adding */
  t_bn_fast("bn_fast_f32", F, 32, 64, 56, 56, 3.0, 0);
  t_bn_fast("bn_fast_stem", F, 4, 8, 112, 112, -2.0, 0);
  t_bn_fast("bn_fast_7x7", F, 8, 16, 7, 7, 0.5, 0);
  t_bn_fast("bn_fast_odd", H, 5, 3, 33, 35, 2.0, 0);
  t_bn_fast("bn_fast_bf16", B, 8, 16, 28, 28, 0.0, 1);
  /* groupnorm: sets of 1024 elements to 32 KiB in shared memory
   * (instancenorm as operator_cnn's, no affine, odd bf16 adding), larger
   * or smaller ones in units (G = 8; instancenorm in 4 segments a row; odd
   * bf16 adding) */
  t_gn_fast("gn_fast_in", H, 4, 64, 128, 128, 64, 0.0, 1, 0);
  t_gn_fast("gn_fast_noaff", F, 2, 4, 30, 30, 2, 0.0, 0, 0);
  t_gn_fast("gn_fused_odd", B, 2, 6, 33, 35, 3, 4.0, 1, 1);
  t_gn_fast("gn_fast_g8", H, 4, 64, 64, 64, 8, 1.0, 1, 0);
  t_gn_fast("gn_unit_in", H, 2, 8, 160, 160, 8, 0.0, 1, 0);
  t_gn_fast("gn_fast_odd", B, 3, 6, 17, 19, 3, 5.0, 1, 1);
  /* a workspace with room for whole rows only (the stem's 32 rows need
   * 1 KiB of partials in 4 segments, 320 bytes in one; the groupnorm's 64
   * rows 1 KiB in 2, 640 bytes in one), then none: the generic kernels,
   * whose order of summing may follow alignment (gn_ws0's "same") */
  mdlrt_set_workspace(ws, 768);
  t_bn_fast("bn_ws_small", F, 4, 8, 112, 112, 1.0, 0);
  t_gn_fast("gn_ws_small", H, 2, 32, 128, 128, 8, 0.0, 1, 0);
  mdlrt_set_workspace(ws, 0);
  t_bn_fast("bn_ws0", F, 4, 8, 20, 20, 1.0, 1);
  t_gn_fast("gn_ws0", H, 2, 8, 32, 32, 4, 0.0, 1, 1);
  mdlrt_set_workspace(ws, 32 << 20);
  /* maxpool as resnet's (f32; bf16 with ties, adding), odd sizes, avg,
   * and a row too wide for the tiles (the generic kernels) */
  t_pool_fast("pool_fast_f32", F, 4, 8, 112, 112, 0, 3, 2, 1, 0);
  t_pool_fast("pool_fast_bf16", B, 4, 8, 112, 112, 0, 3, 2, 1, 1);
  t_pool_fast("pool_fast_odd", H, 2, 3, 37, 29, 0, 3, 2, 1, 0);
  t_pool_fast("pool_fast_avg", F, 2, 3, 37, 29, 1, 3, 2, 1, 1);
  t_pool_fast("pool_fast_avg2", B, 2, 3, 36, 36, 1, 2, 2, 0, 0);
  t_pool_fast("pool_wide", F, 1, 2, 9, 4000, 0, 3, 2, 1, 0);
}

static void t_elementwise(void) {
  begin("elementwise");
  static const char *names[] = {"relu", "gelu", "silu", "tanh", "sigmoid",
                                "scale"};
  Tensor x = rnd(F, {5, 7}, 0), dy = rnd(F, {5, 7}, 0);
  dump("x", &x), dump("dy", &dy);
  for (int op = MDLRT_RELU; op <= MDLRT_SCALE; op++) {
    Tensor y = mk(F, {5, 7}), dx = mk(F, {5, 7});
    mdlrt_unary_fwd(op, R(&y), R(&x), 0.75);
    int saves_out = op == MDLRT_RELU || op == MDLRT_TANH || op == MDLRT_SIGMOID;
    mdlrt_unary_bwd(op, R(&dx), 0, R(&dy), saves_out ? R(&y) : R(&x), 0.75);
    char nm[64];
    snprintf(nm, sizeof nm, "%s_y", names[op]);
    dump(nm, &y);
    snprintf(nm, sizeof nm, "%s_dx", names[op]);
    dump(nm, &dx);
  }
  /* broadcasting: a[3,4,5] (+,*) b[4,1] */
  Tensor a = rnd(F, {3, 4, 5}, 0), b = rnd(F, {4, 1}, 0);
  Tensor g = rnd(F, {3, 4, 5}, 0);
  Tensor ya = mk(F, {3, 4, 5}), ym = mk(F, {3, 4, 5});
  Tensor dba = mk(F, {4, 1}), dam = mk(F, {3, 4, 5});
  Tensor dbm = rnd(F, {4, 1}, 0);
  dump("a", &a), dump("b", &b), dump("g", &g), dump("dbm0", &dbm);
  mdlrt_add_fwd(R(&ya), R(&a), R(&b));
  mdlrt_mul_fwd(R(&ym), R(&a), R(&b));
  mdlrt_bcast_bwd(R(&dba), 0, R(&g), NONE);
  mdlrt_bcast_bwd(R(&dam), 0, R(&g), R(&b));
  mdlrt_bcast_bwd(R(&dbm), 1, R(&g), R(&a)); /* accumulates onto dbm0 */
  dump("add_y", &ya), dump("mul_y", &ym), dump("add_db", &dba);
  dump("mul_da", &dam), dump("mul_db", &dbm);
  /* transpose(1, 2) of a[3,4,5] as a strided copy; cast to bf16 */
  Tensor t = mk(F, {3, 5, 4});
  mdlrt_tensor tv = a.t;
  tv.dim[1] = 5, tv.dim[2] = 4, tv.st[1] = 1, tv.st[2] = 5;
  mdlrt_copy(R(&t), mdlrt_at(a.p, &tv), 0);
  dump("transpose", &t);
  Tensor hb = mk(MDLRT_BF16, {3, 4, 5});
  mdlrt_copy(R(&hb), R(&a), 0);
  dump("bf16", &hb);
  /* dropout p = 0.3 on node 7, step 2 */
  Tensor big = rnd(F, {64, 64}, 0), dyb = rnd(F, {64, 64}, 0);
  Tensor yb = mk(F, {64, 64}), mask = mk(MDLRT_U8, {64, 64});
  Tensor dxb = mk(F, {64, 64});
  mdlrt_step_begin(2, NULL);
  mdlrt_dropout_fwd(R(&yb), R(&mask), R(&big), 0.3, 7);
  mdlrt_dropout_bwd(R(&dxb), 0, R(&dyb), R(&mask), 0.3);
  dump("do_x", &big), dump("do_dy", &dyb), dump("do_y", &yb);
  dump("do_mask", &mask), dump("do_dx", &dxb);
  end();
}

static void t_rows(void) {
  begin("rows");
  Tensor x = rnd(F, {2, 5, 5}, 0), dy = rnd(F, {2, 5, 5}, 0);
  Tensor y = mk(F, {2, 5, 5}), dx = mk(F, {2, 5, 5});
  Tensor yc = mk(F, {2, 5, 5}), dxc = mk(F, {2, 5, 5});
  mdlrt_softmax_fwd(R(&y), R(&x), 0);
  mdlrt_softmax_bwd(R(&dx), 0, R(&dy), R(&y));
  mdlrt_softmax_fwd(R(&yc), R(&x), 1);
  mdlrt_softmax_bwd(R(&dxc), 0, R(&dy), R(&yc));
  dump("sm_x", &x), dump("sm_dy", &dy), dump("sm_y", &y), dump("sm_dx", &dx);
  dump("smc_y", &yc), dump("smc_dx", &dxc);
  /* embedding */
  Tensor ids = rnd(MDLRT_I32, {2, 3}, 5), w = rnd(F, {5, 4}, 0);
  Tensor ey = mk(F, {2, 3, 4}), edy = rnd(F, {2, 3, 4}, 0);
  Tensor edw = mk(F, {5, 4});
  mdlrt_embedding_fwd(R(&ey), R(&ids), R(&w));
  mdlrt_embedding_bwd(R(&edw), 0, R(&edy), R(&ids));
  dump("em_ids", &ids), dump("em_w", &w), dump("em_y", &ey);
  dump("em_dy", &edy), dump("em_dw", &edw);
  /* cross_entropy */
  Tensor lg = rnd(F, {6, 5}, 0), tg = rnd(MDLRT_I64, {6}, 5);
  Tensor loss = mk(F, {}), lp = mk(F, {6, 5}), dl = mk(F, {});
  Tensor dlg = mk(F, {6, 5});
  mdlrt_fill(R(&dl), 0.5);
  mdlrt_cross_entropy_fwd(R(&loss), R(&lp), R(&lg), R(&tg));
  mdlrt_cross_entropy_bwd(R(&dlg), 0, R(&dl), R(&lp), R(&tg));
  dump("ce_x", &lg), dump("ce_t", &tg), dump("ce_loss", &loss);
  dump("ce_dx", &dlg);
  /* mse, large enough for the multi-block sum */
  Tensor ma = rnd(F, {300, 400}, 0), mb = rnd(F, {300, 400}, 0);
  Tensor ml = mk(F, {}), mda = mk(F, {300, 400}), mdb = mk(F, {300, 400});
  mdlrt_mse_fwd(R(&ml), R(&ma), R(&mb));
  mdlrt_mse_bwd(R(&mda), 0, 1.0, R(&dl), R(&ma), R(&mb));
  mdlrt_mse_bwd(R(&mdb), 0, -1.0, R(&dl), R(&ma), R(&mb));
  dump("mse_a", &ma), dump("mse_b", &mb), dump("mse_loss", &ml);
  dump("mse_da", &mda), dump("mse_db", &mdb);
  end();
}

static void t_optim(void) {
  begin("optim");
  static const char *names[] = {"sgd", "momentum", "adam", "adamw"};
  for (int k = MDLRT_SGD; k <= MDLRT_ADAMW; k++) {
    mdlrt_optim o = {k, 1e-2, 0.9, 0.9, 0.999, 1e-8,
                     k == MDLRT_ADAMW ? 0.01 : 0.0};
    Tensor p = rnd(F, {10}, 0), g1 = rnd(F, {10}, 0);
    Tensor g2 = rnd(F, {10}, 0);
    Tensor s0 = mk(F, {10}), s1 = mk(F, {10});
    char nm[64];
    snprintf(nm, sizeof nm, "%s_p0", names[k]), dump(nm, &p);
    snprintf(nm, sizeof nm, "%s_g1", names[k]), dump(nm, &g1);
    snprintf(nm, sizeof nm, "%s_g2", names[k]), dump(nm, &g2);
    mdlrt_step_begin(0, &o); /* t = 1 */
    mdlrt_optim_step(&o, R(&p), R(&g1), NONE, R(&s0), R(&s1));
    mdlrt_step_begin(1, &o); /* t = 2 */
    mdlrt_optim_step(&o, R(&p), R(&g2), NONE, R(&s0), R(&s1));
    snprintf(nm, sizeof nm, "%s_p2", names[k]), dump(nm, &p);
  }
  /* adamw with a bf16 parameter and an f32 master */
  mdlrt_optim o = {MDLRT_ADAMW, 1e-2, 0.9, 0.9, 0.999, 1e-8, 0.01};
  Tensor m = rnd(F, {10}, 0), p = mk(MDLRT_BF16, {10});
  Tensor g = rnd(MDLRT_BF16, {10}, 0);
  Tensor s0 = mk(F, {10}), s1 = mk(F, {10});
  mdlrt_copy(R(&p), R(&m), 0);
  dump("master_m0", &m), dump("master_g", &g);
  mdlrt_step_begin(0, &o);
  mdlrt_optim_step(&o, R(&p), R(&g), R(&m), R(&s0), R(&s1));
  dump("master_m1", &m), dump("master_p1", &p);
  end();
}

/* ---- the kernels added with the family split ---------------------------
 * exp and softplus, rmsnorm, rope, mean and sum over an axis, and
 * batchnorm and instancenorm computing in 16-bit x with f32 weights (the
 * mixed policies) on their fast and generic paths. */

/* Packed, uniform in [-scale, scale). */
static Tensor sc_tensor(int dt, int rank, const int64_t *dim, double scale) {
  Tensor x = fp_tensor(dt, rank, dim, 0, 0, 0);
  int64_t n = numel(&x);
  double *h = (double *)malloc(n * sizeof(double));
  for (int64_t i = 0; i < n; i++) h[i] = urand() * scale;
  mdlrt_write_all(R(&x), h);
  free(h);
  return x;
}

/* A view of `rank` dims `dim` whose element (i...) lies at sum i[d]
 * st[d] in a packed buffer of `bufn` elements, uniform in [-1, 1) if fill
 * (else zeros). */
static Tensor view_tensor(int dt, int rank, const int64_t *dim,
                          const int64_t *st, int64_t bufn, int fill) {
  static const int size[] = {4, 2, 2, 4, 8, 1};
  Tensor x;
  memset(&x, 0, sizeof x);
  x.t.dt = dt, x.t.rank = rank;
  for (int d = 0; d < rank; d++) x.t.dim[d] = dim[d], x.t.st[d] = st[d];
  x.p = mdlrt_alloc(bufn * size[dt], 1);
  if (fill) {
    int64_t n = numel(&x);
    double *h = (double *)malloc(n * sizeof(double));
    for (int64_t i = 0; i < n; i++) h[i] = urand();
    mdlrt_write_all(R(&x), h);
    free(h);
  }
  return x;
}

/* exp (saves y; dx overwritten) and softplus (saves x; dx added to dx0),
 * on 200 elements (the 8-wide path) and 63 (and its tail); softplus's x
 * spans [-30, 30) (both sides of its threshold 20). */
static void t_unary2(const char *name, int dt) {
  begin(name);
  static const int64_t shapes[2][2] = {{5, 40}, {7, 9}};
  for (int k = 0; k < 2; k++) {
    const int64_t *d = shapes[k];
    Tensor x = sc_tensor(dt, 2, d, 4.0), xs = sc_tensor(dt, 2, d, 30.0);
    Tensor dy = sc_tensor(dt, 2, d, 1.0), dxs = sc_tensor(dt, 2, d, 1.0);
    Tensor y = fp_tensor(dt, 2, d, 0, 0, 0), dx = fp_tensor(dt, 2, d, 0, 0, 0);
    Tensor ys = fp_tensor(dt, 2, d, 0, 0, 0);
    char nm[64];
#define NM(s) (snprintf(nm, sizeof nm, "%c_%s", 'a' + k, s), nm)
    dump(NM("x"), &x), dump(NM("xs"), &xs), dump(NM("dy"), &dy);
    dump(NM("sp_dx0"), &dxs);
    mdlrt_unary_fwd(MDLRT_EXP, R(&y), R(&x), 0.0);
    mdlrt_unary_bwd(MDLRT_EXP, R(&dx), 0, R(&dy), R(&y), 0.0);
    mdlrt_unary_fwd(MDLRT_SOFTPLUS, R(&ys), R(&xs), 0.0);
    mdlrt_unary_bwd(MDLRT_SOFTPLUS, R(&dxs), 1, R(&dy), R(&xs), 0.0);
    dump(NM("exp_y"), &y), dump(NM("exp_dx"), &dx);
    dump(NM("sp_y"), &ys), dump(NM("sp_dx"), &dxs);
#undef NM
    fp_free({&x, &xs, &dy, &dxs, &y, &dx, &ys});
  }
  end();
}

/* rmsnorm of x[B, S, D] (xdt) with w (wdt), y and dy in ydt; dx, dw
 * overwritten or (acc) added to. Run again on copies one element off
 * alignment (element by element instead of 16 bytes): "same" = bit for
 * bit equal. */
static void t_rmsnorm(const char *name, int xdt, int wdt, int ydt, int64_t B,
                      int64_t S, int64_t D, int acc) {
  begin(name);
  int64_t d[3] = {B, S, D}, dr[2] = {B, S}, dd[1] = {D};
  Tensor x = fp_tensor(xdt, 3, d, 0.5, 0, 1);
  Tensor w = fp_tensor(wdt, 1, dd, 1, 0, 1);
  Tensor dy = fp_tensor(ydt, 3, d, 0, 0, 1);
  Tensor dx = fp_tensor(xdt, 3, d, 0, 0, acc);
  Tensor dw = fp_tensor(wdt, 1, dd, 0, 0, acc);
  dump("x", &x), dump("w", &w), dump("dy", &dy);
  if (acc) dump("dx0", &dx), dump("dw0", &dw);
  Tensor x2 = fp_off(&x), dy2 = fp_off(&dy), dx2 = fp_off(&dx);
  Tensor dw2 = fp_off(&dw);
  Tensor y = fp_tensor(ydt, 3, d, 0, 0, 0), y2 = fp_tensor(ydt, 3, d, 0, 1, 0);
  Tensor rs = fp_tensor(F, 2, dr, 0, 0, 0), rs2 = fp_tensor(F, 2, dr, 0, 1, 0);
  mdlrt_rmsnorm_fwd(R(&y), R(&rs), R(&x), R(&w), 1e-6);
  mdlrt_rmsnorm_bwd(R(&dx), acc, R(&dw), acc, R(&dy), R(&x), R(&rs), R(&w));
  mdlrt_rmsnorm_fwd(R(&y2), R(&rs2), R(&x2), R(&w), 1e-6);
  mdlrt_rmsnorm_bwd(R(&dx2), acc, R(&dw2), acc, R(&dy2), R(&x2), R(&rs2),
                    R(&w));
  dump("y", &y), dump("rstd", &rs), dump("dx", &dx), dump("dw", &dw);
  fp_flag("same", fp_same(&y, &y2) && fp_same(&rs, &rs2) &&
                      fp_same(&dx, &dx2) && fp_same(&dw, &dw2));
  end();
  fp_free({&x, &w, &dy, &dx, &dw, &x2, &dy2, &dx2, &dw2, &y, &y2, &rs, &rs2});
}

/* rmsnorm of a transposed view x[S, B, D] of a [B, S, D] buffer (rows not
 * evenly spaced): the strided kernels, dw a block a column; dx added to. */
static void t_rms_strided(const char *name, int dt) {
  begin(name);
  int64_t B = 3, S = 5, D = 48;
  int64_t d[3] = {S, B, D}, st[3] = {D, S * D, 1}, dr[2] = {S, B}, dd[1] = {D};
  Tensor x = view_tensor(dt, 3, d, st, B * S * D, 1);
  Tensor w = fp_tensor(F, 1, dd, 1, 0, 1), dy = fp_tensor(dt, 3, d, 0, 0, 1);
  Tensor dx = view_tensor(dt, 3, d, st, B * S * D, 1);
  Tensor y = fp_tensor(dt, 3, d, 0, 0, 0), rs = fp_tensor(F, 2, dr, 0, 0, 0);
  Tensor dw = fp_tensor(F, 1, dd, 0, 0, 0);
  dump("x", &x), dump("w", &w), dump("dy", &dy), dump("dx0", &dx);
  mdlrt_rmsnorm_fwd(R(&y), R(&rs), R(&x), R(&w), 1e-6);
  mdlrt_rmsnorm_bwd(R(&dx), 1, R(&dw), 0, R(&dy), R(&x), R(&rs), R(&w));
  dump("y", &y), dump("rstd", &rs), dump("dx", &dx), dump("dw", &dw);
  end();
  fp_free({&x, &w, &dy, &dx, &y, &rs, &dw});
}

/* rope of x[B, H, S, Dh]: with strided, x (and dx) are the transposed
 * view of a [B, S, H, Dh] buffer, as attention's heads of a projection;
 * dx overwritten or (acc) added to. */
static void t_rope(const char *name, int dt, int64_t B, int64_t H, int64_t S,
                   int64_t Dh, int strided, int acc, double base) {
  begin(name);
  int64_t d[4] = {B, H, S, Dh};
  int64_t st[4] = {S * H * Dh, Dh, H * Dh, 1}, n = B * H * S * Dh;
  Tensor x = strided ? view_tensor(dt, 4, d, st, n, 1)
                     : fp_tensor(dt, 4, d, 0, 0, 1);
  Tensor dx = strided ? view_tensor(dt, 4, d, st, n, acc)
                      : fp_tensor(dt, 4, d, 0, 0, acc);
  Tensor dy = fp_tensor(dt, 4, d, 0, 0, 1), y = fp_tensor(dt, 4, d, 0, 0, 0);
  dump("x", &x), dump("dy", &dy);
  if (acc) dump("dx0", &dx);
  mdlrt_rope_fwd(R(&y), R(&x), base);
  mdlrt_rope_bwd(R(&dx), acc, R(&dy), base);
  dump("y", &y), dump("dx", &dx);
  end();
  fp_free({&x, &dx, &dy, &y});
}

/* mean or sum of x over `axis` (y without the dim, or with it as 1 if
 * keep), then dx = dy broadcast, overwritten or (acc) added to. x is
 * packed, or (st) a view with those strides in a packed buffer of `bufn`. */
static void t_reduce(const char *name, int dt, int rank, const int64_t *dim,
                     int axis, int keep, int mean, int acc,
                     const int64_t *st = NULL, int64_t bufn = 0) {
  begin(name);
  int64_t yd[MDLRT_MAX_RANK];
  int yr = 0;
  for (int k = 0; k < rank; k++)
    if (k != axis) yd[yr++] = dim[k];
    else if (keep) yd[yr++] = 1;
  Tensor x = st ? view_tensor(dt, rank, dim, st, bufn, 1)
                : fp_tensor(dt, rank, dim, 0, 0, 1);
  Tensor dx = fp_tensor(dt, rank, dim, 0, 0, acc);
  Tensor y = fp_tensor(dt, yr, yd, 0, 0, 0);
  Tensor dy = fp_tensor(dt, yr, yd, 0, 0, 1);
  dump("x", &x), dump("dy", &dy);
  if (acc) dump("dx0", &dx);
  mdlrt_reduce_fwd(mean, R(&y), R(&x), axis);
  mdlrt_reduce_bwd(mean, R(&dx), acc, R(&dy), axis);
  dump("y", &y), dump("dx", &dx);
  end();
  fp_free({&x, &dx, &y, &dy});
}

/* batchnorm of a view x[N, C, H, W] whose rows have a gap (W + 1 apart):
 * the generic per-channel kernels (k_bn_fwd, k_bn_bwd), w f32. */
static void t_bn_strided(const char *name, int dt, int64_t N, int64_t C,
                         int64_t H, int64_t W) {
  begin(name);
  int64_t d[4] = {N, C, H, W}, dc[1] = {C};
  int64_t st[4] = {C * H * (W + 1), H * (W + 1), W + 1, 1};
  Tensor x = view_tensor(dt, 4, d, st, N * C * H * (W + 1), 1);
  Tensor dy = fp_tensor(dt, 4, d, 0, 0, 1);
  Tensor w = fp_tensor(F, 1, dc, 0, 0, 1), b = fp_tensor(F, 1, dc, 0, 0, 1);
  Tensor rm = fp_tensor(F, 1, dc, 0, 0, 1), rv = fp_tensor(F, 1, dc, 2, 0, 1);
  Tensor y = fp_tensor(dt, 4, d, 0, 0, 0), dx = fp_tensor(dt, 4, d, 0, 0, 0);
  Tensor m = fp_tensor(F, 1, dc, 0, 0, 0), is = fp_tensor(F, 1, dc, 0, 0, 0);
  Tensor dw = fp_tensor(F, 1, dc, 0, 0, 0), db = fp_tensor(F, 1, dc, 0, 0, 0);
  dump("x", &x), dump("dy", &dy), dump("w", &w), dump("b", &b);
  dump("rm0", &rm), dump("rv0", &rv);
  mdlrt_batchnorm_fwd(R(&y), R(&m), R(&is), R(&x), R(&w), R(&b), R(&rm),
                      R(&rv), 1e-5, 1);
  mdlrt_batchnorm_bwd(R(&dx), 0, R(&dw), 0, R(&db), 0, R(&dy), R(&x), R(&m),
                      R(&is), R(&w));
  Tensor yi = fp_tensor(dt, 4, d, 0, 0, 0);
  mdlrt_batchnorm_fwd(R(&yi), NONE, NONE, R(&x), R(&w), R(&b), R(&rm), R(&rv),
                      1e-5, 0);
  dump("y_inf", &yi);
  dump("y", &y), dump("mean", &m), dump("invstd", &is), dump("rm", &rm);
  dump("rv", &rv), dump("dx", &dx), dump("dw", &dw), dump("db", &db);
  end();
  fp_free({&x, &dy, &w, &b, &rm, &rv, &y, &dx, &m, &is, &dw, &db, &yi});
}

/* instancenorm (G = C) of the same kind of view: the generic row kernels
 * (k_rownorm_fwd, k_rownorm_bwd, k_rownorm_wgrad), w f32. */
static void t_in_strided(const char *name, int dt, int64_t N, int64_t C,
                         int64_t H, int64_t W) {
  begin(name);
  int64_t d[4] = {N, C, H, W}, dc[1] = {C}, ds[1] = {N * C};
  int64_t st[4] = {C * H * (W + 1), H * (W + 1), W + 1, 1};
  Tensor x = view_tensor(dt, 4, d, st, N * C * H * (W + 1), 1);
  Tensor dy = fp_tensor(dt, 4, d, 0, 0, 1);
  Tensor w = fp_tensor(F, 1, dc, 0, 0, 1), b = fp_tensor(F, 1, dc, 0, 0, 1);
  Tensor y = fp_tensor(dt, 4, d, 0, 0, 0), dx = fp_tensor(dt, 4, d, 0, 0, 0);
  Tensor m = fp_tensor(F, 1, ds, 0, 0, 0), rs = fp_tensor(F, 1, ds, 0, 0, 0);
  Tensor dw = fp_tensor(F, 1, dc, 0, 0, 0), db = fp_tensor(F, 1, dc, 0, 0, 0);
  dump("x", &x), dump("dy", &dy), dump("w", &w), dump("b", &b);
  mdlrt_groupnorm_fwd(R(&y), R(&m), R(&rs), R(&x), R(&w), R(&b), C, 1e-5);
  mdlrt_groupnorm_bwd(R(&dx), 0, R(&dw), 0, R(&db), 0, R(&dy), R(&x), R(&m),
                      R(&rs), R(&w), C);
  dump("y", &y), dump("mean", &m), dump("rstd", &rs), dump("dx", &dx);
  dump("dw", &dw), dump("db", &db);
  end();
  fp_free({&x, &dy, &w, &b, &y, &dx, &m, &rs, &dw, &db});
}

static void t_new_kernels(void *ws) {
  int H = MDLRT_F16, B = MDLRT_BF16;
  t_unary2("unary2_f32", F);
  t_unary2("unary2_f16", H);
  t_unary2("unary2_bf16", B);
  /* rmsnorm: GPT-sized D = 768 (f32; f16 x with f32 w and y, as the mixed
   * policy), 4096 (bf16; bf16 x with f32 w and y), odd D (37: a short
   * group; 100: D % 8 != 0), a strided x */
  t_rmsnorm("rms_768_f32", F, F, F, 4, 16, 768, 0);
  t_rmsnorm("rms_768_mix16", H, F, F, 4, 16, 768, 1);
  t_rmsnorm("rms_4096_bf16", B, B, B, 2, 8, 4096, 0);
  t_rmsnorm("rms_4096_mixbf", B, F, F, 2, 4, 4096, 1);
  t_rmsnorm("rms_odd_f32", F, F, F, 3, 7, 37, 1);
  t_rmsnorm("rms_odd_f16", H, H, H, 5, 3, 100, 0);
  t_rms_strided("rms_strided", H);
  /* rope: heads as a transposed view (f32, bf16; dx added to), packed f16
   * with odd S, a long sequence with Llama 3's base */
  t_rope("rope_f32_strided", F, 2, 3, 16, 64, 1, 1, 10000.0);
  t_rope("rope_f16", H, 1, 4, 33, 32, 0, 0, 10000.0);
  t_rope("rope_bf16_strided", B, 2, 2, 64, 128, 1, 1, 10000.0);
  t_rope("rope_f32_long", F, 1, 2, 512, 128, 0, 0, 500000.0);
  /* mean and sum over the last axis (a warp a row; 100000 long: chunks in
   * the workspace), a middle axis and the first (column blocks, chunks),
   * strided x, rank 1 to a scalar, and no workspace (one chunk) */
  {
    int64_t a[2] = {64, 300}, b[2] = {3, 100000}, c[3] = {4, 1000, 96};
    int64_t e[2] = {513, 40}, f[1] = {1000};
    int64_t v[3] = {6, 5, 7}, vs[3] = {1, 6, 30};
    t_reduce("red_last_f32", F, 2, a, 1, 0, 1, 0);
    t_reduce("red_last_big", F, 2, b, 1, 1, 0, 1);
    t_reduce("red_mid_f16", H, 3, c, 1, 0, 1, 0);
    t_reduce("red_mid_acc", F, 3, c, 1, 1, 0, 1);
    t_reduce("red_first_bf16", B, 2, e, 0, 1, 0, 1);
    t_reduce("red_strided_mid", F, 3, v, 1, 0, 1, 0, vs, 210);
    t_reduce("red_strided_last", F, 3, v, 2, 1, 0, 1, vs, 210);
    t_reduce("red_rank1", F, 1, f, 0, 0, 0, 0);
    mdlrt_set_workspace(ws, 0);
    t_reduce("red_ws0", F, 2, b, 1, 0, 1, 0);
    mdlrt_set_workspace(ws, 32 << 20);
  }
  /* batchnorm and instancenorm (groupnorm, G = C) with 16-bit x and f32
   * w, b, dw, db: batchnorm's fast path (whole rows; 2 segments a row,
   * adding; inference too), generic (L < 16), no workspace (CRed in one
   * chunk, k_bn_bwd), strided x (k_bn_fwd, k_bn_bwd); instancenorm's
   * shared-memory sets, units, rows (L < 16), strided x (the row kernels),
   * no workspace (the shared-memory forward, the rows' backward);
   * groupnorm G = 4 */
  t_bn_fast("bn_mix_f16", H, 8, 16, 28, 28, 2.0, 0, F, 1);
  t_bn_fast("bn_mix_bf16", B, 4, 8, 112, 112, -1.0, 1, F, 1);
  t_bn_fast("bn_mix_small", H, 4, 3, 2, 5, 1.0, 1, F, 1);
  t_bn_strided("bn_mix_strided", B, 3, 4, 5, 6);
  t_in_strided("in_mix_strided", H, 2, 3, 6, 5);
  t_gn_fast("in_mix_f16", H, 4, 64, 32, 32, 64, 1.0, 1, 0, F);
  t_gn_fast("in_mix_unit", B, 2, 8, 160, 160, 8, 0.0, 1, 1, F);
  t_gn_fast("in_mix_small", H, 2, 6, 3, 4, 6, 0.5, 1, 1, F);
  t_gn_fast("gn_mix_g4", H, 2, 16, 32, 32, 4, 0.0, 1, 0, F);
  mdlrt_set_workspace(ws, 0);
  t_bn_fast("bn_mix_ws0", B, 4, 8, 20, 20, 1.0, 1, F, 1);
  t_gn_fast("in_mix_ws0", B, 2, 8, 32, 32, 8, 0.0, 1, 1, F);
  mdlrt_set_workspace(ws, 32 << 20);
}

/* The pool counts requested bytes: odd sizes, frees, and the reset. */
static void t_pool_probe(void) {
  int64_t base = mdlrt_pool_used();
  void *a = mdlrt_alloc(4, 0), *b = mdlrt_alloc(33, 0), *c = mdlrt_alloc(1000, 1);
  int64_t u1 = mdlrt_pool_used() - base;
  mdlrt_free(b);
  int64_t u2 = mdlrt_pool_used() - base;
  mdlrt_pool_reset_peak();
  int64_t h0 = mdlrt_pool_peak() - base;
  void *d = mdlrt_alloc(7, 0);
  int64_t h1 = mdlrt_pool_peak() - base;
  mdlrt_free(d);
  int64_t h2 = mdlrt_pool_peak() - base;
  printf("pool probe: used after 4+33+1000: %lld (want 1037); after free 33: "
         "%lld (want 1004); peak after reset: %lld (want 1004); +7: %lld "
         "(want 1011); after free: %lld (want 1011)\n",
         (long long)u1, (long long)u2, (long long)h0, (long long)h1,
         (long long)h2);
  int ok = u1 == 1037 && u2 == 1004 && h0 == 1004 && h1 == 1011 && h2 == 1011;
  printf("pool probe: %s\n", ok ? "PASS" : "FAIL");
  mdlrt_free(a);
  mdlrt_free(c);
}

int main(int argc, char **argv) {
  dir = argc > 1 ? argv[1] : ".";
  mdlrt_config cfg = {"rt_test", 0, 0};
  mdlrt_init(&cfg);
  t_pool_probe();
  void *ws = mdlrt_alloc(32 << 20, 0);
  mdlrt_set_workspace(ws, 32 << 20);
  t_linear("linear", MDLRT_F32);
  t_linear("linear_bf16", MDLRT_BF16);
  t_matmul("matmul_nn", 0, 0, 0);
  t_matmul("matmul_nt", 0, 1, 0);
  t_matmul("matmul_tn_bcast", 1, 0, 1);
  t_conv();
  t_conv_bf16();
  t_conv_big("conv2d_f32_acc", F);
  t_conv_big("conv2d_f16_acc", MDLRT_F16);
  /* A small workspace: the fast engines' scratch fits only for part of the
   * batch, so the graph path runs the convolution in chunks of it. */
  mdlrt_set_workspace(ws, 160 << 10);
  t_conv_big("conv2d_f16_chunk", MDLRT_F16);
  t_conv_big("conv2d_f32_chunk", F);
  t_conv_gemm(ws);
  mdlrt_set_workspace(ws, 32 << 20);
  t_pool();
  t_norms();
  t_fast_paths(ws);
  t_elementwise();
  t_rows();
  t_optim();
  t_new_kernels(ws);
  mdlrt_sync();
  mdlrt_shutdown();
  printf("rt_test: wrote %s\n", dir);
  return 0;
}
