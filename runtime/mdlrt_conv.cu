/* runtime/mdlrt_conv.cu: conv2d, forward and backward, through cuDNN (its
 * graph API's deterministic engines, or the legacy calls, every choice a
 * function of the shapes and of the workspace's size, never timed) and,
 * for some backward-filters, im2col + cuBLAS with an f32 accumulator.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdlrt_dev.cuh"

/* ---- conv2d (cuDNN) ---------------------------------------------------- */

/* Two paths per direction (forward, backward-data, backward-filter):
 *   graph: cuDNN 9's backend API (cudnn_graph.h, plain C). One operation
 *     graph (a single convolution node with its alpha and beta), cuDNN's
 *     heuristic list of engine configurations, and a configuration that is
 *     deterministic and computes in f32 on f32 inputs (no TF32, no
 *     down-converted inputs, no reduced-precision reduction), finalized
 *     once into an execution plan whose scratch fits the workspace; the
 *     batch may run in equal chunks so that cuDNN's first choice fits
 *     (g_make says exactly how). These are the engines PyTorch's cuDNN
 *     v8/v9 path runs.
 *   legacy: cudnnConvolution{Forward,BackwardData,BackwardFilter} with the
 *     first algorithm of cudnnGet*Algorithm_v7's ranking that is
 *     deterministic and fits; used where the graph path finds no plan, or
 *     where an operand is not 16-byte aligned (the plans assume it).
 * The backward-filter has a third path, tried first where fg_wanted says
 * so: im2col + cuBLAS with an f32 accumulator (fg_run below).
 * No choice is timed: each is a function of the shapes alone (and of the
 * GPU, the libraries' versions and the workspace's size), so two programs
 * with the same convolution run the same kernels, and a checkpointed plan's
 * gradients equal the plain plan's bit for bit. A graph plan depends on
 * beta (0: overwrite, 1: add into the destination: the bias already
 * written, or a gradient's second contribution), so each direction has one
 * per beta, made the first time it is needed (in the first step) and kept.
 * MDLRT_PROF=1 prints each plan's path, engine, chunks and scratch;
 * MDLRT_GRAPH=0 in the environment forces legacy (where cuDNN runs). */
typedef cudnnBackendDescriptor_t Bd;

enum { CONV_FWD, CONV_DATA, CONV_FILTER };
static const char *const conv_dir_name[] = {"fwd", "data", "filter"};

typedef struct {
  int state;      /* 0 not made yet, 1 a graph plan, -1 none: legacy */
  Bd plan;        /* the finalized execution plan (state 1) */
  int64_t ws;     /* its scratch, bytes (<= the workspace) */
  int64_t engine; /* cuDNN's global engine index, for MDLRT_PROF */
  int chunks;     /* the batch runs in this many equal chunks */
  int w32;        /* backward-filter in chunks: an f32 accumulator at the
                     workspace's start, the plan's scratch after it */
} GraphPlan;

struct mdlrt_conv {
  cudnnTensorDescriptor_t x, y, b;   /* input, output, bias [1,K,1,1] */
  cudnnFilterDescriptor_t w;         /* weight [K, C/g, R, R] */
  cudnnConvolutionDescriptor_t conv; /* pad, stride, dilation, groups */
  cudnnConvolutionFwdAlgo_t fwd;
  cudnnConvolutionBwdDataAlgo_t bwd_data;
  cudnnConvolutionBwdFilterAlgo_t bwd_filter;
  size_t ws_fwd, ws_data, ws_filter; /* scratch of each, fits the workspace */
  cudnnMathType_t math_fwd, math_data, math_filter; /* each one's math */
  int64_t K, P, Q, N, groups;
  int dt;                            /* MDLRT_F32 ... */
  int64_t xdim[4], wdim[4], ydim[4]; /* NCHW, KCRS, NKPQ */
  int64_t stride, pad, dil;
  GraphPlan g[3][2];                 /* [direction][beta] */
  int legacy_used[3];                /* legacy ran (for MDLRT_PROF) */
  int legacy_none[3];                /* legacy found no algorithm that is
                                        deterministic and fits: an error
                                        if that direction needs it */
  int64_t fg_n;                      /* backward-filter through im2col +
                                        cuBLAS, this many images a chunk
                                        (fg_chunk); 0: through cuDNN */
};

static cudnnDataType_t dnn_dt(int dt) {
  switch (dt) {
  case MDLRT_F16: return CUDNN_DATA_HALF;
  case MDLRT_BF16: return CUDNN_DATA_BFLOAT16;
  case MDLRT_F32: return CUDNN_DATA_FLOAT;
  default: mdlrt_bad_code("conv2d dtype", dt, __FILE__, __LINE__);
  }
}

/* The graph path's calls return a status instead of exiting: any failure
 * means "no graph plan for this shape", and the legacy path runs. */
#define GTRY(call)                                                           \
  do {                                                                       \
    if ((call) != CUDNN_STATUS_SUCCESS) goto fail;                           \
  } while (0)
#define GSET(d, attr, type, n, p) GTRY(cudnnBackendSetAttribute(d, attr, type, n, p))

/* A packed NCHW (or KCRS) tensor, 16-byte aligned, named `uid`. */
static cudnnStatus_t g_tensor(Bd *d, int64_t uid, cudnnDataType_t t,
                              const int64_t dim[4]) {
  int64_t st[4] = {dim[1] * dim[2] * dim[3], dim[2] * dim[3], dim[3], 1};
  int64_t align = 16;
  *d = NULL;
  GTRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_TENSOR_DESCRIPTOR, d));
  GSET(*d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &t);
  GSET(*d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dim);
  GSET(*d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, st);
  GSET(*d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
  GSET(*d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
  GTRY(cudnnBackendFinalize(*d));
  return CUDNN_STATUS_SUCCESS;
fail:
  return CUDNN_STATUS_NOT_SUPPORTED;
}

/* Whether an engine configuration may run here: deterministic, and the
 * arithmetic mdlc promises (f32 accumulation; plain f32 for f32 data). */
static int g_engine_ok(Bd cfg, int dt, int64_t *index) {
  Bd eng = NULL;
  int64_t n = 0;
  cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
  int ok = 0;
  GTRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &eng));
  GTRY(cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE,
                                CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &eng));
  GTRY(cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_GLOBAL_INDEX,
                                CUDNN_TYPE_INT64, 1, &n, index));
  GTRY(cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE,
                                CUDNN_TYPE_NUMERICAL_NOTE,
                                CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &n, notes));
  ok = 1;
  for (int64_t i = 0; i < n; i++)
    if (notes[i] == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC ||
        notes[i] == CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS ||
        notes[i] == CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION ||
        (dt == MDLRT_F32 && notes[i] == CUDNN_NUMERICAL_NOTE_TENSOR_CORE))
      ok = 0;
