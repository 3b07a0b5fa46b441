/* tests/gpu/scan_test.cu: runs selective_scan and conv1d (runtime/
 * mdlrt_scan.cu) on random inputs and dumps inputs and results in
 * rt_test's format; tests/gpu/scan_check.py recomputes each case in
 * PyTorch float64 (the recurrence under autograd, F.conv1d) and compares.
 *
 * Cases: f32, f16, bf16; S = 16, 64, 128 and an odd S; L not a multiple of
 * any chunk; dt, b and c as strided views (slices of one projection after
 * a transpose, and a transposed [N, L, *] layout); accumulating gradients;
 * a workspace that forces the batch into slices; a Mamba-sized case
 * (N 2, D 512, S 128, L 1024). The backward runs twice on two cases and
 * the results must be bit-identical (dumped as `det`, 1 or 0). conv1d:
 * depthwise causal k = 4 (f32; bf16 with f32 weights; f16 accumulating)
 * and a grouped, strided, dilated, padded case.
 *
 * Usage: scan_test DIR [small]   (writes DIR/<case>.bin; `small` leaves
 * out the two Mamba-sized cases, for runs under compute-sanitizer)
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

static double urand(void) { /* xorshift64, uniform in [0, 1) */
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

static const int esize[] = {4, 2, 2, 4, 8, 1};

/* A tensor: its geometry and its buffer (a view shares another's). */
typedef struct {
  mdlrt_tensor t;
  void *p;
} Tensor;

static Tensor mk(int dt, std::initializer_list<int64_t> dims) {
  Tensor x;
  memset(&x, 0, sizeof x);
  x.t.dt = dt, x.t.rank = (int)dims.size();
  int64_t n = 1;
  for (int d = x.t.rank - 1; d >= 0; d--) {
    x.t.dim[d] = dims.begin()[d];
    x.t.st[d] = n;
    n *= x.t.dim[d];
  }
  x.p = mdlrt_alloc(n * esize[dt], 1);
  return x;
}

/* A rank-3 view into base's buffer. */
static Tensor view3(const Tensor *base, int64_t d0, int64_t d1, int64_t d2,
                    int64_t s0, int64_t s1, int64_t s2, int64_t off) {
  Tensor v;
  memset(&v, 0, sizeof v);
  v.t.dt = base->t.dt, v.t.rank = 3;
  v.t.dim[0] = d0, v.t.dim[1] = d1, v.t.dim[2] = d2;
  v.t.st[0] = s0, v.t.st[1] = s1, v.t.st[2] = s2;
  v.t.off = off;
  v.p = base->p;
  return v;
}

static int64_t numel(const Tensor *x) {
  int64_t n = 1;
  for (int d = 0; d < x->t.rank; d++) n *= x->t.dim[d];
  return n;
}

static mdlrt_ref R(Tensor *x) { return mdlrt_at(x->p, &x->t); }
static const mdlrt_ref NONE = {NULL, NULL};

/* Fills x (through its geometry) with uniform values in [lo, hi). */
static void fill(Tensor *x, double lo, double hi) {
  int64_t n = numel(x);
  double *h = (double *)malloc((n ? n : 1) * sizeof(double));
  for (int64_t i = 0; i < n; i++) h[i] = lo + (hi - lo) * urand();
  mdlrt_write_all(R(x), h);
  free(h);
}

