/* bench/scan_bench.cu: times mdlc's selective_scan (forward, backward) and
 * its depthwise causal conv1d on Mamba's shapes; bench/scan.py runs it and
 * sets the times against PyTorch and against the bandwidth floor.
 *
 * Each line: RESULT op=... dtype=... N= D= S= L= ws_mib= fwd_ms= bwd_ms=
 * (medians of 20 calls after 3, CUDA events, bench.h). The backward's
 * workspace is the default 32 MiB, then 256 MiB (its chunk checkpoints
 * fit at a finer chunking; with 32 MiB the long shapes run in batch
 * slices). Inputs: Mamba's initialisation (A_log = log(s + 1), dt in
 * [0.001, 0.1]), the rest uniform in [-1, 1).
 */
#include <stdio.h>

#include "mdlrt.h"
#include "bench.h"

static unsigned long long rng = 88172645463325252ull;
static double urand(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

static void fill(Buf *b, double lo, double hi, int64_t period) {
  double *h = (double *)malloc(b->n * sizeof(double));
  for (int64_t i = 0; i < b->n; i++)
    h[i] = period ? log((double)(i % period) + 1.0) : lo + (hi - lo) * urand();
  mdlrt_write_all(ref(b), h);
  free(h);
}

typedef struct {
  Buf x, dt, b, c, Al, Ds, y, dy, dx, ddt, db, dc, dA, dD;
} Scan;

static void scan_fwd(void *p) {
  Scan *s = (Scan *)p;
  mdlrt_selective_scan_fwd(ref(&s->y), ref(&s->x), ref(&s->dt), ref(&s->b),
                           ref(&s->c), ref(&s->Al), ref(&s->Ds));
}

static void scan_bwd(void *p) {
  Scan *s = (Scan *)p;
  mdlrt_selective_scan_bwd(ref(&s->dx), 0, ref(&s->ddt), 0, ref(&s->db), 0,
                           ref(&s->dc), 0, ref(&s->dA), 0, ref(&s->dD), 0,
                           ref(&s->dy), ref(&s->x), ref(&s->dt), ref(&s->b),
                           ref(&s->c), ref(&s->Al), ref(&s->Ds));
}

static void bench_scan(int dt, int64_t N, int64_t D, int64_t S, int64_t L,
                       void *ws) {
  int64_t xd[3] = {N, D, L}, bd[3] = {N, S, L}, ad[2] = {D, S}, dd[1] = {D};
  Scan s;
  s.x = mk(dt, 3, xd), s.dt = mk(dt, 3, xd), s.dy = mk(dt, 3, xd);
  s.b = mk(dt, 3, bd), s.c = mk(dt, 3, bd);
  s.Al = mk(MDLRT_F32, 2, ad), s.Ds = mk(MDLRT_F32, 1, dd);
  s.y = mk(dt, 3, xd), s.dx = mk(dt, 3, xd), s.ddt = mk(dt, 3, xd);
  s.db = mk(dt, 3, bd), s.dc = mk(dt, 3, bd);
  s.dA = mk(MDLRT_F32, 2, ad), s.dD = mk(MDLRT_F32, 1, dd);
  fill(&s.x, -1, 1, 0), fill(&s.dt, 0.001, 0.1, 0), fill(&s.dy, -1, 1, 0);
  fill(&s.b, -1, 1, 0), fill(&s.c, -1, 1, 0), fill(&s.Al, 0, 0, S);
  fill(&s.Ds, -1, 1, 0);
  const char *name = dt == MDLRT_F32 ? "f32" : "bf16";
  double fwd = timeit(scan_fwd, &s);
  static const int mib[] = {32, 256};
  for (int k = 0; k < 2; k++) {
    mdlrt_set_workspace(ws, (int64_t)mib[k] << 20);
    double bwd = timeit(scan_bwd, &s);
    printf("RESULT op=scan dtype=%s N=%lld D=%lld S=%lld L=%lld ws_mib=%d "
           "scratch=%lld fwd_ms=%.4f bwd_ms=%.4f\n",
           name, (long long)N, (long long)D, (long long)S, (long long)L,
           mib[k], (long long)mdlrt_selective_scan_bwd_scratch(N, D, S, L),
           fwd, bwd);
    fflush(stdout);
  }
  Buf *all[] = {&s.x, &s.dt, &s.b, &s.c, &s.Al, &s.Ds, &s.y,
                &s.dy, &s.dx, &s.ddt, &s.db, &s.dc, &s.dA, &s.dD};
  for (Buf *b : all) mdlrt_free(b->p);
}

typedef struct {
  Buf x, w, b, y, dy, dx, dw, db;
} Conv;

static void conv_fwd(void *p) {
  Conv *c = (Conv *)p;
  mdlrt_conv1d_fwd(ref(&c->y), ref(&c->x), ref(&c->w), ref(&c->b), 1, 3, 0,
                   1, c->x.t.dim[1]);
}

static void conv_bwd(void *p) {
  Conv *c = (Conv *)p;
  mdlrt_conv1d_bwd(ref(&c->dx), 0, ref(&c->dw), 0, ref(&c->db), 0,
                   ref(&c->dy), ref(&c->x), ref(&c->w), 1, 3, 0, 1,
                   c->x.t.dim[1]);
}

/* Mamba's conv: depthwise, causal, k = 4; weights in x's dtype */
static void bench_conv(int dt, int64_t N, int64_t C, int64_t L) {
  int64_t xd[3] = {N, C, L}, wd[3] = {C, 1, 4}, bd[1] = {C};
  Conv c;
  c.x = mk(dt, 3, xd), c.y = mk(dt, 3, xd), c.dy = mk(dt, 3, xd);
  c.dx = mk(dt, 3, xd), c.w = mk(dt, 3, wd), c.dw = mk(dt, 3, wd);
  c.b = mk(dt, 1, bd), c.db = mk(dt, 1, bd);
  fill(&c.x, -1, 1, 0), fill(&c.dy, -1, 1, 0), fill(&c.w, -1, 1, 0);
  fill(&c.b, -1, 1, 0);
  double fwd = timeit(conv_fwd, &c), bwd = timeit(conv_bwd, &c);
  printf("RESULT op=conv1d dtype=%s N=%lld C=%lld L=%lld K=4 fwd_ms=%.4f "
         "bwd_ms=%.4f\n",
         dt == MDLRT_F32 ? "f32" : "bf16", (long long)N, (long long)C,
         (long long)L, fwd, bwd);
  fflush(stdout);
  Buf *all[] = {&c.x, &c.w, &c.b, &c.y, &c.dy, &c.dx, &c.dw, &c.db};
  for (Buf *b : all) mdlrt_free(b->p);
}

int main(void) {
  mdlrt_config cfg = {"scan_bench", 0, 0};
  mdlrt_init(&cfg);
  void *ws = mdlrt_alloc(256ll << 20, 0);
  mdlrt_set_workspace(ws, 32ll << 20);
  static const int dts[] = {MDLRT_BF16, MDLRT_F32};
  for (int k = 0; k < 2; k++) {
    bench_scan(dts[k], 8, 512, 128, 1024, ws);
    bench_scan(dts[k], 8, 512, 16, 1024, ws);
  }
  bench_scan(MDLRT_BF16, 8, 512, 128, 4096, ws);
  bench_scan(MDLRT_BF16, 1, 512, 128, 1024, ws);
  bench_conv(MDLRT_BF16, 8, 512, 1024);
  bench_conv(MDLRT_F32, 8, 512, 1024);
  mdlrt_sync();
  mdlrt_shutdown();
  return 0;
}