fail:
  if (eng) cudnnBackendDestroyDescriptor(eng);
  return ok;
}

/* MDLRT_CONV_SURVEY=1 (diagnosis only: the step's results are wrong in this
 * mode): every configuration of heuristic modes A, B and fallback, with its
 * notes (bit i: numerical note i), scratch and time on scratch buffers of
 * the convolution's sizes (1 GiB of scratch, so engines that do not fit
 * the workspace are timed too). Printed to stderr; chooses nothing. */
static void g_survey(mdlrt_conv *c, int dir, int beta, Bd graph) {
  static void *buf[4];
  static const size_t big = (size_t)1 << 30;
  size_t es = c->dt == MDLRT_F32 ? 4 : 2;
  size_t nx = es, nw = es, ny = es;
  for (int i = 0; i < 4; i++)
    nx *= c->xdim[i], nw *= c->wdim[i], ny *= c->ydim[i];
  if (!buf[0])
    for (int i = 0; i < 4; i++) {
      CUDA_CHECK(cudaMalloc(&buf[i], big));
      CUDA_CHECK(cudaMemset(buf[i], 0x3c, big));
    }
  if (nx > big || nw > big || ny > big) return;
  static int64_t seen[256][10];
  static int nseen;
  int64_t key[10] = {c->xdim[0], c->xdim[1], c->xdim[2], c->xdim[3], c->K,
                     c->wdim[2], c->stride, dir, beta, c->dt};
  for (int i = 0; i < nseen; i++)
    if (!memcmp(seen[i], key, sizeof key)) return; /* surveyed already */
  if (nseen < 256) memcpy(seen[nseen++], key, sizeof key);
  static const cudnnBackendHeurMode_t modes[] = {
      CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_B, CUDNN_HEUR_MODE_FALLBACK};
  cudaEvent_t e0, e1;
  CUDA_CHECK(cudaEventCreate(&e0));
  CUDA_CHECK(cudaEventCreate(&e1));
  for (int m = 0; m < 3; m++) {
    Bd heur = NULL, cfg[64];
    int64_t count = 0, got = 0;
    if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR,
                                     &heur) != CUDNN_STATUS_SUCCESS)
      continue;
    if (cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH,
                                 CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                                 &graph) != CUDNN_STATUS_SUCCESS ||
        cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_MODE,
                                 CUDNN_TYPE_HEUR_MODE, 1,
                                 &modes[m]) != CUDNN_STATUS_SUCCESS ||
        cudnnBackendFinalize(heur) != CUDNN_STATUS_SUCCESS ||
        cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                 CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count,
                                 NULL) != CUDNN_STATUS_SUCCESS) {
      fprintf(stderr, "survey %s b%d mode %d: no list\n", conv_dir_name[dir],
              beta, (int)modes[m]);
      cudnnBackendDestroyDescriptor(heur);
      continue;
    }
    if (count > 64) count = 64;
    for (int64_t i = 0; i < count; i++)
      CUDNN_CHECK(cudnnBackendCreateDescriptor(
          CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &cfg[i]));
    if (cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                 CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got,
                                 cfg) != CUDNN_STATUS_SUCCESS)
      got = 0;
    for (int64_t i = 0; i < got; i++) {
      Bd eng = NULL, plan = NULL, pack = NULL;
      int64_t n = 0, index = -1, ws = -1, bits = 0;
      cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
      float ms = -1.0f;
      cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &eng);
      cudnnBackendGetAttribute(cfg[i], CUDNN_ATTR_ENGINECFG_ENGINE,
                               CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &eng);
      cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_GLOBAL_INDEX,
                               CUDNN_TYPE_INT64, 1, &n, &index);
      n = 0;
      cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE,
                               CUDNN_TYPE_NUMERICAL_NOTE,
                               CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &n, notes);
      for (int64_t k = 0; k < n; k++) bits |= (int64_t)1 << notes[k];
      cudnnBackendDestroyDescriptor(eng);
      cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR,
                                   &plan);
      cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE,
                               CUDNN_TYPE_HANDLE, 1, &mdlrt_rt.dnn);
      cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                               CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg[i]);
      if (cudnnBackendFinalize(plan) == CUDNN_STATUS_SUCCESS &&
          cudnnBackendGetAttribute(plan,
                                   CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                   CUDNN_TYPE_INT64, 1, &n,
                                   &ws) == CUDNN_STATUS_SUCCESS &&
          (size_t)ws <= big) {
        int64_t uid[3] = {'x', 'w', 'y'};
        void *ptr[3] = {buf[0], buf[1], buf[2]}, *wsp = buf[3];
        cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR,
                                     &pack);
        cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS,
                                 CUDNN_TYPE_INT64, 3, uid);
        cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                                 CUDNN_TYPE_VOID_PTR, 3, ptr);
        cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE,
                                 CUDNN_TYPE_VOID_PTR, 1, &wsp);
        if (cudnnBackendFinalize(pack) == CUDNN_STATUS_SUCCESS &&
            cudnnBackendExecute(mdlrt_rt.dnn, plan, pack) ==
                CUDNN_STATUS_SUCCESS) {
          CUDA_CHECK(cudaEventRecord(e0, mdlrt_rt.stream));
          for (int r = 0; r < 5; r++)
            cudnnBackendExecute(mdlrt_rt.dnn, plan, pack);
          CUDA_CHECK(cudaEventRecord(e1, mdlrt_rt.stream));
          CUDA_CHECK(cudaEventSynchronize(e1));
          CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
          ms /= 5;
        }
        cudnnBackendDestroyDescriptor(pack);
      }
      cudnnBackendDestroyDescriptor(plan);
      CUDA_CHECK(cudaGetLastError());
      fprintf(stderr, "survey %lldx%lldx%lldx%lld->%lld k%lld s%lld %s b%d "
              "mode %d #%lld engine %lld notes 0x%llx ws %lld ms %.4f\n",
              (long long)c->xdim[0], (long long)c->xdim[1],
              (long long)c->xdim[2], (long long)c->xdim[3], (long long)c->K,
              (long long)c->wdim[2], (long long)c->stride, conv_dir_name[dir],
              beta, (int)modes[m], (long long)i, (long long)index,
              (long long)bits, (long long)ws, ms);
    }
    for (int64_t i = 0; i < count; i++) cudnnBackendDestroyDescriptor(cfg[i]);
    cudnnBackendDestroyDescriptor(heur);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
}

