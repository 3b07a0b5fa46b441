/* bench/rms_rope_reduce.cu: the runtime's rmsnorm, rope and mean over an
 * axis at transformer sizes, against the memory-bandwidth roofline: a
 * device-to-device cudaMemcpyAsync moving the same bytes (half read, half
 * written). Layernorm (the existing kernels) runs beside rmsnorm at the
 * same shapes for comparison.
 *
 * Each op runs on the runtime's stream with a 32 MiB workspace; the time is
 * the median of 20 calls (cudaEvents around each, after 3 warm-up calls).
 * "MB" is what the op must move at least: rmsnorm/layernorm forward x read
 * and y written (w, rstd negligible); backward dy and x read, dx written
 * (dw's reduction reads dy and x a second time, from L2 when they fit);
 * rope x read, y written; mean x read. GB/s = MB / ms; roof = copy ms /
 * ms (1.0: at the copy's bandwidth).
 *
 * Build (from the repository root; BUILD is where libmdlrt.a is):
 *   make BUILD=build runtime
 *   nvcc -O3 -arch=sm_90 -std=c++17 -Iruntime \
 *     -I/usr/include/x86_64-linux-gnu -o build/rms_rope_reduce \
 *     bench/rms_rope_reduce.cu build/libmdlrt.a -L/usr/local/cuda/lib64 \
 *     -lcublas -lcublasLt -lcudnn
 * Run: build/rms_rope_reduce
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdlrt_dev.cuh"

#include "mdlrt.h"
#include "bench.h"

static const char *dt_name(int dt) {
  return dt == MDLRT_F32 ? "f32" : dt == MDLRT_F16 ? "f16" : "bf16";
}
static int dt_size(int dt) { return dt == MDLRT_F32 ? 4 : 2; }

/* The roofline: a copy that reads bytes / 2 and writes bytes / 2. */
static void *copy_src, *copy_dst;
static int64_t copy_bytes;
static void run_copy(void *) {
  CUDA_CHECK(cudaMemcpyAsync(copy_dst, copy_src, (size_t)copy_bytes,
                             cudaMemcpyDeviceToDevice, mdlrt_rt.stream));
}
static double time_copy(double mb) {
  copy_bytes = (int64_t)(mb * 1e6 / 2);
  copy_src = mdlrt_alloc(copy_bytes + 16, 1);
  copy_dst = mdlrt_alloc(copy_bytes + 16, 0);
  double t = timeit(run_copy, NULL);
  mdlrt_free(copy_src), mdlrt_free(copy_dst);
  return t;
}

static void row(const char *op, const char *shape, const char *dts, double ms,
                double mb) {
  double cms = time_copy(mb);
  printf("%-16s %-22s %-14s %8.4f %8.1f %7.0f %8.4f %5.2f\n", op, shape, dts,
         ms, mb, mb / ms, cms, cms / ms);
  fflush(stdout);
}

/* ---- rmsnorm and layernorm -------------------------------------------- */

typedef struct {
  Buf x, w, b, y, dy, dx, dw, db, mean, rstd;
} Norm;

static void rms_fwd(void *a) {
  Norm *t = (Norm *)a;
  mdlrt_rmsnorm_fwd(ref(&t->y), ref(&t->rstd), ref(&t->x), ref(&t->w), 1e-6);
}
static void rms_bwd(void *a) {
  Norm *t = (Norm *)a;
  mdlrt_rmsnorm_bwd(ref(&t->dx), 0, ref(&t->dw), 0, ref(&t->dy), ref(&t->x),
                    ref(&t->rstd), ref(&t->w));
}
static void ln_fwd(void *a) {
  Norm *t = (Norm *)a;
  mdlrt_layernorm_fwd(ref(&t->y), ref(&t->mean), ref(&t->rstd), ref(&t->x),
                      ref(&t->w), ref(&t->b), 1e-5);
}
static void ln_bwd(void *a) {
  Norm *t = (Norm *)a;
  mdlrt_layernorm_bwd(ref(&t->dx), 0, ref(&t->dw), 0, ref(&t->db), 0,
                      ref(&t->dy), ref(&t->x), ref(&t->mean), ref(&t->rstd),
                      ref(&t->w));
}

static void bench_norm(int xdt, int wdt, int ydt, int64_t rows, int64_t D) {
  Norm t;
  int64_t d[2] = {rows, D}, dd[1] = {D}, dr[1] = {rows};
  t.x = mk(xdt, 2, d), t.dx = mk(xdt, 2, d);
  t.y = mk(ydt, 2, d), t.dy = mk(ydt, 2, d);
  t.w = mk(wdt, 1, dd), t.b = mk(wdt, 1, dd), t.dw = mk(wdt, 1, dd);
  t.db = mk(wdt, 1, dd), t.mean = mk(MDLRT_F32, 1, dr);
  t.rstd = mk(MDLRT_F32, 1, dr);
  mdlrt_init_uniform(ref(&t.x), 1, 1.0), mdlrt_init_uniform(ref(&t.dy), 2, 1.0);
  mdlrt_init_uniform(ref(&t.w), 3, 1.0), mdlrt_init_uniform(ref(&t.b), 4, 1.0);
  char shape[64], dts[64];
  snprintf(shape, sizeof shape, "[%lld, %lld]", (long long)rows,
           (long long)D);
  snprintf(dts, sizeof dts, "x %s w %s y %s", dt_name(xdt), dt_name(wdt),
           dt_name(ydt));
  double n = (double)rows * D;
  double mbf = n * (dt_size(xdt) + dt_size(ydt)) / 1e6;
  double mbb = n * (2 * dt_size(xdt) + dt_size(ydt)) / 1e6;
  row("rmsnorm fwd", shape, dts, timeit(rms_fwd, &t), mbf);
  row("rmsnorm bwd", shape, dts, timeit(rms_bwd, &t), mbb);
  row("layernorm fwd", shape, dts, timeit(ln_fwd, &t), mbf);
  row("layernorm bwd", shape, dts, timeit(ln_bwd, &t), mbb);
  Buf *all[] = {&t.x, &t.w, &t.b, &t.y, &t.dy, &t.dx, &t.dw, &t.db, &t.mean,
                &t.rstd};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) mdlrt_free(all[i]->p);
}

