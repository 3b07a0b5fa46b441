/* bench/norm_pool.cu: the runtime's batchnorm (training), groupnorm
 * (instancenorm: G = C) and pooling backward at the sizes of the models
 * that profile them, against a reference in the same process:
 *   batchnorm forward  cudnnBatchNormalizationForwardTrainingEx
 *   batchnorm backward cudnnBatchNormalizationBackwardEx
 *                      (both CUDNN_BATCHNORM_SPATIAL_PERSISTENT where cuDNN
 *                      takes it, else CUDNN_BATCHNORM_SPATIAL, else the
 *                      calls without Ex; the mode used is printed)
 *   maxpool backward   cudnnPoolingBackward (CUDNN_POOLING_MAX)
 *   groupnorm          none in cuDNN's legacy API: a device-to-device
 *                      cudaMemcpyAsync moving the same bytes (half of them
 *                      read, half written), the memory-bandwidth roofline.
 * Every row also times that copy ("copy ms"), so copy/ours is the fraction
 * of the roofline reached.
 *
 * Each op runs on the runtime's stream with a 32 MiB workspace; the time is
 * the median of 20 calls (cudaEvents around each, after 3 warm-up calls).
 * "MB" is what the op must move at least: forward x read once and y
 * written (a separate statistics pass reads x a second time, from L2 when
 * it fits); backward dy and x read, dx written; pooling backward x, y, dy
 * read and dx written. GB/s = MB / ms. ref/ours above 1: ours is faster.
 * max|diff| compares ours with cuDNN's result (y, or dx; batchnorm's dx is
 * computed from each one's own saved statistics). "rerun" says whether a
 * second call of ours gives the same output bit for bit.
 *
 * Build (from the repository root; BUILD is where libmdlrt.a is):
 *   make BUILD=build runtime
 *   nvcc -O3 -arch=sm_90 -std=c++17 -Iruntime \
 *     -I/usr/include/x86_64-linux-gnu -o build/norm_pool \
 *     bench/norm_pool.cu build/libmdlrt.a -L/usr/local/cuda/lib64 \
 *     -lcublas -lcublasLt -lcudnn
 * Run: build/norm_pool
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdlrt_dev.cuh"

/* cuDNN's batchnorm and pooling are its legacy (deprecated) API. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#pragma nv_diag_suppress 1444
#pragma nv_diag_suppress 1215

#include "mdlrt.h"
#include "bench.h"

static Buf mk1(int dt, int64_t n) { return mk(dt, 1, &n); }

/* The roofline: a copy that reads bytes / 2 and writes bytes / 2. */
static void *copy_src, *copy_dst;
static int64_t copy_bytes;
static void run_copy(void *) {
  CUDA_CHECK(cudaMemcpyAsync(copy_dst, copy_src, (size_t)copy_bytes,
                             cudaMemcpyDeviceToDevice, mdlrt_rt.stream));
}
static double time_copy(int64_t bytes) {
  copy_src = mdlrt_alloc(bytes / 2 + 16, 0);
  copy_dst = mdlrt_alloc(bytes / 2 + 16, 0);
  copy_bytes = bytes / 2;
  double t = timeit(run_copy, NULL);
  mdlrt_free(copy_src), mdlrt_free(copy_dst);
  return t;
}

/* Largest |a - b| over two buffers of n elements, and whether two
 * buffers hold the same values bit for bit (as doubles). */
static double maxdiff(Buf *a, Buf *b) {
  double *ha = (double *)malloc(a->n * sizeof(double));
  double *hb = (double *)malloc(b->n * sizeof(double));
  mdlrt_read_all(ref(a), ha);
  mdlrt_read_all(ref(b), hb);
  double d = 0;
  for (int64_t i = 0; i < a->n; i++) d = fmax(d, fabs(ha[i] - hb[i]));
  free(ha), free(hb);
  return d;
}
static double *snapshot(Buf *a) {
  double *h = (double *)malloc(a->n * sizeof(double));
  mdlrt_read_all(ref(a), h);
  return h;
}
static int same_as(Buf *a, double *h) {
  double *now = snapshot(a);
  int s = !memcmp(now, h, a->n * sizeof(double));
  free(now), free(h);
  return s;
}

