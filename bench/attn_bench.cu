/* bench/attn_bench.cu: the fused attention of runtime/mdlrt_attn.cu
 * (mdlrt_sdpa_fwd, mdlrt_sdpa_bwd) at the shapes of the models that use
 * it; bench/attn.py runs this and PyTorch's
 * F.scaled_dot_product_attention on the same shapes and prints the ratios.
 *
 * q, k, v are what the model gives sdpa: transposed [B, S, H, Dh] slices of
 * one fused qkv projection [B, S, (H + 2 Hkv) Dh], and dq, dk, dv views of
 * one fused gradient buffer of that shape; o, dO contiguous. Values uniform
 * in [-1, 1). Time: the median of 20 calls (CUDA events around each, after
 * 3 warm-up calls; bench.h). TFLOP/s counts 4 B H S T Dh for the forward,
 * halved if causal, and 2.5 times that for the backward.
 *
 * Prints one line a case:
 *   mdlc NAME fwd_ms MS bwd_ms MS fwd_tflops X bwd_tflops Y
 * MDLRT_SDPA_WARPS=8 in the environment: the forward's 8-warp variant.
 * Build (from the repository root, BUILD holding libmdlrt.a or its objects):
 *   nvcc -O3 -arch=sm_90 -std=c++17 -Iruntime -o build/attn_bench \
 *     bench/attn_bench.cu build/libmdlrt.a -lcublas -lcublasLt -lcudnn
 * Run: build/attn_bench [NAME...]   (no names: every case)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdlrt.h"
#include "bench.h"

typedef struct {
  const char *name;
  int dt, B, H, Hkv, S, Dh, causal;
} Shape;

static const Shape shapes[] = {
    {"gpt2_bf16", MDLRT_BF16, 8, 12, 12, 1024, 64, 1},
    {"gpt2_fp16", MDLRT_F16, 8, 12, 12, 1024, 64, 1},
    {"llama_b1_bf16", MDLRT_BF16, 1, 32, 8, 2048, 128, 1},
    {"llama_b2_bf16", MDLRT_BF16, 2, 32, 8, 2048, 128, 1},
    {"llama_b4_bf16", MDLRT_BF16, 4, 32, 8, 2048, 128, 1},
    {"llama_b2_fp16", MDLRT_F16, 2, 32, 8, 2048, 128, 1},
    {"gpt2_f32", MDLRT_F32, 8, 12, 12, 1024, 64, 1},
};

typedef struct {
  mdlrt_tensor q, k, v, o, lse, dout, dq, dk, dv;
  void *qkv, *dqkv, *ob, *lb, *db;
  const Shape *s;
  double scale;
} Run;

static mdlrt_tensor t4(int dt, int64_t off, const int64_t n[4],
                       const int64_t st[4]) {
  mdlrt_tensor t;
  memset(&t, 0, sizeof t);
  t.dt = dt, t.rank = 4, t.off = off;
  for (int d = 0; d < 4; d++) t.dim[d] = n[d], t.st[d] = st[d];
  return t;
}

static void fwd(void *p) {
  Run *r = (Run *)p;
  mdlrt_sdpa_fwd(mdlrt_at(r->ob, &r->o), mdlrt_at(r->lb, &r->lse),
                 mdlrt_at(r->qkv, &r->q), mdlrt_at(r->qkv, &r->k),
                 mdlrt_at(r->qkv, &r->v), r->s->causal, 0.0, r->scale, 0);
}

static void bwd(void *p) {
  Run *r = (Run *)p;
  mdlrt_sdpa_bwd(mdlrt_at(r->dqkv, &r->dq), 0, mdlrt_at(r->dqkv, &r->dk), 0,
                 mdlrt_at(r->dqkv, &r->dv), 0, mdlrt_at(r->db, &r->dout),
                 mdlrt_at(r->qkv, &r->q), mdlrt_at(r->qkv, &r->k),
                 mdlrt_at(r->qkv, &r->v), mdlrt_at(r->ob, &r->o),
                 mdlrt_at(r->lb, &r->lse), r->s->causal, 0.0, r->scale, 0);
}

static void bench(const Shape *s) {
  const int es = s->dt == MDLRT_F32 ? 4 : 2;
  const int64_t B = s->B, H = s->H, G = s->Hkv, S = s->S, D = s->Dh;
  const int64_t W = (H + 2 * G) * D;
  Run r;
  memset(&r, 0, sizeof r);
  r.s = s, r.scale = 1.0 / sqrt((double)D);
  int64_t nq[4] = {B, H, S, D}, nk[4] = {B, G, S, D}, st[4] = {S * W, D, W, 1};
  int64_t cst[4] = {H * S * D, S * D, D, 1};
  r.q = t4(s->dt, 0, nq, st), r.k = t4(s->dt, H * D, nk, st);
  r.v = t4(s->dt, (H + G) * D, nk, st);
  r.dq = r.q, r.dk = r.k, r.dv = r.v;
  r.o = t4(s->dt, 0, nq, cst), r.dout = r.o;
  r.lse = t4(MDLRT_F32, 0, nq, cst);
  r.lse.rank = 3, r.lse.st[0] = H * S, r.lse.st[1] = S, r.lse.st[2] = 1;
  r.qkv = mdlrt_alloc(B * S * W * es, 1);
  r.dqkv = mdlrt_alloc(B * S * W * es, 1);
  r.ob = mdlrt_alloc(B * H * S * D * es, 1);
  r.db = mdlrt_alloc(B * H * S * D * es, 1);
  r.lb = mdlrt_alloc(B * H * S * 4, 1);
  mdlrt_tensor all = t4(s->dt, 0, nq, st);
  all.rank = 1, all.dim[0] = B * S * W, all.st[0] = 1;
  mdlrt_init_uniform(mdlrt_at(r.qkv, &all), 1, 1.0);
  mdlrt_init_uniform(mdlrt_at(r.db, &r.dout), 2, 1.0);
  int64_t ws_bytes = mdlrt_sdpa_bwd_scratch(B, H, S, S, D, s->dt);
  void *ws = mdlrt_alloc(ws_bytes, 0);
  mdlrt_set_workspace(ws, ws_bytes);
  mdlrt_op("sdpa (bench)");
  double tf = timeit(fwd, &r);
  double tb = timeit(bwd, &r);
  double flops = 4.0 * B * H * S * S * D * (s->causal ? 0.5 : 1.0);
  printf("mdlc %s fwd_ms %.4f bwd_ms %.4f fwd_tflops %.1f bwd_tflops %.1f\n",
         s->name, tf, tb, flops / tf * 1e-9, 2.5 * flops / tb * 1e-9);
  fflush(stdout);
  void *bufs[] = {r.qkv, r.dqkv, r.ob, r.db, r.lb, ws};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) mdlrt_free(bufs[i]);
  mdlrt_sync();
}

int main(int argc, char **argv) {
  mdlrt_config cfg = {"attn_bench", 1, 0};
  mdlrt_init(&cfg);
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    int want = argc < 2;
    for (int a = 1; a < argc; a++) want |= !strcmp(argv[a], shapes[i].name);
    if (want) bench(&shapes[i]);
  }
  mdlrt_shutdown();
  return 0;
}