/* The operation graph of direction `dir` on a batch of n (of c->N), with
 * the given beta; w32: the weight-like tensor (dw) is f32 whatever the
 * data's dtype (the chunked backward-filter's accumulator). NULL if cuDNN
 * refuses it. */
static Bd g_graph(mdlrt_conv *c, int dir, int beta, int64_t n, int w32) {
  cudnnDataType_t t = dnn_dt(c->dt), comp = CUDNN_DATA_FLOAT;
  cudnnDataType_t tw_t = w32 ? CUDNN_DATA_FLOAT : t;
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  int64_t two = 2, pad[2] = {c->pad, c->pad};
  int64_t str[2] = {c->stride, c->stride}, dil[2] = {c->dil, c->dil};
  int64_t xd[4] = {n, c->xdim[1], c->xdim[2], c->xdim[3]};
  int64_t yd[4] = {n, c->ydim[1], c->ydim[2], c->ydim[3]};
  float alpha = 1.0f, fbeta = (float)beta;
  Bd tx = NULL, tw = NULL, ty = NULL, cd = NULL, op = NULL, graph = NULL;
  static const cudnnBackendDescriptorType_t kind[] = {
      CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR,
      CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR,
      CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR};
  /* Attribute names per direction: x, w, y, conv, alpha, beta. */
  static const cudnnBackendAttributeName_t at[3][6] = {
      {CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X,
       CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W,
       CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y,
       CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC,
       CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA,
       CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA},
      {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA},
      {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA}};
  GTRY(g_tensor(&tx, 'x', t, xd));
  GTRY(g_tensor(&tw, 'w', tw_t, c->wdim));
  GTRY(g_tensor(&ty, 'y', t, yd));
  GTRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, &cd));
  GSET(cd, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp);
  GSET(cd, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1,
       &mode);
  GSET(cd, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &two);
  GSET(cd, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, dil);
  GSET(cd, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, str);
  GSET(cd, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pad);
  GSET(cd, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, pad);
  GTRY(cudnnBackendFinalize(cd));
  GTRY(cudnnBackendCreateDescriptor(kind[dir], &op));
  GSET(op, at[dir][0], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tx);
  GSET(op, at[dir][1], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tw);
  GSET(op, at[dir][2], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &ty);
  GSET(op, at[dir][3], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cd);
  GSET(op, at[dir][4], CUDNN_TYPE_FLOAT, 1, &alpha);
  GSET(op, at[dir][5], CUDNN_TYPE_FLOAT, 1, &fbeta);
  GTRY(cudnnBackendFinalize(op));
  GTRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR,
                                    &graph));
  GSET(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
       &op);
  GSET(graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1,
       &mdlrt_rt.dnn);
  GTRY(cudnnBackendFinalize(graph));
  /* The graph keeps what it needs; its parts stay until exit anyway, as
   * the legacy descriptors do. */
  return graph;
fail:
  if (graph) cudnnBackendDestroyDescriptor(graph);
  return NULL;
}

/* From heuristic list `mode` of `graph`: the first acceptable
 * configuration that finalizes (top = 1: that one, whatever its scratch;
 * top = 0: the first whose scratch is at most `room`). 1 and the plan if
 * found. */
static int g_pick(Bd graph, cudnnBackendHeurMode_t mode, int dt, int top,
                  int64_t room, Bd *plan_out, int64_t *ws_out,
                  int64_t *engine_out) {
  Bd heur = NULL, cfg[64];
  int64_t count = 0, got = 0;
  int found = 0;
  if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR,
                                   &heur) != CUDNN_STATUS_SUCCESS)
    return 0;
  if (cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH,
                               CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                               &graph) != CUDNN_STATUS_SUCCESS ||
      cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_MODE,
                               CUDNN_TYPE_HEUR_MODE, 1,
                               &mode) != CUDNN_STATUS_SUCCESS ||
      cudnnBackendFinalize(heur) != CUDNN_STATUS_SUCCESS ||
      cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                               CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count,
                               NULL) != CUDNN_STATUS_SUCCESS) {
    cudnnBackendDestroyDescriptor(heur);
    return 0;
  }
  if (count > 64) count = 64;
  for (int64_t i = 0; i < count; i++)
    CUDNN_CHECK(cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR,
                                             &cfg[i]));
  if (cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                               CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got,
                               cfg) != CUDNN_STATUS_SUCCESS)
    got = 0;
  for (int64_t i = 0; i < got && !found; i++) {
    int64_t index = -1, ws = 0, n = 0;
    Bd plan = NULL;
    if (!g_engine_ok(cfg[i], dt, &index)) continue;
    if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR,
                                     &plan) != CUDNN_STATUS_SUCCESS)
      continue;
    if (cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE,
                                 CUDNN_TYPE_HANDLE, 1,
                                 &mdlrt_rt.dnn) == CUDNN_STATUS_SUCCESS &&
        cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                                 CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                                 &cfg[i]) == CUDNN_STATUS_SUCCESS &&
        cudnnBackendFinalize(plan) == CUDNN_STATUS_SUCCESS &&
        cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                 CUDNN_TYPE_INT64, 1, &n,
                                 &ws) == CUDNN_STATUS_SUCCESS &&
        ws >= 0) {
      if (top || ws <= room) {
        *plan_out = plan, *ws_out = ws, *engine_out = index, found = 1;
        continue;
      }
    }
    cudnnBackendDestroyDescriptor(plan);
  }
  /* The plan keeps what it needs of its configuration (cudnn_frontend
   * likewise frees its configurations once the plan is built). */
  for (int64_t i = 0; i < count; i++) cudnnBackendDestroyDescriptor(cfg[i]);
  cudnnBackendDestroyDescriptor(heur);
  return found;
}