static void row(const char *op, const char *shape, int dt, double ms,
                double mb, const char *rname, double rms, double cms,
                double diff, int same) {
  printf("%-11s %-24s %-4s %8.3f %8.1f %7.0f  %-18s %8.3f %6.2fx %8.3f "
         "%5.2f %10.3g %s\n",
         op, shape, dt == MDLRT_F32 ? "f32" : dt == MDLRT_F16 ? "f16" : "bf16",
         ms, mb, mb / ms, rname, rms, rms > 0 ? rms / ms : 0.0, cms,
         cms / ms, diff, same ? "same" : "DIFFERENT");
  fflush(stdout);
}

static cudnnDataType_t dnn_type(int dt) {
  return dt == MDLRT_F32 ? CUDNN_DATA_FLOAT
         : dt == MDLRT_F16 ? CUDNN_DATA_HALF : CUDNN_DATA_BFLOAT16;
}

/* ---- batchnorm -------------------------------------------------------- */

typedef struct {
  Buf x, y, dy, dx, w, b, dw, db, mean, istd, rm, rv;       /* ours */
  Buf cy, cdx, cdw, cdb, cmean, cistd, crm, crv;            /* cuDNN's */
  cudnnTensorDescriptor_t xd, bnd;
  cudnnBatchNormMode_t mode;
  int legacy; /* cudnnBatchNormalizationForwardTraining / Backward */
  void *cws, *reserve;
  size_t cws_bytes, reserve_bytes;
} Bn;

static void bn_fwd(void *a) {
  Bn *t = (Bn *)a;
  mdlrt_batchnorm_fwd(ref(&t->y), ref(&t->mean), ref(&t->istd), ref(&t->x),
                      ref(&t->w), ref(&t->b), ref(&t->rm), ref(&t->rv), 1e-5,
                      1);
}
static void bn_bwd(void *a) {
  Bn *t = (Bn *)a;
  mdlrt_batchnorm_bwd(ref(&t->dx), 0, ref(&t->dw), 0, ref(&t->db), 0,
                      ref(&t->dy), ref(&t->x), ref(&t->mean), ref(&t->istd),
                      ref(&t->w));
}

static cudnnStatus_t cd_fwd_status(Bn *t) {
  float one = 1, zero = 0;
  if (t->legacy)
    return cudnnBatchNormalizationForwardTraining(
        mdlrt_rt.dnn, t->mode, &one, &zero, t->xd, t->x.p, t->xd, t->cy.p,
        t->bnd, t->w.p, t->b.p, 0.1, t->crm.p, t->crv.p, 1e-5, t->cmean.p,
        t->cistd.p);
  return cudnnBatchNormalizationForwardTrainingEx(
      mdlrt_rt.dnn, t->mode, CUDNN_BATCHNORM_OPS_BN, &one, &zero, t->xd,
      t->x.p, NULL, NULL, t->xd, t->cy.p, t->bnd, t->w.p, t->b.p, 0.1,
      t->crm.p, t->crv.p, 1e-5, t->cmean.p, t->cistd.p, NULL, t->cws,
      t->cws_bytes, t->reserve, t->reserve_bytes);
}
static cudnnStatus_t cd_bwd_status(Bn *t) {
  float one = 1, zero = 0;
  if (t->legacy)
    return cudnnBatchNormalizationBackward(
        mdlrt_rt.dnn, t->mode, &one, &zero, &one, &zero, t->xd, t->x.p,
        t->xd, t->dy.p, t->xd, t->cdx.p, t->bnd, t->w.p, t->cdw.p, t->cdb.p,
        1e-5, t->cmean.p, t->cistd.p);
  return cudnnBatchNormalizationBackwardEx(
      mdlrt_rt.dnn, t->mode, CUDNN_BATCHNORM_OPS_BN, &one, &zero, &one,
      &zero, t->xd, t->x.p, NULL, NULL, t->xd, t->dy.p, NULL, NULL, t->xd,
      t->cdx.p, t->bnd, t->w.p, t->b.p, t->cdw.p, t->cdb.p, 1e-5, t->cmean.p,
      t->cistd.p, NULL, t->cws, t->cws_bytes, t->reserve, t->reserve_bytes);
}
static void cd_fwd(void *a) { CUDNN_CHECK(cd_fwd_status((Bn *)a)); }
static void cd_bwd(void *a) { CUDNN_CHECK(cd_bwd_status((Bn *)a)); }

