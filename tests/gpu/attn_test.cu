/* tests/gpu/attn_test.cu: runs the fused attention of runtime/mdlrt_attn.cu
 * (mdlrt_sdpa_fwd, mdlrt_sdpa_bwd) on random data and dumps inputs and
 * results; tests/gpu/attn_check.py recomputes each case with PyTorch in
 * float64 and compares (atol + rtol*|ref| per dtype).
 *
 * Cases cover f32, f16 and bf16; causal or not; grouped-query heads;
 * dropout 0 and 0.1 (the step and seed are dumped, the checker redraws the
 * mask); head dims 32 to 128; S != T; q, k, v as the transposed [B, S, H,
 * Dh] slices of one fused qkv buffer (and their gradients as views of one
 * fused gradient buffer, as autodiff of a split makes them), contiguous
 * ones, and rows too narrow for 16-byte loads; o as a transposed view; one
 * case accumulating (accum = 1) into gradients that hold values, one with
 * dv not wanted. Each case runs twice and must give the same bits.
 *
 * Record format as rt_test's: u32 name length, name, u32 rank, i64 dims,
 * f64 data; "params" holds the case's scalars.
 *
 * Usage: attn_test DIR          the cases, DIR/attn_<case>.bin
 *        attn_test --small-ws   a backward with too small a workspace:
 *                               must print both sizes and exit 1
 * Build: see tests/gpu/attn.sh.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "mdlrt.h"

static FILE *cur;
static unsigned long long rng = 88172645463325252ull;
static int failures;

static double urand(void) { /* xorshift64, uniform in [-1, 1) */
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static int esize(int dt) { return dt == MDLRT_F32 ? 4 : 2; }

/* A view into a buffer. */
typedef struct {
  mdlrt_tensor t;
  void *base;
} View4;

static int64_t numel(const mdlrt_tensor *t) {
  int64_t n = 1;
  for (int d = 0; d < t->rank; d++) n *= t->dim[d];
  return n;
}
static mdlrt_ref R(View4 *v) { return mdlrt_at(v->base, &v->t); }
static const mdlrt_ref NONE = {NULL, NULL};

/* [n0, n1, n2, n3] at element offset off of base, strides given */
static View4 view(int dt, void *base, int64_t off, const int64_t n[4],
                  const int64_t st[4]) {
  View4 v;
  memset(&v, 0, sizeof v);
  v.t.dt = dt, v.t.rank = 4, v.t.off = off, v.base = base;
  for (int d = 0; d < 4; d++) v.t.dim[d] = n[d], v.t.st[d] = st[d];
  return v;
}
static View4 contig(int dt, int64_t a, int64_t b, int64_t c, int64_t d) {
  int64_t n[4] = {a, b, c, d}, st[4] = {b * c * d, c * d, d, 1};
  return view(dt, mdlrt_alloc(a * b * c * d * esize(dt), 1), 0, n, st);
}

static void fill(View4 *v, double amp) {
  int64_t n = numel(&v->t);
  double *h = (double *)malloc((size_t)n * sizeof(double));
  for (int64_t i = 0; i < n; i++) h[i] = amp * urand();
  mdlrt_write_all(R(v), h);
  free(h);
}

static void dump_raw(const char *name, int rank, const int64_t *dim,
                     const double *h, int64_t n) {
  unsigned len = (unsigned)strlen(name), r = (unsigned)rank;
  fwrite(&len, 4, 1, cur);
  fwrite(name, 1, len, cur);
  fwrite(&r, 4, 1, cur);
  fwrite(dim, 8, r, cur);
  fwrite(h, 8, (size_t)n, cur);
}
static void dump(const char *name, View4 *v) {
  int64_t n = numel(&v->t);
  double *h = (double *)malloc((size_t)(n ? n : 1) * sizeof(double));
  mdlrt_read_all(R(v), h);
  dump_raw(name, v->t.rank, v->t.dim, h, n);
  free(h);
}

/* The bytes of a view's whole buffer span, for the rerun comparison. */
static void *host_copy(View4 *v, size_t *bytes) {
  int64_t last = v->t.off;
  for (int d = 0; d < v->t.rank; d++) last += (v->t.dim[d] - 1) * v->t.st[d];
  *bytes = (size_t)(last + 1) * esize(v->t.dt);
  void *h = malloc(*bytes);
  mdlrt_sync();
  if (cudaMemcpy(h, v->base, *bytes, cudaMemcpyDeviceToHost) != cudaSuccess) {
    printf("attn_test: cudaMemcpy failed\n");
    exit(2);
  }
  return h;
}