static int64_t align256(int64_t n) { return (n + 255) & ~(int64_t)255; }

/* Makes c->g[dir][beta]. The fast engines of large NCHW convolutions want
 * scratch in proportion to the batch (a transposed copy of the operands),
 * often more than the workspace; a convolution is independent per image
 * (forward, backward-data) or a sum over images (backward-filter), so it
 * can run in k equal chunks of the batch. The rule, a function of the
 * shapes alone: cuDNN's first choice for the whole batch (the first
 * acceptable configuration of heuristic mode A); for k = 1, 2, ...
 * (divisors of N, at most 64) the first choice for a batch of N/k; the
 * first k where that is the same engine and fits the workspace wins.
 * Backward-filter with k > 1 adds the chunks' f32 results in an f32
 * accumulator at the start of the workspace and rounds once into dw (as a
 * single call would). If no k works: the first acceptable configuration
 * that fits, whole batch, of mode A then the fallback list. */
static void g_make(mdlrt_conv *c, int dir, int beta) {
  GraphPlan *gp = &c->g[dir][beta];
  int64_t N = c->xdim[0];
  int64_t acc = align256(c->wdim[0] * c->wdim[1] * c->wdim[2] * c->wdim[3] * 4);
  const char *e = getenv("MDLRT_GRAPH");
  gp->state = -1;
  if (e && *e == '0') return;
  int64_t top_engine = -1; /* cuDNN's first choice for the whole batch */
  for (int64_t k = 1; k <= N && k <= 64 && gp->state != 1; k++) {
    if (N % k) continue;
    int w32 = dir == CONV_FILTER && k > 1;
    int64_t room = mdlrt_rt.ws_bytes - (w32 ? acc : 0), ws = 0, index = -1;
    Bd graph = g_graph(c, dir, w32 ? 1 : beta, N / k, w32), plan = NULL;
    if (!graph) {
      if (k == 1) break; /* not even the plain shape: legacy */
      continue;
    }
    if (k == 1) {
      e = getenv("MDLRT_CONV_SURVEY");
      if (e && *e == '1') g_survey(c, dir, beta, graph);
    }
    int picked = g_pick(graph, CUDNN_HEUR_MODE_A, c->dt, 1, room, &plan,
                        &ws, &index);
    if (picked) {
      if (k == 1) top_engine = index;
      if (ws <= room && index == top_engine) {
        gp->plan = plan, gp->ws = ws, gp->engine = index, gp->state = 1;
        gp->chunks = k, gp->w32 = w32;
      } else {
        cudnnBackendDestroyDescriptor(plan);
      }
    }
    if (mdlrt_rt.prof && gp->state != 1 && k <= 8)
      fprintf(stderr, "mdlrt conv %s beta %d: %lld chunk(s)%s: %s engine "
              "%lld, %lld B scratch, %lld B room\n", conv_dir_name[dir], beta,
              (long long)k, w32 ? " f32 dw" : "",
              picked ? "first choice" : "no choice", (long long)index,
              (long long)ws, (long long)room);
  }
  if (gp->state != 1) {
    static const cudnnBackendHeurMode_t modes[] = {CUDNN_HEUR_MODE_A,
                                                   CUDNN_HEUR_MODE_FALLBACK};
    Bd graph = g_graph(c, dir, beta, N, 0);
    for (int m = 0; graph && m < 2 && gp->state != 1; m++)
      if (g_pick(graph, modes[m], c->dt, 0, mdlrt_rt.ws_bytes, &gp->plan,
                 &gp->ws, &gp->engine))
        gp->state = 1, gp->chunks = 1, gp->w32 = 0;
  }
  if (mdlrt_rt.prof)
    fprintf(stderr, "mdlrt conv %lldx%lldx%lldx%lld -> %lld k%lld s%lld %s "
            "beta %d: %s engine %lld, %d chunk(s), %lld B scratch%s\n",
            (long long)c->xdim[0], (long long)c->xdim[1],
            (long long)c->xdim[2], (long long)c->xdim[3], (long long)c->K,
            (long long)c->wdim[2], (long long)c->stride, conv_dir_name[dir],
            beta, gp->state == 1 ? "graph" : "no graph plan, legacy",
            (long long)gp->engine, gp->chunks, (long long)gp->ws,
            gp->w32 ? " + f32 accumulator" : "");
}

/* dw (+)= acc, rounded once (the chunked backward-filter's last step). */
__global__ void k_acc_out(View dw, int accum, const float *acc) {
  GRID_LOOP(i, dw.n) stf(dw, i, acc[i], accum);
}

/* Runs direction `dir` through its graph plan if it has one and every
 * pointer is 16-byte aligned; 0 if the caller must run the legacy path.
 * x, w, y are the direction's operands in the forward's roles (data: dx,
 * w, dy; filter: x, dw, dy). */