/* cuDNN's scratch for mode m (legacy: the calls without workspace); 0 if
 * it refuses the mode. */
static int bn_setup(Bn *t, cudnnBatchNormMode_t m, int legacy) {
  t->mode = m, t->legacy = legacy;
  CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(t->bnd, t->xd, m));
  size_t a = 0, b = 0, r = 0;
  if (!legacy &&
      (cudnnGetBatchNormalizationForwardTrainingExWorkspaceSize(
           mdlrt_rt.dnn, m, CUDNN_BATCHNORM_OPS_BN, t->xd, NULL, t->xd,
           t->bnd, NULL, &a) != CUDNN_STATUS_SUCCESS ||
       cudnnGetBatchNormalizationBackwardExWorkspaceSize(
           mdlrt_rt.dnn, m, CUDNN_BATCHNORM_OPS_BN, t->xd, NULL, t->xd, NULL,
           t->xd, t->bnd, NULL, &b) != CUDNN_STATUS_SUCCESS ||
       cudnnGetBatchNormalizationTrainingExReserveSpaceSize(
           mdlrt_rt.dnn, m, CUDNN_BATCHNORM_OPS_BN, NULL, t->xd, &r) !=
           CUDNN_STATUS_SUCCESS))
    return 0;
  t->cws_bytes = a > b ? a : b;
  t->reserve_bytes = r;
  t->cws = t->cws_bytes ? mdlrt_alloc((int64_t)t->cws_bytes, 0) : NULL;
  t->reserve = r ? mdlrt_alloc((int64_t)r, 0) : NULL;
  if (cd_fwd_status(t) == CUDNN_STATUS_SUCCESS &&
      cd_bwd_status(t) == CUDNN_STATUS_SUCCESS)
    return 1;
  if (t->cws) mdlrt_free(t->cws);
  if (t->reserve) mdlrt_free(t->reserve);
  t->cws = t->reserve = NULL;
  t->cws_bytes = t->reserve_bytes = 0;
  return 0;
}

