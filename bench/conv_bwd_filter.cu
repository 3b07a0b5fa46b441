/* bench/conv_bwd_filter.cu: a convolution's backward-filter (dw) two ways,
 * through the runtime's public API: cuDNN (its graph or legacy path, as
 * the plan chooses) and im2col + cuBLAS (runtime/mdlrt_conv.cu, fg_run),
 * picked per plan with MDLRT_CONV_GEMM=0 and =1. Each runs with a 32 MiB
 * workspace, dw overwritten (aw = 0), no dx, no db. Shapes: the three
 * backward-filters of examples/operator_cnn.mdl in f16 (batch 16, 128x128,
 * 3x3 pad 1) and the distinct ones of ResNet-18 in f32 (batch 32).
 *
 * One line per shape: the shape, the dtype, the median of 20 timed calls
 * (cudaEvents on the runtime's stream, after 3 warm-up calls; the first
 * makes cuDNN's plan) for each path, their ratio cuDNN / GEMM (above 1:
 * the GEMM path is faster), the largest |dw_cudnn - dw_gemm| with the
 * largest |dw_cudnn| beside it for scale, and whether a second GEMM plan
 * of the same convolution gives the same dw bit for bit.
 *
 * Build (from the repository root; BUILD is where libmdlrt.a is):
 *   make BUILD=build runtime
 *   nvcc -O3 -arch=sm_90 -std=c++17 -Iruntime \
 *     -I/usr/include/x86_64-linux-gnu -o build/conv_bwd_filter \
 *     bench/conv_bwd_filter.cu build/libmdlrt.a -L/usr/local/cuda/lib64 \
 *     -lcublas -lcublasLt -lcudnn
 * Run: build/conv_bwd_filter   (MDLRT_PROF=1 also prints each plan's path
 * and chunks on stderr.)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdlrt.h"

#include "bench.h"

static const mdlrt_ref NONE = {NULL, NULL};

/* A plan with MDLRT_CONV_GEMM set to `gemm` ("0" or "1") while it is made
 * (the plan reads it), then the variable as it was. */
static mdlrt_conv *plan(const char *gemm, int dt, int64_t N, int64_t C,
                        int64_t H, int64_t K, int64_t R, int64_t s,
                        int64_t p, int64_t P) {
  const char *old = getenv("MDLRT_CONV_GEMM");
  char keep[64] = "";
  if (old) snprintf(keep, sizeof keep, "%s", old);
  setenv("MDLRT_CONV_GEMM", gemm, 1);
  mdlrt_conv *c = mdlrt_conv_plan(dt, N, C, H, H, K, R, s, p, 1, 1, P, P);
  if (old) setenv("MDLRT_CONV_GEMM", keep, 1);
  else unsetenv("MDLRT_CONV_GEMM");
  return c;
}

/* One backward-filter through a plan (timeit's argument). */
typedef struct {
  mdlrt_conv *c;
  Buf *dw, *dy, *x, *w;
} DwCall;

static void run_dw(void *arg) {
  DwCall *k = (DwCall *)arg;
  mdlrt_conv_bwd(k->c, NONE, 0, ref(k->dw), 0, NONE, 0, ref(k->dy),
                 ref(k->x), ref(k->w));
}

/* Median milliseconds of one backward-filter through plan c. */
static double time_dw(mdlrt_conv *c, Buf *dw, Buf *dy, Buf *x, Buf *w) {
  DwCall k = {c, dw, dy, x, w};
  return timeit(run_dw, &k);
}