static int g_run(mdlrt_conv *c, int dir, int beta, const View &x,
                 const View &w, const View &y) {
  GraphPlan *gp = &c->g[dir][beta];
  if (gp->state == 0) g_make(c, dir, beta);
  if (gp->state != 1 || ((uintptr_t)x.p | (uintptr_t)w.p | (uintptr_t)y.p) & 15)
    return 0;
  int64_t es = mdlrt_dt_size(c->dt), k = gp->chunks;
  int64_t xs = x.n / k * es, ys = y.n / k * es;
  int64_t acc = gp->w32 ? align256(w.n * 4) : 0;
  char *ws = (char *)mdlrt_rt.ws + acc;
  void *pw = gp->w32 ? mdlrt_rt.ws : (void *)w.p;
  if (((uintptr_t)xs | (uintptr_t)ys) & 15) return 0;
  if (gp->w32)
    CUDA_CHECK(cudaMemsetAsync(mdlrt_rt.ws, 0, w.n * 4, mdlrt_rt.stream));
  for (int64_t i = 0; i < k; i++) {
    int64_t uid[3] = {'x', 'w', 'y'};
    void *ptr[3] = {x.p + i * xs, pw, y.p + i * ys};
    void *wsp = ws;
    Bd pack;
    CUDNN_CHECK(cudnnBackendCreateDescriptor(
        CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack));
    CUDNN_CHECK(cudnnBackendSetAttribute(
        pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 3, uid));
    CUDNN_CHECK(cudnnBackendSetAttribute(pack,
                                         CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                                         CUDNN_TYPE_VOID_PTR, 3, ptr));
    CUDNN_CHECK(cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE,
                                         CUDNN_TYPE_VOID_PTR, 1, &wsp));
    CUDNN_CHECK(cudnnBackendFinalize(pack));
    CUDNN_CHECK(cudnnBackendExecute(mdlrt_rt.dnn, gp->plan, pack));
    CUDNN_CHECK(cudnnBackendDestroyDescriptor(pack));
    KERNEL_CHECK();
  }
  if (gp->w32) {
    k_acc_out<<<grid_for(w.n), 256, 0, mdlrt_rt.stream>>>(
        w, beta, (const float *)mdlrt_rt.ws);
    KERNEL_CHECK();
  }
  return 1;
}

/* The first of cuDNN's ranked candidates (a legacy *AlgoPerf_t list) that
 * worked, is deterministic and whose scratch fits: its index, or -1. */
template <typename Perf>
static int first_fit(const Perf *p, int n, size_t ws) {
  for (int i = 0; i < n; i++)
    if (p[i].status == CUDNN_STATUS_SUCCESS && p[i].memory <= ws &&
        p[i].determinism == CUDNN_DETERMINISTIC)
      return i;
  return -1;
}

/* ---- conv2d backward-filter as im2col + cuBLAS ---------------------------
 * dw[k, (c,u,v)] = sum over (img, i, j) of dy[img, k, i, j] col[(c,u,v),
 * (img,i,j)], where col[(c,u,v), (img,i,j)] = x[img, c, i s - p + u d,
 * j s - p + v d] (0 outside the image): per chunk of images, one cuBLAS
 * product (batched over groups) with f32 accumulation into an f32
 * accumulator (beta 0 for the first chunk, 1 after), then rounded once into
 * dw (aw: added to dw's values first, in f32), as a single call would. The
 * order of summation is cuBLAS's within a chunk (its kernel is a function
 * of the shapes, of its scratch's size and of the operands' alignment: the
 * workspace's parts are 256-byte aligned, dy's own address counts where a
 * chunk has one image; atomics are never allowed on our handle), then
 * chunk after chunk: a function of the shapes and the workspace's size.
 * Products take x's dtype; f32 data is plain f32 arithmetic
 * (CUBLAS_COMPUTE_32F, default math mode: no TF32, no emulation).
 *
 * The workspace, from its start, each part 256-byte aligned (align256):
 *   acc  f32 [K, C/g, R, R] (dw's layout)        K C/g R R 4 bytes
 *   dyc  dy's chunk as [K, (img,i,j)], if n > 1  K n P Q es
 *   col  [(c,u,v), (img,i,j)] in x's dtype       C R R n P Q es
 *   the rest: cuBLAS's scratch while the products run (its workspace is
 *   pointed there, then back at the whole workspace).
 * A chunk of one image reads dy[img] ([K, P Q] already) in place. Chunks
 * (fg_chunk): the most images n (at most N, n P Q < 2^31) whose three parts
 * leave FG_BLAS_WS for cuBLAS; if none, 1 if acc and one image's columns
 * fit (cuBLAS gets what is left, maybe nothing); if not even that, cuDNN
 * runs. The batch then runs in order in chunks of ceil(N / ceil(N / n))
 * images (the last may have fewer). */

/* cuBLAS's scratch kept free when choosing the chunk: its split-K products
 * (a long sum into a small dw) use it; 4 MiB is its recommended workspace
 * before Hopper. */
enum { FG_BLAS_WS = 4 << 20 };

/* Whether a convolution's backward-filter goes through im2col + cuBLAS
 * (where the workspace allows): the rule, in one place. By default the
 * ungrouped ones that are 1x1, or 16-bit with at least 16 output channels:
 * cuDNN will not write a 16-bit dw in f32, so it cannot be chunked as the
 * f32 ones are, and its deterministic engines that fit a modest workspace
 * are slow at large images. Measured on an H100 with 32 MiB
 * (bench/conv_bwd_filter.cu, bench/RESULTS.md): f16 16x64x128x128 -> 64,
 * 3x3: 2.08 -> 0.63 ms; 16x3x128x128 -> 64: 0.77 -> 0.22 ms; but -> 3
 * output channels 0.21 -> 0.79 ms (the product's M is 3); f32 1x1 stride 2
 * 32x64x56x56 -> 128: 0.42 -> 0.11 ms, while f32 3x3 and 7x7 ones are 1.1
 * to 5.5 times slower than cuDNN's. MDLRT_CONV_GEMM=0 in the environment:
 * never; MDLRT_CONV_GEMM=1: every convolution, any dtype and groups. Read
 * when the plan is made. */
static int fg_wanted(const mdlrt_conv *c) {
  const char *e = getenv("MDLRT_CONV_GEMM");
  if (e && *e == '0') return 0;
  if (e && *e == '1') return 1;
  if (c->groups != 1) return 0;
  if (c->wdim[2] == 1 && c->wdim[3] == 1) return 1;
  return c->dt != MDLRT_F32 && c->K >= 16;
}

/* Bytes of acc. */
static int64_t fg_acc(const mdlrt_conv *c) {
  return align256(c->K * c->wdim[1] * c->wdim[2] * c->wdim[3] * 4);
}