static void bench_bn(int dt, int64_t N, int64_t C, int64_t H, int64_t W) {
  Bn t;
  memset(&t, 0, sizeof t);
  int64_t d[4] = {N, C, H, W};
  t.x = mk(dt, 4, d), t.y = mk(dt, 4, d), t.dy = mk(dt, 4, d);
  t.dx = mk(dt, 4, d), t.cy = mk(dt, 4, d), t.cdx = mk(dt, 4, d);
  /* cuDNN wants f32 parameters and statistics; ours are f32 here too */
  t.w = mk1(MDLRT_F32, C), t.b = mk1(MDLRT_F32, C);
  t.dw = mk1(MDLRT_F32, C), t.db = mk1(MDLRT_F32, C);
  t.mean = mk1(MDLRT_F32, C), t.istd = mk1(MDLRT_F32, C);
  t.rm = mk1(MDLRT_F32, C), t.rv = mk1(MDLRT_F32, C);
  t.cdw = mk1(MDLRT_F32, C), t.cdb = mk1(MDLRT_F32, C);
  t.cmean = mk1(MDLRT_F32, C), t.cistd = mk1(MDLRT_F32, C);
  t.crm = mk1(MDLRT_F32, C), t.crv = mk1(MDLRT_F32, C);
  mdlrt_init_uniform(ref(&t.x), 1, 1.0);
  mdlrt_init_uniform(ref(&t.dy), 2, 1.0);
  mdlrt_init_uniform(ref(&t.w), 3, 1.0);
  mdlrt_init_uniform(ref(&t.b), 4, 1.0);
  mdlrt_fill(ref(&t.rm), 0.0), mdlrt_fill(ref(&t.rv), 1.0);
  mdlrt_fill(ref(&t.crm), 0.0), mdlrt_fill(ref(&t.crv), 1.0);
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&t.xd));
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&t.bnd));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(t.xd, CUDNN_TENSOR_NCHW,
                                         dnn_type(dt), (int)N, (int)C,
                                         (int)H, (int)W));
  const char *mname = "PERSISTENT";
  if (!bn_setup(&t, CUDNN_BATCHNORM_SPATIAL_PERSISTENT, 0)) {
    mname = "SPATIAL";
    if (!bn_setup(&t, CUDNN_BATCHNORM_SPATIAL, 0)) {
      mname = "SPATIAL (no Ex)";
      if (!bn_setup(&t, CUDNN_BATCHNORM_SPATIAL, 1)) {
        fprintf(stderr, "norm_pool: cuDNN refuses batchnorm here\n");
        exit(1);
      }
    }
  }
  char shape[64], rname[32];
  snprintf(shape, sizeof shape, "%lldx%lldx%lldx%lld", (long long)N,
           (long long)C, (long long)H, (long long)W);
  double es = mdlrt_dt_size(dt), mb = (double)t.x.n * es / 1e6;

  bn_fwd(&t);
  double *y0 = snapshot(&t.y);
  double ms = timeit(bn_fwd, &t);
  int same = same_as(&t.y, y0);
  double rms = timeit(cd_fwd, &t);
  snprintf(rname, sizeof rname, "cuDNN %s", mname);
  double cms = time_copy((int64_t)(2 * mb * 1e6));
  row("bn fwd", shape, dt, ms, 2 * mb, rname, rms, cms, maxdiff(&t.y, &t.cy),
      same);

  bn_bwd(&t);
  double *dx0 = snapshot(&t.dx);
  ms = timeit(bn_bwd, &t);
  same = same_as(&t.dx, dx0);
  rms = timeit(cd_bwd, &t);
  cms = time_copy((int64_t)(3 * mb * 1e6));
  row("bn bwd", shape, dt, ms, 3 * mb, rname, rms, cms,
      maxdiff(&t.dx, &t.cdx), same);

  Buf *all[] = {&t.x, &t.y, &t.dy, &t.dx, &t.cy, &t.cdx, &t.w, &t.b, &t.dw,
                &t.db, &t.mean, &t.istd, &t.rm, &t.rv, &t.cdw, &t.cdb,
                &t.cmean, &t.cistd, &t.crm, &t.crv};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) mdlrt_free(all[i]->p);
  if (t.cws) mdlrt_free(t.cws);
  if (t.reserve) mdlrt_free(t.reserve);
  cudnnDestroyTensorDescriptor(t.xd);
  cudnnDestroyTensorDescriptor(t.bnd);
}

/* ---- groupnorm -------------------------------------------------------- */

typedef struct {
  Buf x, y, dy, dx, w, b, dw, db, mean, rstd;
  int64_t G;
} Gn;

static void gn_fwd(void *a) {
  Gn *t = (Gn *)a;
  mdlrt_groupnorm_fwd(ref(&t->y), ref(&t->mean), ref(&t->rstd), ref(&t->x),
                      ref(&t->w), ref(&t->b), t->G, 1e-5);
}
static void gn_bwd(void *a) {
  Gn *t = (Gn *)a;
  mdlrt_groupnorm_bwd(ref(&t->dx), 0, ref(&t->dw), 0, ref(&t->db), 0,
                      ref(&t->dy), ref(&t->x), ref(&t->mean), ref(&t->rstd),
                      ref(&t->w), t->G);
}

