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

/* The backward-filter through im2col + cuBLAS (mdlrt_nn.cu, fg_run) into a
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
  t_elementwise();
  t_rows();
  t_optim();
  mdlrt_sync();
  mdlrt_shutdown();
  printf("rt_test: wrote %s\n", dir);
  return 0;
}