/* Bytes of acc, dyc and col for a chunk of n images. */
static int64_t fg_bytes(const mdlrt_conv *c, int64_t n) {
  int64_t es = mdlrt_dt_size(c->dt), l = n * c->P * c->Q;
  int64_t crr = c->xdim[1] * c->wdim[2] * c->wdim[3];
  return fg_acc(c) + (n > 1 ? align256(c->K * l * es) : 0) +
         align256(crr * l * es);
}

/* Images per chunk in a workspace of ws bytes (the rule above); 0: the
 * path does not fit. */
static int64_t fg_chunk(const mdlrt_conv *c, int64_t ws) {
  int64_t N = c->N, pq = c->P * c->Q, n = 0;
  while (n < N && (n + 1) * pq <= INT32_MAX &&
         fg_bytes(c, n + 1) + FG_BLAS_WS <= ws)
    n++;
  if (n == 0 && pq <= INT32_MAX && fg_bytes(c, 1) <= ws) n = 1;
  if (n == 0) return 0;
  int64_t chunks = (N + n - 1) / n;
  return (N + chunks - 1) / chunks;
}

/* V elements of T: one aligned load or store. */
template <typename T, int V> struct alignas(sizeof(T) * V) Vec {
  T e[V];
};

/* col of n images at x (packed NCHW), raw copies of the dtype's bits (T of
 * its size). A thread: V consecutive (img,i,j) of one output row (Q % V ==
 * 0, so col's rows stay V-aligned), every (u, v) of channel c. */
template <typename T, int V>
__global__ void k_im2col(T *col, const T *x, int64_t n, int64_t C, int64_t H,
                         int64_t W, int64_t P, int64_t Q, int R, int s, int p,
                         int d) {
  int64_t pq = P * Q, l = n * pq;
  for (int64_t c = blockIdx.y; c < C; c += gridDim.y)
    GRID_LOOP(g, l / V) {
      int64_t at = g * V, img = at / pq, r = at - img * pq, i = r / Q;
      int64_t h0 = i * s - p, w0 = (r - i * Q) * s - p;
      const T *xc = x + (img * C + c) * H * W;
      T *out = col + c * R * R * l + at;
      for (int u = 0; u < R; u++) {
        int64_t h = h0 + u * d;
        int hin = h >= 0 && h < H;
        for (int v = 0; v < R; v++) {
          Vec<T, V> o;
#pragma unroll
          for (int t = 0; t < V; t++) {
            int64_t w = w0 + t * s + v * d;
            o.e[t] = hin && w >= 0 && w < W ? xc[h * W + w] : (T)0;
          }
          *(Vec<T, V> *)(out + (u * R + v) * l) = o;
        }
      }
    }
}

/* dyc[k, (img,i,j)] = dy[img, k, i, j] for the n images at dy, V elements
 * at a time (P Q % V == 0, dy 16-byte aligned if V > 1). */
template <typename T, int V>
__global__ void k_fg_stage(T *dyc, const T *dy, int64_t n, int64_t K,
                           int64_t pq) {
  GRID_LOOP(g, n * K * pq / V) {
    int64_t at = g * V, t = at / pq, ij = at - t * pq, img = t % n;
    *(Vec<T, V> *)(dyc + at) =
        *(const Vec<T, V> *)(dy + (img * K + t / n) * pq + ij);
  }
}

template <typename T, int V>
static void fg_im2col_t(const mdlrt_conv *c, char *col, const char *x,
                        int64_t n) {
  int64_t C = c->xdim[1];
  dim3 grid(grid_for(n * c->P * c->Q / V), (unsigned)(C < 65535 ? C : 65535));
  k_im2col<T, V><<<grid, 256, 0, mdlrt_rt.stream>>>(
      (T *)col, (const T *)x, n, C, c->xdim[2], c->xdim[3], c->P, c->Q,
      (int)c->wdim[2], (int)c->stride, (int)c->pad, (int)c->dil);
  KERNEL_CHECK();
}

/* col of the n images at x: 16 bytes a store where Q allows. */
static void fg_im2col(const mdlrt_conv *c, char *col, const char *x,
                      int64_t n) {
  if (c->dt == MDLRT_F32) {
    if (c->Q % 4 == 0) fg_im2col_t<uint32_t, 4>(c, col, x, n);
    else fg_im2col_t<uint32_t, 1>(c, col, x, n);
  } else {
    if (c->Q % 8 == 0) fg_im2col_t<uint16_t, 8>(c, col, x, n);
    else fg_im2col_t<uint16_t, 1>(c, col, x, n);
  }
}

template <typename T, int V>
static void fg_stage_t(const mdlrt_conv *c, char *dyc, const char *dy,
                       int64_t n) {
  int64_t pq = c->P * c->Q;
  k_fg_stage<T, V><<<grid_for(n * c->K * pq / V), 256, 0, mdlrt_rt.stream>>>(
      (T *)dyc, (const T *)dy, n, c->K, pq);
  KERNEL_CHECK();
}

/* dyc of the n images at dy: 16 bytes a copy where P Q and dy allow. */
static void fg_stage(const mdlrt_conv *c, char *dyc, const char *dy,
                     int64_t n) {
  int64_t pq = c->P * c->Q;
  int al = ((uintptr_t)dy & 15) == 0;
  if (c->dt == MDLRT_F32) {
    if (al && pq % 4 == 0) fg_stage_t<uint32_t, 4>(c, dyc, dy, n);
    else fg_stage_t<uint32_t, 1>(c, dyc, dy, n);
  } else {
    if (al && pq % 8 == 0) fg_stage_t<uint16_t, 8>(c, dyc, dy, n);
    else fg_stage_t<uint16_t, 1>(c, dyc, dy, n);
  }
}

/* The backward-filter through im2col + cuBLAS, if the plan chose it, the
 * workspace still holds its parts and x, dy are packed: dw (+)= the sum
 * over the batch; 0 if the caller must run cuDNN. */