static void bench_gn(int dt, int64_t N, int64_t C, int64_t H, int64_t W,
                     int64_t G) {
  Gn t;
  memset(&t, 0, sizeof t);
  int64_t d[4] = {N, C, H, W};
  t.G = G;
  t.x = mk(dt, 4, d), t.y = mk(dt, 4, d), t.dy = mk(dt, 4, d);
  t.dx = mk(dt, 4, d);
  t.w = mk1(dt, C), t.b = mk1(dt, C), t.dw = mk1(dt, C), t.db = mk1(dt, C);
  t.mean = mk1(MDLRT_F32, N * G), t.rstd = mk1(MDLRT_F32, N * G);
  mdlrt_init_uniform(ref(&t.x), 1, 1.0);
  mdlrt_init_uniform(ref(&t.dy), 2, 1.0);
  mdlrt_init_uniform(ref(&t.w), 3, 1.0);
  mdlrt_init_uniform(ref(&t.b), 4, 1.0);
  char shape[64];
  snprintf(shape, sizeof shape, "%lldx%lldx%lldx%lld G%lld", (long long)N,
           (long long)C, (long long)H, (long long)W, (long long)G);
  double mb = (double)t.x.n * mdlrt_dt_size(dt) / 1e6;
  gn_fwd(&t);
  double *y0 = snapshot(&t.y);
  double ms = timeit(gn_fwd, &t);
  int same = same_as(&t.y, y0);
  double cms = time_copy((int64_t)(2 * mb * 1e6));
  row("gn fwd", shape, dt, ms, 2 * mb, "memcpy (roofline)", cms, cms, 0,
      same);
  gn_bwd(&t);
  double *dx0 = snapshot(&t.dx);
  ms = timeit(gn_bwd, &t);
  same = same_as(&t.dx, dx0);
  cms = time_copy((int64_t)(3 * mb * 1e6));
  row("gn bwd", shape, dt, ms, 3 * mb, "memcpy (roofline)", cms, cms, 0,
      same);
  Buf *all[] = {&t.x, &t.y, &t.dy, &t.dx, &t.w, &t.b, &t.dw, &t.db,
                &t.mean, &t.rstd};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) mdlrt_free(all[i]->p);
}

/* ---- pooling backward ------------------------------------------------- */

typedef struct {
  Buf x, y, dy, dx, cdx;
  int op;
  int64_t k, s, p;
  cudnnTensorDescriptor_t xd, yd;
  cudnnPoolingDescriptor_t pd;
} Pool;

static void pool_bwd(void *a) {
  Pool *t = (Pool *)a;
  mdlrt_pool_bwd(t->op, ref(&t->dx), 0, ref(&t->dy), ref(&t->x), ref(&t->y),
                 t->k, t->s, t->p);
}
static void cd_pool_bwd(void *a) {
  Pool *t = (Pool *)a;
  float one = 1, zero = 0;
  CUDNN_CHECK(cudnnPoolingBackward(mdlrt_rt.dnn, t->pd, &one, t->yd, t->y.p,
                                   t->yd, t->dy.p, t->xd, t->x.p, &zero,
                                   t->xd, t->cdx.p));
}