enum { L_FUSED, L_SPLIT, L_CONTIG, L_NARROW }; /* input layouts */

typedef struct {
  const char *name;
  int dt, B, H, Hkv, S, T, Dh, causal;
  double p;
  int layout;   /* L_* */
  int o_t;      /* o as a transposed [B, S, H, Dh] view */
  int accum;    /* gradients hold values, accum = 1 */
  int no_dv;    /* dv not wanted */
  double qamp;  /* |q| scale: peaked softmax rows */
} Case;

/* q, k, v (and their gradients, same geometry) for a case's layout. */
static void make_qkv(const Case *c, View4 *q, View4 *k, View4 *v, int zero) {
  const int dt = c->dt;
  const int64_t B = c->B, H = c->H, G = c->Hkv, S = c->S, T = c->T, D = c->Dh;
  int64_t nq[4] = {B, H, S, D}, nk[4] = {B, G, T, D};
  (void)zero;
  if (c->layout == L_FUSED || c->layout == L_NARROW) { /* one [B, S, W] */
    int64_t W = (H + 2 * G) * D + (c->layout == L_NARROW ? 1 : 0);
    void *buf = mdlrt_alloc(B * S * W * esize(dt), 1);
    int64_t st[4] = {S * W, D, W, 1};
    *q = view(dt, buf, 0, nq, st);
    *k = view(dt, buf, H * D, nk, st);
    *v = view(dt, buf, (H + G) * D, nk, st);
  } else if (c->layout == L_SPLIT) { /* q [B, S, H D], kv [B, T, 2 G D] */
    void *bq = mdlrt_alloc(B * S * H * D * esize(dt), 1);
    void *bkv = mdlrt_alloc(B * T * 2 * G * D * esize(dt), 1);
    int64_t sq[4] = {S * H * D, D, H * D, 1}, skv[4] = {T * 2 * G * D, D, 2 * G * D, 1};
    *q = view(dt, bq, 0, nq, sq);
    *k = view(dt, bkv, 0, nk, skv);
    *v = view(dt, bkv, G * D, nk, skv);
  } else {
    *q = contig(dt, B, H, S, D);
    *k = contig(dt, B, G, T, D);
    *v = contig(dt, B, G, T, D);
  }
}