static int fg_run(mdlrt_conv *c, int aw, const View &x, const View &dw,
                  const View &dy) {
  int64_t n = c->fg_n;
  if (!n || fg_bytes(c, n) > mdlrt_rt.ws_bytes || !x.contig || !dy.contig)
    return 0;
  int64_t es = mdlrt_dt_size(c->dt), pq = c->P * c->Q, K = c->K;
  int64_t kg = K / c->groups, crrg = c->wdim[1] * c->wdim[2] * c->wdim[3];
  int64_t xs = c->xdim[1] * c->xdim[2] * c->xdim[3] * es, used = fg_bytes(c, n);
  char *ws = (char *)mdlrt_rt.ws, *dyc = ws + fg_acc(c);
  char *col = dyc + (n > 1 ? align256(K * n * pq * es) : 0);
  View A, B, acc;
  memset(&A, 0, sizeof A), memset(&B, 0, sizeof B), memset(&acc, 0, sizeof acc);
  A.dt = B.dt = c->dt, acc.dt = MDLRT_F32, B.p = col, acc.p = ws;
  CUBLAS_CHECK(cublasSetWorkspace(mdlrt_rt.blas, ws + used,
                                  (size_t)(mdlrt_rt.ws_bytes - used)));
  for (int64_t i0 = 0; i0 < c->N; i0 += n) {
    int64_t m = c->N - i0 < n ? c->N - i0 : n, l = m * pq;
    fg_im2col(c, col, x.p + i0 * xs, m);
    A.p = dy.p + i0 * K * pq * es;
    if (m > 1) {
      fg_stage(c, dyc, A.p, m);
      A.p = dyc;
    }
    mdlrt_gemm(0, 1, kg, crrg, l, A, B, acc, i0 ? 1.0f : 0.0f, c->groups,
               kg * l, crrg * l, kg * crrg);
  }
  CUBLAS_CHECK(cublasSetWorkspace(mdlrt_rt.blas, mdlrt_rt.ws,
                                  (size_t)mdlrt_rt.ws_bytes));
  k_acc_out<<<grid_for(dw.n), 256, 0, mdlrt_rt.stream>>>(dw, aw,
                                                         (const float *)ws);
  KERNEL_CHECK();
  return 1;
}

mdlrt_conv *mdlrt_conv_plan(int dt, int64_t N, int64_t C, int64_t H,
                            int64_t W, int64_t K, int64_t R, int64_t stride,
                            int64_t pad, int64_t dil, int64_t groups,
                            int64_t P, int64_t Q) {
  mdlrt_conv *c = (mdlrt_conv *)calloc(1, sizeof *c);
  cudnnDataType_t t = dnn_dt(dt);
  c->K = K, c->P = P, c->Q = Q, c->N = N, c->groups = groups, c->dt = dt;
  c->xdim[0] = N, c->xdim[1] = C, c->xdim[2] = H, c->xdim[3] = W;
  c->wdim[0] = K, c->wdim[1] = C / groups, c->wdim[2] = R, c->wdim[3] = R;
  c->ydim[0] = N, c->ydim[1] = K, c->ydim[2] = P, c->ydim[3] = Q;
  c->stride = stride, c->pad = pad, c->dil = dil;
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&c->x));
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&c->y));
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&c->b));
  CUDNN_CHECK(cudnnCreateFilterDescriptor(&c->w));
  CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&c->conv));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(c->x, CUDNN_TENSOR_NCHW, t, (int)N,
                                         (int)C, (int)H, (int)W));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(c->y, CUDNN_TENSOR_NCHW, t, (int)N,
                                         (int)K, (int)P, (int)Q));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(c->b, CUDNN_TENSOR_NCHW, t, 1,
                                         (int)K, 1, 1));
  CUDNN_CHECK(cudnnSetFilter4dDescriptor(c->w, t, CUDNN_TENSOR_NCHW, (int)K,
                                         (int)(C / groups), (int)R, (int)R));
  CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
      c->conv, (int)pad, (int)pad, (int)stride, (int)stride, (int)dil,
      (int)dil, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  CUDNN_CHECK(cudnnSetConvolutionGroupCount(c->conv, (int)groups));
  CUDNN_CHECK(cudnnSetConvolutionMathType(
      c->conv, dt == MDLRT_F32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH));

  /* Each direction's algorithm: the first in cuDNN's heuristic ranking
   * (cudnnGet*Algorithm_v7: a function of the shapes alone) that is
   * deterministic and whose scratch fits the one workspace. Not the
   * fastest by timing (cudnnFind*): a timed choice can differ between two
   * runs, or between a checkpointed plan and the plain one, and so could
   * the rounding of the gradients; mdlc promises them bit-identical. */
  size_t ws = (size_t)mdlrt_rt.ws_bytes;
  int got = 0;
  cudnnConvolutionFwdAlgoPerf_t pf[16];
  CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(
      mdlrt_rt.dnn, c->x, c->w, c->conv, c->y, 16, &got, pf));
  int i = first_fit(pf, got, ws);
  if (i >= 0)
    c->fwd = pf[i].algo, c->ws_fwd = pf[i].memory, c->math_fwd = pf[i].mathType;
  c->legacy_none[CONV_FWD] = i < 0;
  cudnnConvolutionBwdDataAlgoPerf_t pd[16];
  CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
      mdlrt_rt.dnn, c->w, c->y, c->conv, c->x, 16, &got, pd));
  i = first_fit(pd, got, ws);
  if (i >= 0)
    c->bwd_data = pd[i].algo, c->ws_data = pd[i].memory,
    c->math_data = pd[i].mathType;
  c->legacy_none[CONV_DATA] = i < 0;
  cudnnConvolutionBwdFilterAlgoPerf_t pw[16];
  CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
      mdlrt_rt.dnn, c->x, c->y, c->conv, c->w, 16, &got, pw));
  i = first_fit(pw, got, ws);
  if (i >= 0)
    c->bwd_filter = pw[i].algo, c->ws_filter = pw[i].memory,
    c->math_filter = pw[i].mathType;
  c->legacy_none[CONV_FILTER] = i < 0;
  if (mdlrt_rt.prof) /* MDLRT_PROF=1: the choices, and cuDNN's first */
    fprintf(stderr, "mdlrt conv %lldx%lldx%lldx%lld -> %lld k%lld s%lld: legacy "
            "fwd algo %d (%zu B; first %d), data %d (%zu B; first %d), filter %d "
            "(%zu B; first %d), workspace %zu B\n", (long long)N,
            (long long)C, (long long)H, (long long)W, (long long)K,
            (long long)R, (long long)stride, (int)c->fwd, c->ws_fwd,
            (int)pf[0].algo, (int)c->bwd_data, c->ws_data, (int)pd[0].algo,
            (int)c->bwd_filter, c->ws_filter, (int)pw[0].algo, ws);
  int want = fg_wanted(c);
  c->fg_n = want ? fg_chunk(c, mdlrt_rt.ws_bytes) : 0;
  if (mdlrt_rt.prof && c->fg_n) {
    int64_t used = fg_bytes(c, c->fg_n), acc = fg_acc(c);
    int64_t dyc = c->fg_n > 1
                      ? align256(K * c->fg_n * P * Q * mdlrt_dt_size(dt))
                      : 0;
    fprintf(stderr, "mdlrt conv %lldx%lldx%lldx%lld -> %lld k%lld s%lld "
            "filter: im2col + cuBLAS, %lld image(s) a chunk, %lld chunk(s); "
            "workspace: %lld B f32 accumulator, %lld B dy, %lld B columns, "
            "%lld B cuBLAS scratch\n", (long long)N, (long long)C,
            (long long)H, (long long)W, (long long)K, (long long)R,
            (long long)stride, (long long)c->fg_n,
            (long long)((N + c->fg_n - 1) / c->fg_n), (long long)acc,
            (long long)dyc, (long long)(used - acc - dyc),
            (long long)(mdlrt_rt.ws_bytes - used));
  } else if (mdlrt_rt.prof) {
    fprintf(stderr, "mdlrt conv %lldx%lldx%lldx%lld -> %lld k%lld s%lld "
            "filter: cuDNN (%s)\n", (long long)N, (long long)C, (long long)H,
            (long long)W, (long long)K, (long long)R, (long long)stride,
            want ? "im2col + cuBLAS does not fit: the workspace is under "
                   "the f32 accumulator and one image's columns"
                 : "im2col + cuBLAS not chosen: the default rule, or "
                   "MDLRT_CONV_GEMM=0");
  }
  return c;
}