static void bench_pool(int op, int dt, int64_t N, int64_t C, int64_t H,
                       int64_t W, int64_t k, int64_t s, int64_t p) {
  Pool t;
  memset(&t, 0, sizeof t);
  t.op = op, t.k = k, t.s = s, t.p = p;
  int64_t P = (H + 2 * p - k) / s + 1, Q = (W + 2 * p - k) / s + 1;
  int64_t xd[4] = {N, C, H, W}, yd[4] = {N, C, P, Q};
  t.x = mk(dt, 4, xd), t.dx = mk(dt, 4, xd), t.cdx = mk(dt, 4, xd);
  t.y = mk(dt, 4, yd), t.dy = mk(dt, 4, yd);
  mdlrt_init_uniform(ref(&t.x), 1, 1.0);
  mdlrt_init_uniform(ref(&t.dy), 2, 1.0);
  mdlrt_pool_fwd(op, ref(&t.y), ref(&t.x), k, s, p);
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&t.xd));
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&t.yd));
  CUDNN_CHECK(cudnnCreatePoolingDescriptor(&t.pd));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(t.xd, CUDNN_TENSOR_NCHW,
                                         dnn_type(dt), (int)N, (int)C,
                                         (int)H, (int)W));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(t.yd, CUDNN_TENSOR_NCHW,
                                         dnn_type(dt), (int)N, (int)C,
                                         (int)P, (int)Q));
  CUDNN_CHECK(cudnnSetPooling2dDescriptor(
      t.pd, op == 0 ? CUDNN_POOLING_MAX
                    : CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING,
      CUDNN_NOT_PROPAGATE_NAN, (int)k, (int)k, (int)p, (int)p, (int)s,
      (int)s));
  char shape[64];
  snprintf(shape, sizeof shape, "%lldx%lldx%lldx%lld k%lld s%lld p%lld",
           (long long)N, (long long)C, (long long)H, (long long)W,
           (long long)k, (long long)s, (long long)p);
  double es = mdlrt_dt_size(dt);
  double mb = (2.0 * t.x.n + 2.0 * t.y.n) * es / 1e6;
  pool_bwd(&t);
  double *dx0 = snapshot(&t.dx);
  double ms = timeit(pool_bwd, &t);
  int same = same_as(&t.dx, dx0);
  double rms = timeit(cd_pool_bwd, &t);
  double cms = time_copy((int64_t)(mb * 1e6));
  row(op == 0 ? "maxpool bwd" : "avgpool bwd", shape, dt, ms, mb,
      "cudnnPoolingBackward", rms, cms, maxdiff(&t.dx, &t.cdx), same);
  Buf *all[] = {&t.x, &t.y, &t.dy, &t.dx, &t.cdx};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) mdlrt_free(all[i]->p);
  cudnnDestroyTensorDescriptor(t.xd);
  cudnnDestroyTensorDescriptor(t.yd);
  cudnnDestroyPoolingDescriptor(t.pd);
}

int main(void) {
  mdlrt_config cfg = {"norm_pool", 0, 0};
  mdlrt_init(&cfg);
  void *ws = mdlrt_alloc(32 << 20, 0);
  mdlrt_set_workspace(ws, 32 << 20);
  printf("%-11s %-24s %-4s %8s %8s %7s  %-18s %8s %7s %8s %5s %10s %s\n",
         "op", "shape", "dt", "ms", "MB", "GB/s", "reference", "ref ms",
         "ref/ours", "copy ms", "roof", "max|diff|", "rerun");
  int f = MDLRT_F32, h = MDLRT_F16;
  /* resnet18, batch 32, fp32: every batchnorm shape */
  bench_bn(f, 32, 64, 112, 112);
  bench_bn(f, 32, 64, 56, 56);
  bench_bn(f, 32, 128, 28, 28);
  bench_bn(f, 32, 256, 14, 14);
  bench_bn(f, 32, 512, 7, 7);
  /* its maxpool after the stem */
  bench_pool(0, f, 32, 64, 112, 112, 3, 2, 1);
  /* operator_cnn, batch 16, pure fp16: instancenorm; groupnorm G = 8 */
  bench_gn(h, 16, 64, 128, 128, 64);
  bench_gn(h, 16, 64, 128, 128, 8);
  mdlrt_sync();
  mdlrt_shutdown();
  return 0;
}