static void run_case(const char *dir, const Case *c) {
  const int dt = c->dt;
  const double scale = 1.0 / sqrt((double)c->Dh);
  const uint64_t node = 9, step = 5;
  char path[512];
  snprintf(path, sizeof path, "%s/attn_%s.bin", dir, c->name);
  cur = fopen(path, "wb");
  if (!cur) {
    perror(path);
    exit(2);
  }
  View4 q, k, v, dq, dk, dv;
  make_qkv(c, &q, &k, &v, 0);
  make_qkv(c, &dq, &dk, &dv, 1);
  fill(&q, c->qamp), fill(&k, 1.0), fill(&v, 1.0);
  View4 dout = contig(dt, c->B, c->H, c->S, c->Dh);
  fill(&dout, 1.0);
  View4 o;
  if (c->o_t) {
    int64_t n[4] = {c->B, c->H, c->S, c->Dh};
    int64_t st[4] = {(int64_t)c->S * c->H * c->Dh, c->Dh, (int64_t)c->H * c->Dh, 1};
    o = view(dt, mdlrt_alloc((int64_t)c->B * c->H * c->S * c->Dh * esize(dt), 1),
             0, n, st);
  } else {
    o = contig(dt, c->B, c->H, c->S, c->Dh);
  }
  View4 lse;
  memset(&lse, 0, sizeof lse);
  lse.t.dt = MDLRT_F32, lse.t.rank = 3;
  lse.t.dim[0] = c->B, lse.t.dim[1] = c->H, lse.t.dim[2] = c->S;
  lse.t.st[0] = (int64_t)c->H * c->S, lse.t.st[1] = c->S, lse.t.st[2] = 1;
  lse.base = mdlrt_alloc((int64_t)c->B * c->H * c->S * 4, 1);
  if (c->accum) fill(&dq, 1.0), fill(&dk, 1.0), fill(&dv, 1.0);

  int64_t ws_bytes = mdlrt_sdpa_bwd_scratch(c->B, c->H, c->S, c->T, c->Dh, dt);
  void *ws = mdlrt_alloc(ws_bytes, 0);
  mdlrt_set_workspace(ws, ws_bytes); /* exactly what it asks for */

  double params[17] = {(double)dt, (double)c->B, (double)c->H, (double)c->Hkv,
                       (double)c->S, (double)c->T, (double)c->Dh,
                       (double)c->causal, c->p, scale, 1234.0, (double)step,
                       (double)node, (double)c->accum, 1.0, 1.0,
                       c->no_dv ? 0.0 : 1.0};
  int64_t np = 17;
  dump_raw("params", 1, &np, params, np);
  dump("q", &q), dump("k", &k), dump("v", &v), dump("dout", &dout);
  if (c->accum) dump("dq0", &dq), dump("dk0", &dk), dump("dv0", &dv);

  /* the grads' starting values, for the rerun */
  size_t nb[3];
  void *g0[3] = {host_copy(&dq, &nb[0]), host_copy(&dk, &nb[1]),
                 host_copy(&dv, &nb[2])};
  void *first[6] = {0};
  size_t fb[6];
  int differ = 0;
  for (int run = 0; run < 2; run++) {
    if (run) { /* restore the gradients' starting values */
      View4 *gs[3] = {&dq, &dk, &dv};
      for (int i = 0; i < 3; i++)
        if (cudaMemcpy(gs[i]->base, g0[i], nb[i], cudaMemcpyHostToDevice) !=
            cudaSuccess) {
          printf("attn_test: cudaMemcpy failed\n");
          exit(2);
        }
    }
    mdlrt_step_begin((int64_t)step, NULL);
    mdlrt_op("sdpa (attn_test)");
    mdlrt_sdpa_fwd(R(&o), R(&lse), R(&q), R(&k), R(&v), c->causal, c->p, scale,
                   node);
    mdlrt_op("backward of sdpa (attn_test)");
    mdlrt_sdpa_bwd(R(&dq), c->accum, R(&dk), c->accum,
                   c->no_dv ? NONE : R(&dv), c->accum, R(&dout), R(&q), R(&k),
                   R(&v), R(&o), R(&lse), c->causal, c->p, scale, node);
    mdlrt_sync();
    View4 *outs[6] = {&o, &lse, &dq, &dk, &dv, &dv};
    for (int i = 0; i < 5; i++) {
      size_t b;
      void *h = host_copy(outs[i], &b);
      if (!run) {
        first[i] = h, fb[i] = b;
      } else {
        if (b != fb[i] || memcmp(h, first[i], b)) {
          printf("%-28s rerun: output %d DIFFERS\n", c->name, i);
          differ++;
        }
        free(h);
      }
    }
  }
  failures += differ != 0;
  if (!differ) printf("%-28s rerun: identical bits\n", c->name);
  dump("o", &o), dump("lse", &lse), dump("dq", &dq), dump("dk", &dk);
  if (!c->no_dv) dump("dv", &dv);
  fclose(cur);
  for (int i = 0; i < 5; i++) free(first[i]);
  for (int i = 0; i < 3; i++) free(g0[i]);
  mdlrt_free(ws); /* cuBLAS keeps the pointer but runs no product here */
  /* views share bases: free each base once */
  void *bases[9] = {q.base, k.base, v.base, dq.base, dk.base, dv.base,
                    dout.base, o.base, lse.base};
  for (int i = 0; i < 9; i++) {
    int seen = 0;
    for (int j = 0; j < i; j++) seen |= bases[j] == bases[i];
    if (!seen) mdlrt_free(bases[i]);
  }
  mdlrt_sync();
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: attn_test DIR | --small-ws\n");
    return 2;
  }
  mdlrt_config cfg = {"attn_test", 1234, 0};
  mdlrt_init(&cfg);
  if (!strcmp(argv[1], "--small-ws")) {
    Case c = {"small_ws", MDLRT_BF16, 1, 2, 2, 64, 64, 64, 1, 0, L_CONTIG, 0, 0, 0, 1};
    View4 q, k, v, dq, dk, dv;
    make_qkv(&c, &q, &k, &v, 0);
    make_qkv(&c, &dq, &dk, &dv, 1);
    View4 o = contig(c.dt, 1, 2, 64, 64), dout = contig(c.dt, 1, 2, 64, 64);
    View4 lse = contig(MDLRT_F32, 1, 2, 64, 1);
    lse.t.rank = 3;
    void *ws = mdlrt_alloc(256, 0);
    mdlrt_set_workspace(ws, 256); /* needs 2 * 64 * 4 = 512 */
    mdlrt_op("backward of sdpa (small workspace)");
    mdlrt_sdpa_fwd(R(&o), R(&lse), R(&q), R(&k), R(&v), 1, 0, 0.125, 0);
    mdlrt_sdpa_bwd(R(&dq), 0, R(&dk), 0, R(&dv), 0, R(&dout), R(&q), R(&k),
                   R(&v), R(&o), R(&lse), 1, 0, 0.125, 0);
    printf("attn_test: the backward ran with too small a workspace\n");
    return 0;
  }
  const int F = MDLRT_F32, H = MDLRT_F16, BF = MDLRT_BF16;
  static const Case cases[] = {
      /* name                dt  B  H Hkv  S    T    Dh  c  p   layout  o_t acc nodv qamp */
      {"f32_d64_causal",     F,  2, 4, 4, 128, 128, 64, 1, 0.0, L_FUSED, 0, 0, 0, 2},
      {"f32_d80_gqa_drop",   F,  1, 8, 2, 96, 96, 80, 1, 0.1, L_FUSED, 1, 0, 0, 1},
      {"f32_d32_nc_s_ne_t",  F,  2, 2, 1, 70, 130, 32, 0, 0.0, L_SPLIT, 0, 0, 0, 1},
      {"f16_d64_causal",     H,  2, 4, 4, 256, 256, 64, 1, 0.0, L_FUSED, 0, 0, 0, 3},
      {"f16_d128_gqa_nc",    H,  1, 8, 2, 100, 200, 128, 0, 0.0, L_SPLIT, 1, 0, 0, 1},
      {"f16_d80_causal_drop", H, 2, 4, 4, 128, 128, 80, 1, 0.1, L_FUSED, 0, 0, 0, 2},
      {"f16_d32_nc_drop",    H,  1, 4, 1, 90, 150, 32, 0, 0.1, L_CONTIG, 0, 0, 0, 1},
      {"bf16_d64_causal_acc", BF, 2, 4, 4, 192, 192, 64, 1, 0.0, L_FUSED, 0, 1, 0, 2},
      {"bf16_d128_gqa_drop", BF, 1, 8, 2, 256, 256, 128, 1, 0.1, L_FUSED, 0, 0, 0, 2},
      {"bf16_d32_nc_s_ne_t", BF, 2, 2, 2, 50, 300, 32, 0, 0.0, L_SPLIT, 0, 0, 0, 1},
      {"bf16_d96_narrow",    BF, 1, 3, 1, 77, 77, 96, 1, 0.0, L_NARROW, 1, 0, 0, 1},
      {"bf16_d40_no_dv",     BF, 1, 2, 2, 64, 64, 40, 0, 0.0, L_CONTIG, 0, 0, 1, 1},
      {"f32_d128_narrow_acc", F, 1, 2, 1, 65, 65, 128, 1, 0.0, L_NARROW, 0, 1, 0, 1},
      {"bf16_gpt2_1k",       BF, 2, 12, 12, 1024, 1024, 64, 1, 0.0, L_FUSED, 1, 0, 0, 3},
      {"bf16_llama_1k",      BF, 1, 32, 8, 1024, 1024, 128, 1, 0.0, L_FUSED, 0, 0, 0, 2},
      {"f16_llama_drop",     H,  1, 8, 2, 512, 512, 128, 1, 0.1, L_FUSED, 0, 0, 0, 1},
  };
  const char *only = getenv("ATTN_ONLY");
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (only && !strstr(cases[i].name, only)) continue;
    run_case(argv[1], &cases[i]);
  }
  printf("attn_test: %d rerun failures\n", failures);
  mdlrt_shutdown();
  return failures ? 1 : 0;
}