static Tensor rnd(int dt, std::initializer_list<int64_t> dims, double lo,
                  double hi) {
  Tensor x = mk(dt, dims);
  fill(&x, lo, hi);
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
static void dump_h(const char *name, int rank, const int64_t *dim,
                   const double *h, int64_t n) {
  unsigned len = (unsigned)strlen(name), r = (unsigned)rank;
  fwrite(&len, 4, 1, cur);
  fwrite(name, 1, len, cur);
  fwrite(&r, 4, 1, cur);
  fwrite(dim, 8, r, cur);
  fwrite(h, 8, n, cur);
}

static void dump(const char *name, Tensor *x) {
  int64_t n = numel(x);
  double *h = (double *)malloc((n ? n : 1) * sizeof(double));
  mdlrt_read_all(R(x), h);
  dump_h(name, x->t.rank, x->t.dim, h, n);
  free(h);
}

static void dump_scalar(const char *name, double v) {
  int64_t one = 1;
  dump_h(name, 1, &one, &v, 1);
}

static void end(void) { fclose(cur); }

/* Bit equality of two tensors' contents (synchronizes). */
static int same_bits(Tensor *a, Tensor *b) {
  int64_t n = numel(a);
  double *x = (double *)malloc(n * 8), *y = (double *)malloc(n * 8);
  mdlrt_read_all(R(a), x);
  mdlrt_read_all(R(b), y);
  int same = memcmp(x, y, n * 8) == 0;
  free(x), free(y);
  return same;
}

#define F MDLRT_F32
#define H MDLRT_F16
#define B MDLRT_BF16

/* How dt, b, c are laid out. */
enum {
  CONTIG,     /* each its own contiguous [N, *, L] */
  PROJ,       /* b, c: slices of one [N, R + 2S, L] (x_proj, transposed) */
  TRANSPOSED  /* dt [N, L, D] and b, c slices of [N, L, R + 2S], read as
                 [N, *, L] views (element stride along L > 1) */
};

static void t_scan(const char *name, int dt, int64_t N, int64_t D, int64_t S,
                   int64_t L, int layout, int acc, int64_t ws_bytes,
                   void *ws, int det) {
  begin(name);
  mdlrt_set_workspace(ws, ws_bytes);
  Tensor x = rnd(dt, {N, D, L}, -1, 1), dy = rnd(dt, {N, D, L}, -1, 1);
  Tensor dtv, bv, cv, proj;
  int64_t Rk = 5, W = Rk + 2 * S; /* a dt_rank-like lead, then b, then c */
  if (layout == CONTIG) {
    dtv = rnd(dt, {N, D, L}, 0.001, 0.1);
    bv = rnd(dt, {N, S, L}, -1, 1);
    cv = rnd(dt, {N, S, L}, -1, 1);
  } else if (layout == PROJ) {
    dtv = rnd(dt, {N, D, L}, 0.001, 0.1);
    proj = rnd(dt, {N, W, L}, -1, 1);
    bv = view3(&proj, N, S, L, W * L, L, 1, Rk * L);
    cv = view3(&proj, N, S, L, W * L, L, 1, (Rk + S) * L);
  } else {
    Tensor dtT = mk(dt, {N, L, D});
    dtv = view3(&dtT, N, D, L, L * D, 1, D, 0);
    fill(&dtv, 0.001, 0.1);
    proj = rnd(dt, {N, L, W}, -1, 1);
    bv = view3(&proj, N, S, L, L * W, 1, W, Rk);
    cv = view3(&proj, N, S, L, L * W, 1, W, Rk + S);
  }
  /* Mamba's initialisation: A_log[d, s] = log(s + 1), here jittered */
  Tensor Al = mk(F, {D, S}), Ds = rnd(F, {D}, -1, 1);
  {
    double *h = (double *)malloc(D * S * 8);
    for (int64_t i = 0; i < D * S; i++)
      h[i] = log((double)(i % S) + 1.0) + 0.2 * (urand() - 0.5);
    mdlrt_write_all(R(&Al), h);
    free(h);
  }
  Tensor y = mk(dt, {N, D, L});
  Tensor gx = acc ? rnd(dt, {N, D, L}, -1, 1) : mk(dt, {N, D, L});
  Tensor gdt = acc ? rnd(dt, {N, D, L}, -1, 1) : mk(dt, {N, D, L});
  Tensor gb = acc ? rnd(dt, {N, S, L}, -1, 1) : mk(dt, {N, S, L});
  Tensor gc = acc ? rnd(dt, {N, S, L}, -1, 1) : mk(dt, {N, S, L});
  Tensor gA = acc ? rnd(F, {D, S}, -1, 1) : mk(F, {D, S});
  Tensor gD = acc ? rnd(F, {D}, -1, 1) : mk(F, {D});
  dump("x", &x), dump("dt", &dtv), dump("b", &bv), dump("c", &cv);
  dump("A_log", &Al), dump("Dskip", &Ds), dump("dy", &dy);
  if (acc) {
    dump("dx0", &gx), dump("ddt0", &gdt), dump("db0", &gb), dump("dc0", &gc);
    dump("dA_log0", &gA), dump("dDskip0", &gD);
  }
  mdlrt_selective_scan_fwd(R(&y), R(&x), R(&dtv), R(&bv), R(&cv), R(&Al),
                           R(&Ds));
  mdlrt_selective_scan_bwd(R(&gx), acc, R(&gdt), acc, R(&gb), acc, R(&gc),
                           acc, R(&gA), acc, R(&gD), acc, R(&dy), R(&x),
                           R(&dtv), R(&bv), R(&cv), R(&Al), R(&Ds));
  dump("y", &y), dump("dx", &gx), dump("ddt", &gdt), dump("db", &gb);
  dump("dc", &gc), dump("dA_log", &gA), dump("dDskip", &gD);
  if (det) { /* again, overwriting, into fresh buffers: the same bits? */
    Tensor y2 = mk(dt, {N, D, L}), x2 = mk(dt, {N, D, L});
    Tensor t2 = mk(dt, {N, D, L}), b2 = mk(dt, {N, S, L});
    Tensor c2 = mk(dt, {N, S, L}), A2 = mk(F, {D, S}), D2 = mk(F, {D});
    Tensor x1 = mk(dt, {N, D, L}), t1 = mk(dt, {N, D, L});
    Tensor b1 = mk(dt, {N, S, L}), c1 = mk(dt, {N, S, L});
    Tensor A1 = mk(F, {D, S}), D1 = mk(F, {D});
    for (int k = 0; k < 2; k++) {
      Tensor *o[6] = {k ? &x2 : &x1, k ? &t2 : &t1, k ? &b2 : &b1,
                      k ? &c2 : &c1, k ? &A2 : &A1, k ? &D2 : &D1};
      mdlrt_selective_scan_bwd(R(o[0]), 0, R(o[1]), 0, R(o[2]), 0, R(o[3]),
                               0, R(o[4]), 0, R(o[5]), 0, R(&dy), R(&x),
                               R(&dtv), R(&bv), R(&cv), R(&Al), R(&Ds));
    }
    mdlrt_selective_scan_fwd(R(&y2), R(&x), R(&dtv), R(&bv), R(&cv), R(&Al),
                             R(&Ds));
    int same = same_bits(&y, &y2) && same_bits(&x1, &x2) &&
               same_bits(&t1, &t2) && same_bits(&b1, &b2) &&
               same_bits(&c1, &c2) && same_bits(&A1, &A2) &&
               same_bits(&D1, &D2);
    if (!acc) same = same && same_bits(&x1, &gx) && same_bits(&b1, &gb);
    dump_scalar("det", same);
    printf("%s: two backward runs %s\n", name,
           same ? "bit-identical" : "DIFFER");
  }
  printf("%s: scratch %lld bytes for the whole batch, workspace %lld\n", name,
         (long long)mdlrt_selective_scan_bwd_scratch(N, D, S, L),
         (long long)ws_bytes);
  end();
  mdlrt_sync();
}

static void t_conv1d(const char *name, int dt, int wdt, int64_t N, int64_t C,
                     int64_t L, int64_t O, int64_t K, int64_t stride,
                     int64_t pl, int64_t pr, int64_t dil, int64_t groups,
                     int bias, int acc) {
  begin(name);
  int64_t OL = (L + pl + pr - dil * (K - 1) - 1) / stride + 1;
  Tensor x = rnd(dt, {N, C, L}, -1, 1), w = rnd(wdt, {O, C / groups, K}, -1, 1);
  Tensor b = rnd(wdt, {O}, -1, 1), dy = rnd(dt, {N, O, OL}, -1, 1);
  Tensor y = mk(dt, {N, O, OL});
  Tensor dx = acc ? rnd(dt, {N, C, L}, -1, 1) : mk(dt, {N, C, L});
  Tensor dw = acc ? rnd(wdt, {O, C / groups, K}, -1, 1)
                  : mk(wdt, {O, C / groups, K});
  Tensor db = mk(wdt, {O});
  dump("x", &x), dump("w", &w), dump("dy", &dy);
  if (bias) dump("b", &b);
  if (acc) dump("dx0", &dx), dump("dw0", &dw);
  mdlrt_conv1d_fwd(R(&y), R(&x), R(&w), bias ? R(&b) : NONE, stride, pl, pr,
                   dil, groups);
  mdlrt_conv1d_bwd(R(&dx), acc, R(&dw), acc, bias ? R(&db) : NONE, 0, R(&dy),
                   R(&x), R(&w), stride, pl, pr, dil, groups);
  dump("y", &y), dump("dx", &dx), dump("dw", &dw);
  if (bias) dump("db", &db);
  end();
  mdlrt_sync();
}

int main(int argc, char **argv) {
  dir = argc > 1 ? argv[1] : ".";
  int small = argc > 2 && !strcmp(argv[2], "small");
  mdlrt_config cfg = {"scan_test", 0, 0};
  mdlrt_init(&cfg);
  int64_t wsb = 256ll << 20;
  void *ws = mdlrt_alloc(wsb, 0);
  int64_t M32 = 32ll << 20;
  /*      name                dtype N  D    S    L     layout      acc ws */
  t_scan("scan_f32_s16", F, 2, 64, 16, 300, CONTIG, 0, M32, ws, 1);
  t_scan("scan_f32_s128", F, 2, 40, 128, 517, CONTIG, 0, M32, ws, 0);
  t_scan("scan_f32_s13_tr", F, 2, 24, 13, 201, TRANSPOSED, 0, M32, ws, 0);
  t_scan("scan_bf16_s128_proj", B, 2, 48, 128, 333, PROJ, 0, M32, ws, 0);
  t_scan("scan_f16_s16_acc", H, 3, 32, 16, 129, PROJ, 1, M32, ws, 0);
  t_scan("scan_bf16_s64_tr_acc", B, 2, 40, 64, 250, TRANSPOSED, 1, M32, ws, 0);
  /* half the bytes the whole batch needs: the batch goes in slices */
  int64_t half = mdlrt_selective_scan_bwd_scratch(4, 32, 64, 700) / 2;
  t_scan("scan_f32_slices", F, 4, 32, 64, 700, PROJ, 0, half, ws, 1);
  /* Mamba-sized, 16-bit, the default workspace */
  if (!small) {
    t_scan("scan_bf16_mamba", B, 2, 512, 128, 1024, PROJ, 0, M32, ws, 1);
    t_scan("scan_f32_mamba_s16", F, 2, 512, 16, 1024, CONTIG, 0, M32, ws, 0);
  }
  /*        name                  x  w  N  C   L    O   K st pl pr dil g  b acc */
  t_conv1d("conv1d_dw_f32", F, F, 2, 64, 333, 64, 4, 1, 3, 0, 1, 64, 1, 0);
  t_conv1d("conv1d_dw_bf16_w32", B, F, 2, 64, 257, 64, 4, 1, 3, 0, 1, 64, 1, 0);
  t_conv1d("conv1d_dw_f16_acc", H, H, 2, 32, 100, 32, 4, 1, 3, 0, 1, 32, 1, 1);
  t_conv1d("conv1d_general", F, F, 2, 12, 50, 8, 3, 2, 2, 1, 2, 4, 1, 1);
  t_conv1d("conv1d_dense_nobias", F, F, 2, 6, 40, 5, 5, 1, 4, 0, 1, 1, 0, 0);
  mdlrt_sync();
  mdlrt_shutdown();
  printf("scan_test: wrote %s\n", dir);
  return 0;
}