static void bench(const char *what, int dt, int64_t N, int64_t C, int64_t H,
                  int64_t K, int64_t R, int64_t s, int64_t p) {
  int64_t P = (H + 2 * p - R) / s + 1;
  int64_t xd[4] = {N, C, H, H}, yd[4] = {N, K, P, P}, wd[4] = {K, C, R, R};
  Buf x = mk(dt, 4, xd), dy = mk(dt, 4, yd), w = mk(dt, 4, wd);
  Buf dw0 = mk(dt, 4, wd), dw1 = mk(dt, 4, wd);
  mdlrt_init_uniform(ref(&x), 1, 1.0);
  mdlrt_init_uniform(ref(&dy), 2, 1.0);
  mdlrt_init_uniform(ref(&w), 3, 1.0);
  mdlrt_conv *c0 = plan("0", dt, N, C, H, K, R, s, p, P);
  mdlrt_conv *c1 = plan("1", dt, N, C, H, K, R, s, p, P);
  double t0 = time_dw(c0, &dw0, &dy, &x, &w);
  double t1 = time_dw(c1, &dw1, &dy, &x, &w);
  double *a = (double *)malloc(dw0.n * sizeof(double));
  double *b = (double *)malloc(dw0.n * sizeof(double));
  mdlrt_read_all(ref(&dw0), a);
  mdlrt_read_all(ref(&dw1), b);
  double diff = 0, big = 0;
  for (int64_t i = 0; i < dw0.n; i++) {
    diff = fmax(diff, fabs(a[i] - b[i]));
    big = fmax(big, fabs(a[i]));
  }
  mdlrt_conv *c2 = plan("1", dt, N, C, H, K, R, s, p, P);
  mdlrt_conv_bwd(c2, NONE, 0, ref(&dw0), 0, NONE, 0, ref(&dy), ref(&x),
                 ref(&w));
  mdlrt_read_all(ref(&dw0), a);
  int same = !memcmp(a, b, dw0.n * sizeof(double));
  char shape[96];
  snprintf(shape, sizeof shape, "%lldx%lldx%lldx%lld->%lld k%lld s%lld p%lld",
           (long long)N, (long long)C, (long long)H, (long long)H,
           (long long)K, (long long)R, (long long)s, (long long)p);
  printf("%-12s %-34s %-4s %9.3f %9.3f %7.2fx %10.3g %10.3g %s\n", what,
         shape, dt == MDLRT_F32 ? "f32" : dt == MDLRT_F16 ? "f16" : "bf16",
         t0, t1, t0 / t1, diff, big, same ? "same" : "DIFFERENT");
  fflush(stdout);
  free(a);
  free(b);
  mdlrt_free(x.p), mdlrt_free(dy.p), mdlrt_free(w.p);
  mdlrt_free(dw0.p), mdlrt_free(dw1.p);
}

int main(void) {
  mdlrt_config cfg = {"conv_bwd_filter", 0, 0};
  mdlrt_init(&cfg);
  void *ws = mdlrt_alloc(32 << 20, 0);
  mdlrt_set_workspace(ws, 32 << 20);
  printf("%-12s %-34s %-4s %9s %9s %8s %10s %10s %s\n", "net", "shape",
         "dt", "cuDNN ms", "GEMM ms", "ratio", "max|diff|", "max|dw|",
         "rerun");
  int h = MDLRT_F16, f = MDLRT_F32;
  bench("operator_cnn", h, 16, 3, 128, 64, 3, 1, 1);
  bench("operator_cnn", h, 16, 64, 128, 64, 3, 1, 1);
  bench("operator_cnn", h, 16, 64, 128, 3, 3, 1, 1);
  bench("resnet18", f, 32, 3, 224, 64, 7, 2, 3);
  bench("resnet18", f, 32, 64, 56, 64, 3, 1, 1);
  bench("resnet18", f, 32, 64, 56, 128, 3, 2, 1);
  bench("resnet18", f, 32, 64, 56, 128, 1, 2, 0);
  bench("resnet18", f, 32, 128, 28, 128, 3, 1, 1);
  bench("resnet18", f, 32, 256, 14, 256, 3, 1, 1);
  bench("resnet18", f, 32, 512, 7, 512, 3, 1, 1);
  mdlrt_sync();
  mdlrt_shutdown();
  return 0;
}