/* The legacy path ran for direction `dir` (said once under MDLRT_PROF). */
static void legacy_note(mdlrt_conv *c, int dir) {
  static const char *const what[] = {
      "no deterministic forward algorithm fits the workspace",
      "no deterministic backward-data algorithm fits the workspace",
      "no deterministic backward-filter algorithm fits the workspace"};
  if (c->legacy_none[dir])
    mdlrt_fail("cuDNN", what[dir], "cudnnGetConvolution*Algorithm_v7",
               __FILE__, __LINE__);
  if (mdlrt_rt.prof && !c->legacy_used[dir])
    fprintf(stderr, "mdlrt conv %lldx%lldx%lldx%lld -> %lld k%lld s%lld %s: "
            "legacy path\n", (long long)c->xdim[0], (long long)c->xdim[1],
            (long long)c->xdim[2], (long long)c->xdim[3], (long long)c->K,
            (long long)c->wdim[2], (long long)c->stride, conv_dir_name[dir]);
  c->legacy_used[dir] = 1;
}

void mdlrt_conv_fwd(mdlrt_conv *c, mdlrt_ref yr, mdlrt_ref xr, mdlrt_ref wr,
                    mdlrt_ref br) {
  View y = mdlrt_view(yr), x = mdlrt_view(xr), w = mdlrt_view(wr);
  float one = 1.0f, zero = 0.0f;
  if (br.base) /* y = b, then y = conv(x, w) + y: rounded once */
    mdlrt_bias_fill(y, mdlrt_view(br), c->K, c->P * c->Q);
  if (g_run(c, CONV_FWD, br.base ? 1 : 0, x, w, y)) return;
  legacy_note(c, CONV_FWD);
  CUDNN_CHECK(cudnnSetConvolutionMathType(c->conv, c->math_fwd));
  CUDNN_CHECK(cudnnConvolutionForward(mdlrt_rt.dnn, &one, c->x, x.p, c->w,
                                      w.p, c->conv, c->fwd, mdlrt_rt.ws,
                                      c->ws_fwd, br.base ? &one : &zero, c->y,
                                      y.p));
  KERNEL_CHECK();
}

void mdlrt_conv_bwd(mdlrt_conv *c, mdlrt_ref dxr, int ax, mdlrt_ref dwr,
                    int aw, mdlrt_ref dbr, int ab, mdlrt_ref dyr,
                    mdlrt_ref xr, mdlrt_ref wr) {
  View dy = mdlrt_view(dyr), x = mdlrt_view(xr), w = mdlrt_view(wr);
  float one = 1.0f, zero = 0.0f;
  if (dxr.base) {
    View dx = mdlrt_view(dxr);
    if (!g_run(c, CONV_DATA, ax ? 1 : 0, dx, w, dy)) {
      legacy_note(c, CONV_DATA);
      CUDNN_CHECK(cudnnSetConvolutionMathType(c->conv, c->math_data));
      CUDNN_CHECK(cudnnConvolutionBackwardData(
          mdlrt_rt.dnn, &one, c->w, w.p, c->y, dy.p, c->conv, c->bwd_data,
          mdlrt_rt.ws, c->ws_data, ax ? &one : &zero, c->x, dx.p));
      KERNEL_CHECK();
    }
  }
  if (dwr.base) {
    View dw = mdlrt_view(dwr);
    if (!fg_run(c, aw, x, dw, dy) &&
        !g_run(c, CONV_FILTER, aw ? 1 : 0, x, dw, dy)) {
      legacy_note(c, CONV_FILTER);
      CUDNN_CHECK(cudnnSetConvolutionMathType(c->conv, c->math_filter));
      CUDNN_CHECK(cudnnConvolutionBackwardFilter(
          mdlrt_rt.dnn, &one, c->x, x.p, c->y, dy.p, c->conv, c->bwd_filter,
          mdlrt_rt.ws, c->ws_filter, aw ? &one : &zero, c->w, dw.p));
      KERNEL_CHECK();
    }
  }
  if (dbr.base)
    mdlrt_chan_sum(mdlrt_view(dbr), ab, dy, c->N, c->K, c->P * c->Q);
}