/* ---- rope: the heads of a [B, S, H, Dh] projection, as [B, H, S, Dh] ---- */

typedef struct {
  Buf x, y;
  mdlrt_tensor xv;
} Rope;

static void rope_fwd(void *a) {
  Rope *t = (Rope *)a;
  mdlrt_rope_fwd(ref(&t->y), mdlrt_at(t->x.p, &t->xv), 10000.0);
}

static void bench_rope(int dt, int64_t B, int64_t H, int64_t S, int64_t Dh) {
  Rope t;
  int64_t xd[4] = {B, S, H, Dh}, yd[4] = {B, H, S, Dh};
  t.x = mk(dt, 4, xd), t.y = mk(dt, 4, yd);
  mdlrt_init_uniform(ref(&t.x), 5, 1.0);
  t.xv = t.y.t; /* [B, H, S, Dh] over x's buffer */
  t.xv.st[0] = S * H * Dh, t.xv.st[1] = Dh, t.xv.st[2] = H * Dh;
  t.xv.st[3] = 1;
  char shape[64];
  snprintf(shape, sizeof shape, "[%lld, %lld, %lld, %lld]", (long long)B,
           (long long)H, (long long)S, (long long)Dh);
  row("rope fwd (view)", shape, dt_name(dt), timeit(rope_fwd, &t),
      2.0 * t.x.n * dt_size(dt) / 1e6);
  mdlrt_free(t.x.p), mdlrt_free(t.y.p);
}

/* ---- mean over one axis ---------------------------------------------------- */

typedef struct {
  Buf x, y;
  int axis;
} Red;

static void red_fwd(void *a) {
  Red *t = (Red *)a;
  mdlrt_reduce_fwd(1, ref(&t->y), ref(&t->x), t->axis);
}

static void bench_reduce(int dt, int rank, const int64_t *dim, int axis) {
  Red t;
  int64_t yd[MDLRT_MAX_RANK];
  int yr = 0;
  for (int k = 0; k < rank; k++)
    if (k != axis) yd[yr++] = dim[k];
  t.x = mk(dt, rank, dim), t.y = mk(dt, yr, yd), t.axis = axis;
  mdlrt_init_uniform(ref(&t.x), 6, 1.0);
  char shape[64], op[32];
  int n = snprintf(shape, sizeof shape, "[");
  for (int k = 0; k < rank; k++)
    n += snprintf(shape + n, sizeof shape - n, "%s%lld", k ? ", " : "",
                  (long long)dim[k]);
  snprintf(shape + n, sizeof shape - n, "]");
  snprintf(op, sizeof op, "mean axis %d", axis);
  row(op, shape, dt_name(dt), timeit(red_fwd, &t),
      (double)t.x.n * dt_size(dt) / 1e6);
  mdlrt_free(t.x.p), mdlrt_free(t.y.p);
}

int main(void) {
  mdlrt_config cfg = {"rms_rope_reduce", 0, 0};
  mdlrt_init(&cfg);
  void *ws = mdlrt_alloc(32 << 20, 0);
  mdlrt_set_workspace(ws, 32 << 20);
  printf("%-16s %-22s %-14s %8s %8s %7s %8s %5s\n", "op", "shape", "dtypes",
         "ms", "MB", "GB/s", "copy ms", "roof");
  int f = MDLRT_F32, b = MDLRT_BF16;
  /* GPT-2 small's rows (batch 8 x 1024), a 7B model's (4096 x 4096) */
  bench_norm(b, b, b, 8192, 768);
  bench_norm(b, f, f, 8192, 768);
  bench_norm(f, f, f, 8192, 768);
  bench_norm(b, b, b, 4096, 4096);
  bench_norm(b, f, f, 4096, 4096);
  /* attention's heads: 12 x 64 (GPT-2 small), 32 x 128 (7B) */
  bench_rope(b, 8, 12, 1024, 64);
  bench_rope(b, 2, 32, 2048, 128);
  bench_rope(f, 8, 12, 1024, 64);
  /* mean over the sequence (middle), the features (last), the batch
   * (first) */
  int64_t a[3] = {8, 1024, 768}, c[2] = {4096, 4096}, e[2] = {16, 1 << 20};
  bench_reduce(f, 3, a, 1);
  bench_reduce(f, 3, a, 2);
  bench_reduce(b, 3, a, 1);
  bench_reduce(f, 2, c, 0);
  bench_reduce(f, 2, e, 1);
  mdlrt_sync();
  mdlrt_shutdown();
  return 0;
}
