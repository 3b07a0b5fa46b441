/* runtime/mdlrt_nn.cu: the ops that are more than a map over elements:
 * matrix products (cuBLAS, tensor cores for 16-bit), conv2d (cuDNN, its
 * algorithms chosen among those whose scratch fits the workspace; some
 * backward-filters as im2col + cuBLAS), pooling, the norms, softmax,
 * embedding and the losses (our own kernels).
 *
 * Row-major products go to column-major cuBLAS as C^T = op(B)^T op(A)^T,
 * so no matmul operand is ever copied or transposed in memory.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdlrt_dev.cuh"

/* ---- matrix products -------------------------------------------------- */

static cudaDataType cuda_dt(int dt) {
  switch (dt) {
  case MDLRT_F16: return CUDA_R_16F;
  case MDLRT_BF16: return CUDA_R_16BF;
  default: return CUDA_R_32F;
  }
}

/* Row-major C[m,n] = alpha op(A) op(B) + beta C, `batch` times with
 * element strides sA, sB, sC between the matrices. A is [m,k] ([k,m] if
 * ta), B is [k,n] ([n,k] if tb). A stride of 0 on C (a broadcast operand's
 * gradient) runs the batch one by one, accumulating. */
static void gemm(int ta, int tb, int64_t m, int64_t n, int64_t k,
                 const View &A, const View &B, const View &C, float beta,
                 int64_t batch, int64_t sA, int64_t sB, int64_t sC) {
  float alpha = 1.0f;
  cublasOperation_t opA = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t opB = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  int64_t lda = ta ? m : k, ldb = tb ? k : n;
  if (sC == 0 && batch > 1) {
    int esA = mdlrt_dt_size(A.dt), esB = mdlrt_dt_size(B.dt);
    for (int64_t i = 0; i < batch; i++) {
      float bt = i == 0 ? beta : 1.0f;
      CUBLAS_CHECK(cublasGemmEx(
          mdlrt_rt.blas, opB, opA, (int)n, (int)m, (int)k, &alpha,
          B.p + i * sB * esB, cuda_dt(B.dt), (int)ldb, A.p + i * sA * esA,
          cuda_dt(A.dt), (int)lda, &bt, C.p, cuda_dt(C.dt), (int)n,
          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
  } else if (batch == 1) {
    CUBLAS_CHECK(cublasGemmEx(mdlrt_rt.blas, opB, opA, (int)n, (int)m, (int)k,
                              &alpha, B.p, cuda_dt(B.dt), (int)ldb, A.p,
                              cuda_dt(A.dt), (int)lda, &beta, C.p,
                              cuda_dt(C.dt), (int)n, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
  } else {
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        mdlrt_rt.blas, opB, opA, (int)n, (int)m, (int)k, &alpha, B.p,
        cuda_dt(B.dt), (int)ldb, sB, A.p, cuda_dt(A.dt), (int)lda, sA, &beta,
        C.p, cuda_dt(C.dt), (int)n, sC, (int)batch, CUBLAS_COMPUTE_32F,
        CUBLAS_GEMM_DEFAULT));
  }
  KERNEL_CHECK();
}

/* y[M,N] = b[N], broadcast over rows; or per channel of NCHW (inner = HW).
 * The product is then accumulated onto it (beta = 1), so x W^T + b is
 * rounded to y's dtype once (docs/ops.md). */
__global__ void k_bias_fill(View y, View b, int64_t N, int64_t inner) {
  GRID_LOOP(i, y.n) {
    int64_t c = (i / inner) % N;
    stf(y, i, ldf(b, c), 0);
  }
}

/* db[c] (+)= sum of dy over everything but channel c: dy viewed as
 * [outer, N, inner]. One block per channel. */
__global__ void k_chan_sum(View db, int accum, View dy, int64_t outer,
                           int64_t N, int64_t inner) {
  int64_t c = blockIdx.x;
  float s = 0.0f;
  for (int64_t e = threadIdx.x; e < outer * inner; e += blockDim.x) {
    int64_t o = e / inner, h = e - o * inner;
    s += ldf(dy, (o * N + c) * inner + h);
  }
  s = block_sum(s);
  if (threadIdx.x == 0) stf(db, c, s, accum);
}

/* ---- per-channel reductions over x[outer, C, inner] --------------------
 * Bias gradients, batchnorm's statistics and the norms' weight gradients
 * all sum, for each channel c, a function of the elements (o, c, h) at
 * (o C + c) inner + h (contiguous). The work is split over channels and
 * over chunks of `outer`, so that every SM has blocks: with inner > 1 a
 * block takes one channel and one chunk, its threads walking the chunk's
 * rows of `inner` contiguous elements; with inner == 1 (a [rows, C]
 * matrix) a block takes 32 adjacent channels (a warp reads 32 adjacent
 * elements) and one chunk of rows. Each block's partial sums go to the
 * workspace (memory.md: the only scratch), and a second kernel adds a
 * channel's partials in chunk order (deterministic) and applies the
 * epilogue; with one chunk the first kernel applies it directly. */
enum { CR_SUM, CR_SQDEV, CR_DYXHAT };            /* what is summed */
enum { EP_STORE, EP_BN_MEAN, EP_BN_VAR, EP_WGRAD }; /* what totals become */

struct CRed {
  int what;             /* CR_SUM: s0 = sum a. CR_SQDEV: s0 = sum (a -
                           mean[c])^2. CR_DYXHAT: s0 = sum a (dy), s1 =
                           sum a (b - mean[si]) rstd[si] (b: x) */
  int ep;               /* EP_... */
  View a, b;            /* the summed tensors */
  View mean, rstd;      /* statistics (f32) */
  int64_t outer, C, inner;
  int64_t G, cpg;       /* CR_DYXHAT: statistic si = o G + c / cpg, or c
                           if G == 0 (batchnorm) */
  View out0, out1;      /* EP_STORE: out0 (+)= s0. EP_BN_MEAN: out0 =
                           mean. EP_BN_VAR: out0 = invstd. EP_WGRAD: out0
                           (dw) (+)= s1, out1 (db) (+)= s0 */
  int acc0, acc1;       /* accumulate into out0, out1 */
  View rm, rv;          /* EP_BN_VAR: running statistics, updated */
  float eps;            /* EP_BN_VAR */
  float *tot;           /* EP_WGRAD: s0, s1 of channel c also at tot[2c] */
};

__device__ __forceinline__ void cred_elem(const CRed &r, int64_t o,
                                          int64_t c, int64_t off, float &s0,
                                          float &s1) {
  switch (r.what) {
  case CR_SUM: s0 += ldf(r.a, off); break;
  case CR_SQDEV: {
    float d = ldf(r.a, off) - ldf(r.mean, c);
    s0 += d * d;
    break;
  }
  default: {
    int64_t si = r.G ? o * r.G + c / r.cpg : c;
    float d = ldf(r.a, off);
    s0 += d;
    s1 += d * (ldf(r.b, off) - ldf(r.mean, si)) * ldf(r.rstd, si);
  }
  }
}

__device__ void cred_epilogue(const CRed &r, int64_t c, float s0, float s1) {
  int64_t n = r.outer * r.inner;
  switch (r.ep) {
  case EP_STORE: stf(r.out0, c, s0, r.acc0); break;
  case EP_BN_MEAN: stf(r.out0, c, s0 / (float)n, 0); break;
  case EP_BN_VAR: {
    float unb = n > 1 ? s0 / (float)(n - 1) : s0;
    stf(r.out0, c, rsqrtf(s0 / (float)n + r.eps), 0);
    stf(r.rm, c, 0.9f * ldf(r.rm, c) + 0.1f * ldf(r.mean, c), 0);
    stf(r.rv, c, 0.9f * ldf(r.rv, c) + 0.1f * unb, 0);
    break;
  }
  default:
    if (r.out0.p) stf(r.out0, c, s1, r.acc0);
    if (r.out1.p) stf(r.out1, c, s0, r.acc1);
    if (r.tot) r.tot[2 * c] = s0, r.tot[2 * c + 1] = s1;
  }
}

/* inner > 1: block (c, chunk); threads walk the chunk's rows. */
__global__ void k_cred_rows(CRed r, int64_t ochunk, float *part) {
  int64_t c = blockIdx.x, o0 = blockIdx.y * ochunk;
  int64_t o1 = o0 + ochunk < r.outer ? o0 + ochunk : r.outer;
  float s0 = 0.0f, s1 = 0.0f;
  int64_t o = o0, h = threadIdx.x;
  while (h >= r.inner) h -= r.inner, o++;
  while (o < o1) {
    cred_elem(r, o, c, (o * r.C + c) * r.inner + h, s0, s1);
    h += blockDim.x;
    while (h >= r.inner) h -= r.inner, o++;
  }
  s0 = block_sum(s0);
  s1 = block_sum(s1);
  if (threadIdx.x == 0) {
    if (gridDim.y == 1) {
      cred_epilogue(r, c, s0, s1);
    } else {
      part[(blockIdx.y * r.C + c) * 2] = s0;
      part[(blockIdx.y * r.C + c) * 2 + 1] = s1;
    }
  }
}

/* inner == 1: block (32 channels, chunk), 32 x 8 threads. */
__global__ void k_cred_cols(CRed r, int64_t ochunk, float *part) {
  __shared__ float sh[2][8][33];
  int64_t c = blockIdx.x * 32 + threadIdx.x, o0 = blockIdx.y * ochunk;
  int64_t o1 = o0 + ochunk < r.outer ? o0 + ochunk : r.outer;
  float s0 = 0.0f, s1 = 0.0f;
  if (c < r.C)
    for (int64_t o = o0 + threadIdx.y; o < o1; o += 8)
      cred_elem(r, o, c, o * r.C + c, s0, s1);
  sh[0][threadIdx.y][threadIdx.x] = s0;
  sh[1][threadIdx.y][threadIdx.x] = s1;
  __syncthreads();
  if (threadIdx.y || c >= r.C) return;
  for (int k = 1; k < 8; k++)
    s0 += sh[0][k][threadIdx.x], s1 += sh[1][k][threadIdx.x];
  if (gridDim.y == 1) {
    cred_epilogue(r, c, s0, s1);
  } else {
    part[(blockIdx.y * r.C + c) * 2] = s0;
    part[(blockIdx.y * r.C + c) * 2 + 1] = s1;
  }
}

__global__ void k_cred_fin(CRed r, int64_t chunks, const float *part) {
  GRID_LOOP(c, r.C) {
    float s0 = 0.0f, s1 = 0.0f;
    for (int64_t j = 0; j < chunks; j++)
      s0 += part[(j * r.C + c) * 2], s1 += part[(j * r.C + c) * 2 + 1];
    cred_epilogue(r, c, s0, s1);
  }
}

/* Runs reduction r; the partials take the workspace after its first
 * `skip` floats (r.tot's). Fewer chunks if the workspace is small, one
 * (no partials) if it has no room. */
static void cred_run(const CRed &r, int64_t skip) {
  int cols = r.inner == 1;
  int64_t cblocks = cols ? (r.C + 31) / 32 : r.C;
  int64_t rows = cols ? (r.outer + 7) / 8 : r.outer;
  int64_t chunks = (1056 + cblocks - 1) / cblocks; /* ~8 blocks per SM */
  if (chunks > rows) chunks = rows;
  if (chunks > 65535) chunks = 65535;
  int64_t room = mdlrt_rt.ws ? mdlrt_rt.ws_bytes / 4 - skip : 0;
  if (chunks * r.C * 2 > room) chunks = room / (r.C * 2);
  if (chunks < 2) chunks = 1;
  int64_t ochunk = (r.outer + chunks - 1) / chunks;
  if (ochunk < 1) ochunk = 1;
  chunks = (r.outer + ochunk - 1) / ochunk;
  if (chunks < 1) chunks = 1;
  float *part = chunks > 1 ? (float *)mdlrt_rt.ws + skip : NULL;
  dim3 grid((unsigned)cblocks, (unsigned)chunks);
  if (cols)
    k_cred_cols<<<grid, dim3(32, 8), 0, mdlrt_rt.stream>>>(r, ochunk, part);
  else
    k_cred_rows<<<grid, 256, 0, mdlrt_rt.stream>>>(r, ochunk, part);
  KERNEL_CHECK();
  if (chunks > 1) {
    k_cred_fin<<<grid_for(r.C), 256, 0, mdlrt_rt.stream>>>(r, chunks, part);
    KERNEL_CHECK();
  }
}

/* db[c] (+)= sum of dy[outer, C, inner] over all but c. */
static void chan_sum(View db, int accum, View dy, int64_t outer, int64_t C,
                     int64_t inner) {
  CRed r;
  memset(&r, 0, sizeof r);
  r.what = CR_SUM, r.ep = EP_STORE, r.a = dy, r.out0 = db, r.acc0 = accum;
  r.outer = outer, r.C = C, r.inner = inner;
  if (dy.contig) {
    cred_run(r, 0);
  } else {
    k_chan_sum<<<(unsigned)C, 256, 0, mdlrt_rt.stream>>>(db, accum, dy, outer,
                                                        C, inner);
    KERNEL_CHECK();
  }
}

void mdlrt_linear_fwd(mdlrt_ref yr, mdlrt_ref xr, mdlrt_ref wr, mdlrt_ref br,
                      int64_t M, int64_t K, int64_t N) {
  View y = mdlrt_view(yr), x = mdlrt_view(xr), w = mdlrt_view(wr);
  if (br.base) {
    k_bias_fill<<<grid_for(y.n), 256, 0, mdlrt_rt.stream>>>(
        y, mdlrt_view(br), N, 1);
    KERNEL_CHECK();
  }
  gemm(0, 1, M, N, K, x, w, y, br.base ? 1.0f : 0.0f, 1, 0, 0, 0);
}

void mdlrt_linear_bwd(mdlrt_ref dxr, int ax, mdlrt_ref dwr, int aw,
                      mdlrt_ref dbr, int ab, mdlrt_ref dyr, mdlrt_ref xr,
                      mdlrt_ref wr, int64_t M, int64_t K, int64_t N) {
  View dy = mdlrt_view(dyr), x = mdlrt_view(xr), w = mdlrt_view(wr);
  if (dxr.base) /* dx[M,K] = dy[M,N] w[N,K] */
    gemm(0, 0, M, K, N, dy, w, mdlrt_view(dxr), ax ? 1.0f : 0.0f, 1, 0, 0, 0);
  if (dwr.base) /* dw[N,K] = dy^T x */
    gemm(1, 0, N, K, M, dy, x, mdlrt_view(dwr), aw ? 1.0f : 0.0f, 1, 0, 0, 0);
  if (dbr.base) chan_sum(mdlrt_view(dbr), ab, dy, M, N, 1);
}

void mdlrt_matmul_fwd(mdlrt_ref yr, mdlrt_ref ar, mdlrt_ref br, int ta,
                      int tb, int64_t batch, int64_t m, int64_t k, int64_t n,
                      int64_t sa, int64_t sb) {
  gemm(ta, tb, m, n, k, mdlrt_view(ar), mdlrt_view(br), mdlrt_view(yr), 0.0f,
       batch, sa, sb, m * n);
}

void mdlrt_matmul_bwd(mdlrt_ref dar, int aa, mdlrt_ref dbr, int ab,
                      mdlrt_ref dyr, mdlrt_ref ar, mdlrt_ref br, int ta,
                      int tb, int64_t batch, int64_t m, int64_t k, int64_t n,
                      int64_t sa, int64_t sb) {
  View dy = mdlrt_view(dyr), a = mdlrt_view(ar), b = mdlrt_view(br);
  int64_t sy = m * n;
  if (dar.base) {
    View da = mdlrt_view(dar);
    if (!ta) /* da[m,k] = dy op(b)^T */
      gemm(0, tb ? 0 : 1, m, k, n, dy, b, da, aa ? 1.0f : 0.0f, batch, sy, sb,
           sa);
    else /* da[k,m] = op(b) dy^T */
      gemm(tb ? 1 : 0, 1, k, m, n, b, dy, da, aa ? 1.0f : 0.0f, batch, sb, sy,
           sa);
  }
  if (dbr.base) {
    View db = mdlrt_view(dbr);
    if (!tb) /* db[k,n] = op(a)^T dy */
      gemm(ta ? 0 : 1, 0, k, n, m, a, dy, db, ab ? 1.0f : 0.0f, batch, sa, sy,
           sb);
    else /* db[n,k] = dy^T op(a) */
      gemm(1, ta ? 1 : 0, n, k, m, dy, a, db, ab ? 1.0f : 0.0f, batch, sy, sa,
           sb);
  }
}

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
  default: return CUDNN_DATA_FLOAT;
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
    gemm(0, 1, kg, crrg, l, A, B, acc, i0 ? 1.0f : 0.0f, c->groups, kg * l,
         crrg * l, kg * crrg);
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
  if (br.base) { /* y = b, then y = conv(x, w) + y: rounded once */
    k_bias_fill<<<grid_for(y.n), 256, 0, mdlrt_rt.stream>>>(
        y, mdlrt_view(br), c->K, c->P * c->Q);
    KERNEL_CHECK();
  }
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
  if (dbr.base) chan_sum(mdlrt_view(dbr), ab, dy, c->N, c->K, c->P * c->Q);
}

/* ---- pooling (NCHW, contiguous) --------------------------------------- */

/* y[n,c,p,q] = max or mean of the window; avg counts the padding. */
__global__ void k_pool_fwd(int op, View y, View x, int64_t H, int64_t W,
                           int64_t P, int64_t Q, int64_t k, int64_t s,
                           int64_t pad) {
  GRID_LOOP(i, y.n) {
    int64_t q = i % Q, p = (i / Q) % P, nc = i / (P * Q);
    float acc = op == 0 ? -INFINITY : 0.0f;
    for (int64_t a = 0; a < k; a++)
      for (int64_t b = 0; b < k; b++) {
        int64_t h = p * s - pad + a, w = q * s - pad + b;
        if (h < 0 || h >= H || w < 0 || w >= W) continue;
        float v = ldf(x, (nc * H + h) * W + w);
        acc = op == 0 ? fmaxf(acc, v) : acc + v;
      }
    stf(y, i, op == 0 ? acc : acc / (float)(k * k), 0);
  }
}

/* dx[n,c,h,w] gathers from every window that covers it: for max, only the
 * windows whose first maximum it is (PyTorch's choice on ties). */
__global__ void k_pool_bwd(int op, View dx, int accum, View dy, View x,
                           View y, int64_t H, int64_t W, int64_t P, int64_t Q,
                           int64_t k, int64_t s, int64_t pad) {
  GRID_LOOP(i, dx.n) {
    int64_t w = i % W, h = (i / W) % H, nc = i / (H * W);
    float g = 0.0f;
    /* the windows that cover (h, w): 0 <= h + pad - p s < k */
    int64_t p0 = h + pad - k + 1, q0 = w + pad - k + 1;
    p0 = p0 <= 0 ? 0 : (p0 + s - 1) / s;
    q0 = q0 <= 0 ? 0 : (q0 + s - 1) / s;
    int64_t p1 = (h + pad) / s, q1 = (w + pad) / s;
    if (p1 > P - 1) p1 = P - 1;
    if (q1 > Q - 1) q1 = Q - 1;
    for (int64_t p = p0; p <= p1; p++) {
      int64_t a = h + pad - p * s;
      if (a < 0 || a >= k) continue;
      for (int64_t q = q0; q <= q1; q++) {
        int64_t b = w + pad - q * s;
        if (b < 0 || b >= k) continue;
        int64_t o = (nc * P + p) * Q + q;
        if (op == 1) {
          g += ldf(dy, o) / (float)(k * k);
          continue;
        }
        /* is (h, w) the first maximum of window (p, q)? */
        float m = ldf(y, o);
        int64_t first = -1;
        for (int64_t a2 = 0; a2 < k && first < 0; a2++)
          for (int64_t b2 = 0; b2 < k; b2++) {
            int64_t h2 = p * s - pad + a2, w2 = q * s - pad + b2;
            if (h2 < 0 || h2 >= H || w2 < 0 || w2 >= W) continue;
            if (ldf(x, (nc * H + h2) * W + w2) == m) {
              first = h2 * W + w2;
              break;
            }
          }
        if (first == h * W + w) g += ldf(dy, o);
      }
    }
    stf(dx, i, g, accum);
  }
}

void mdlrt_pool_fwd(int op, mdlrt_ref yr, mdlrt_ref xr, int64_t kernel,
                    int64_t stride, int64_t pad) {
  View y = mdlrt_view(yr), x = mdlrt_view(xr);
  k_pool_fwd<<<grid_for(y.n), 256, 0, mdlrt_rt.stream>>>(
      op, y, x, x.dim[2], x.dim[3], y.dim[2], y.dim[3], kernel, stride, pad);
  KERNEL_CHECK();
}

/* Max pooling's backward in two passes when the workspace holds one
 * int32 per window: arg[o] = the window's first maximum (row-major in the
 * window, h * W + w), then each input element gathers dy from the windows
 * (at most ceil(k/s)^2) whose argument it is, in the same order as
 * k_pool_bwd. */
__global__ void k_pool_argmax(int32_t *arg, View y, View x, int64_t H,
                              int64_t W, int64_t P, int64_t Q, int64_t k,
                              int64_t s, int64_t pad) {
  GRID_LOOP(i, y.n) {
    int64_t q = i % Q, p = (i / Q) % P, nc = i / (P * Q);
    float m = ldf(y, i);
    int32_t first = -1;
    for (int64_t a = 0; a < k && first < 0; a++)
      for (int64_t b = 0; b < k; b++) {
        int64_t h = p * s - pad + a, w = q * s - pad + b;
        if (h < 0 || h >= H || w < 0 || w >= W) continue;
        if (ldf(x, (nc * H + h) * W + w) == m) {
          first = (int32_t)(h * W + w);
          break;
        }
      }
    arg[i] = first;
  }
}

__global__ void k_pool_bwd_arg(View dx, int accum, View dy,
                               const int32_t *arg, int64_t H, int64_t W,
                               int64_t P, int64_t Q, int64_t k, int64_t s,
                               int64_t pad) {
  GRID_LOOP(i, dx.n) {
    int64_t w = i % W, h = (i / W) % H, nc = i / (H * W);
    int64_t p0 = h + pad - k + 1, q0 = w + pad - k + 1;
    p0 = p0 <= 0 ? 0 : (p0 + s - 1) / s;
    q0 = q0 <= 0 ? 0 : (q0 + s - 1) / s;
    int64_t p1 = (h + pad) / s, q1 = (w + pad) / s;
    if (p1 > P - 1) p1 = P - 1;
    if (q1 > Q - 1) q1 = Q - 1;
    float g = 0.0f;
    int32_t self = (int32_t)(h * W + w);
    for (int64_t p = p0; p <= p1; p++)
      for (int64_t q = q0; q <= q1; q++) {
        int64_t o = (nc * P + p) * Q + q;
        if (arg[o] == self) g += ldf(dy, o);
      }
    stf(dx, i, g, accum);
  }
}

/* ---- loads and stores of one float dtype, known at compile time ---------
 * For the fast paths of pooling's backward and of the norms below: the
 * dtype's raw storage S, its widening to f32 (exact) and the rounding of
 * an f32 to it (to nearest even, as stf), and NG, the elements of 16
 * bytes. */
template <int DT> struct NT;
template <> struct NT<MDLRT_F32> {
  typedef uint32_t S;
  enum { NG = 4 };
  static __device__ __forceinline__ float ld(S u) { return __uint_as_float(u); }
  static __device__ __forceinline__ S st(float f) { return __float_as_uint(f); }
};
template <> struct NT<MDLRT_F16> {
  typedef uint16_t S;
  enum { NG = 8 };
  static __device__ __forceinline__ float ld(S u) {
    return __half2float(__ushort_as_half(u));
  }
  static __device__ __forceinline__ S st(float f) {
    return __half_as_ushort(__float2half(f));
  }
};
template <> struct NT<MDLRT_BF16> {
  typedef uint16_t S;
  enum { NG = 8 };
  static __device__ __forceinline__ float ld(S u) {
    return __uint_as_float((uint32_t)u << 16);
  }
  static __device__ __forceinline__ S st(float f) {
    return __bfloat16_as_ushort(__float2bfloat16(f));
  }
};

/* V elements of raw storage: one aligned load or store. */
template <typename S, int V> struct alignas(sizeof(S) * V) NPack {
  S e[V];
};

/* Pooling's backward on the fast path: NCHW packed, dx, dy, x (and y for
 * max) of one float dtype. A block (32 x 8 threads) takes TH rows of dx in
 * one (n, c) plane. It first stages in shared memory, for every window
 * that covers one of those rows, dy (widened) and, for max, the window's
 * argument as k_pool_argmax defines it (the first element, row-major in
 * the window, equal to y, as h W + w; -1 if none), plus each column's
 * range of covering windows; then every dx element of its rows gathers
 * from its windows in (p, q) order, adding exactly what k_pool_bwd and
 * k_pool_bwd_arg add, in their order: the three paths agree bit for bit.
 * KT = k (2 or 3) loads a max window's elements at once, then takes the
 * first equal to y; KT = 0 scans as k_pool_argmax does.
 * No workspace, no atomics; windows are staged again by the strips that
 * share them (at most ceil(k / s) rows of windows a strip). */
template <int DT, int OP, int KT>
__global__ void __launch_bounds__(256)
    k_pool_bwd_tile(void *dxp, int accum, const void *dyp, const void *xp,
                    const void *yp, int H, int W, int P, int Q, int k, int s,
                    int pad, int TH, int strips, int wrmax) {
  typedef typename NT<DT>::S S;
  extern __shared__ int pool_sm[];
  int *qlo = pool_sm, *qhi = pool_sm + W;
  float *gs = (float *)(pool_sm + 2 * W);
  int *as = (int *)(gs + wrmax * Q);
  int64_t nc = blockIdx.x / strips;
  int st = (int)(blockIdx.x - nc * strips);
  int tid = threadIdx.y * 32 + threadIdx.x;
  int h0 = st * TH, h1 = h0 + TH < H ? h0 + TH : H;
  int plo = h0 + pad - k + 1, phi = (h1 - 1 + pad) / s;
  plo = plo <= 0 ? 0 : (plo + s - 1) / s;
  if (phi > P - 1) phi = P - 1;
  const S *x = (const S *)xp + nc * H * W;
  const S *dy = (const S *)dyp + nc * P * Q, *y = (const S *)yp + nc * P * Q;
  S *dx = (S *)dxp + nc * H * W;
  for (int w = tid; w < W; w += 256) {
    int a = w + pad - k + 1, b = (w + pad) / s;
    qlo[w] = a <= 0 ? 0 : (a + s - 1) / s;
    qhi[w] = b < Q - 1 ? b : Q - 1;
  }
  for (int pr = threadIdx.y; plo + pr <= phi; pr += 8) {
    int p = plo + pr;
    for (int q = threadIdx.x; q < Q; q += 32) {
      int li = pr * Q + q, o = p * Q + q;
      gs[li] = NT<DT>::ld(dy[o]);
      if constexpr (OP == 0 && KT > 0) { /* k = KT: loads at once */
        float m = NT<DT>::ld(y[o]), xv[KT * KT];
        int h0w = p * s - pad, w0w = q * s - pad, first = -1;
#pragma unroll
        for (int a = 0; a < KT; a++)
#pragma unroll
          for (int b = 0; b < KT; b++) {
            int h = h0w + a, w = w0w + b;
            xv[a * KT + b] = h >= 0 && h < H && w >= 0 && w < W
                                 ? NT<DT>::ld(x[h * W + w])
                                 : NAN; /* equals nothing */
          }
#pragma unroll
        for (int i = KT * KT - 1; i >= 0; i--) /* the first one wins */
          if (xv[i] == m) first = (h0w + i / KT) * W + w0w + i % KT;
        as[li] = first;
      } else if (OP == 0) {
        float m = NT<DT>::ld(y[o]);
        int first = -1;
        for (int a = 0; a < k && first < 0; a++) {
          int h = p * s - pad + a;
          if (h < 0 || h >= H) continue;
          for (int b = 0; b < k; b++) {
            int w = q * s - pad + b;
            if (w < 0 || w >= W) continue;
            if (NT<DT>::ld(x[h * W + w]) == m) {
              first = h * W + w;
              break;
            }
          }
        }
        as[li] = first;
      }
    }
  }
  __syncthreads();
  for (int h = h0 + threadIdx.y; h < h1; h += 8) {
    int p0 = h + pad - k + 1, p1 = (h + pad) / s;
    p0 = p0 <= 0 ? 0 : (p0 + s - 1) / s;
    if (p1 > P - 1) p1 = P - 1;
    for (int w = threadIdx.x; w < W; w += 32) {
      int q0 = qlo[w], q1 = qhi[w], self = h * W + w;
      float g = 0.0f;
      for (int p = p0; p <= p1; p++) {
        int a = h + pad - p * s;
        if (a < 0 || a >= k) continue;
        for (int q = q0; q <= q1; q++) {
          int b = w + pad - q * s;
          if (b < 0 || b >= k) continue;
          int li = (p - plo) * Q + q;
          if (OP == 1) g += gs[li] / (float)(k * k);
          else if (as[li] == self) g += gs[li];
        }
      }
      if (accum) g += NT<DT>::ld(dx[self]);
      dx[self] = NT<DT>::st(g);
    }
  }
}

/* The tiled backward where it applies (returns 0 where not): strips of up
 * to 32 rows, fewer while the staging exceeds 32 KiB. */
static int pool_bwd_tile(int op, const View &dx, int accum, const View &dy,
                         const View &x, const View &y, int64_t k, int64_t s,
                         int64_t pad) {
  int dt = x.dt;
  if (dt != MDLRT_F32 && dt != MDLRT_F16 && dt != MDLRT_BF16) return 0;
  if (x.rank != 4 || dy.rank != 4 || dx.rank != 4) return 0;
  if (dx.dt != dt || dy.dt != dt || !dx.contig || !dy.contig || !x.contig)
    return 0;
  if (op == 0 && (!y.p || y.dt != dt || !y.contig)) return 0;
  int64_t H = x.dim[2], W = x.dim[3], P = dy.dim[2], Q = dy.dim[3];
  int64_t planes = x.dim[0] * x.dim[1];
  if (planes < 1 || H < 1 || W < 1 || P < 1 || Q < 1) return 0;
  if (H * W >= INT32_MAX || P * Q >= INT32_MAX || k < 1 || s < 1 ||
      pad < 0 || k > 1024 || s > 1024 || pad > 1024)
    return 0;
  int64_t TH = H < 32 ? H : 32, wrmax = 0, bytes = 0;
  for (;;) {
    wrmax = (TH + k - 2) / s + 2;
    if (wrmax > P) wrmax = P;
    bytes = 8 * W + wrmax * Q * (op == 0 ? 8 : 4);
    if (bytes <= (32 << 10) || TH == 1) break;
    TH = (TH + 1) / 2;
  }
  if (bytes > (48 << 10)) return 0;
  int64_t strips = (H + TH - 1) / TH;
  if (planes * strips > INT32_MAX) return 0;
  unsigned grid = (unsigned)(planes * strips);
  dim3 block(32, 8);
#define POOL_TILE(DT_, OP_, KT_)                                             \
  k_pool_bwd_tile<DT_, OP_, KT_>                                             \
      <<<grid, block, (size_t)bytes, mdlrt_rt.stream>>>(                     \
          dx.p, accum, dy.p, x.p, y.p, (int)H, (int)W, (int)P, (int)Q,       \
          (int)k, (int)s, (int)pad, (int)TH, (int)strips, (int)wrmax)
#define POOL_TILE_DT(DT_)                                                    \
  if (op == 1) POOL_TILE(DT_, 1, 0);                                         \
  else if (k == 3) POOL_TILE(DT_, 0, 3);                                     \
  else if (k == 2) POOL_TILE(DT_, 0, 2);                                     \
  else POOL_TILE(DT_, 0, 0);
  if (dt == MDLRT_F32) {
    POOL_TILE_DT(MDLRT_F32)
  } else if (dt == MDLRT_F16) {
    POOL_TILE_DT(MDLRT_F16)
  } else {
    POOL_TILE_DT(MDLRT_BF16)
  }
#undef POOL_TILE_DT
#undef POOL_TILE
  KERNEL_CHECK();
  return 1;
}

void mdlrt_pool_bwd(int op, mdlrt_ref dxr, int accum, mdlrt_ref dyr,
                    mdlrt_ref xr, mdlrt_ref yr, int64_t kernel,
                    int64_t stride, int64_t pad) {
  View dx = mdlrt_view(dxr), dy = mdlrt_view(dyr);
  View x = mdlrt_view(xr), y = mdlrt_view(yr);
  if (pool_bwd_tile(op, dx, accum, dy, x, y, kernel, stride, pad)) return;
  if (op == 0 && mdlrt_rt.ws && mdlrt_rt.ws_bytes >= 4 * y.n &&
      x.dim[2] * x.dim[3] < INT32_MAX) {
    int32_t *arg = (int32_t *)mdlrt_rt.ws;
    k_pool_argmax<<<grid_for(y.n), 256, 0, mdlrt_rt.stream>>>(
        arg, y, x, x.dim[2], x.dim[3], y.dim[2], y.dim[3], kernel, stride,
        pad);
    KERNEL_CHECK();
    k_pool_bwd_arg<<<grid_for(dx.n), 256, 0, mdlrt_rt.stream>>>(
        dx, accum, dy, arg, dx.dim[2], dx.dim[3], dy.dim[2], dy.dim[3],
        kernel, stride, pad);
    KERNEL_CHECK();
    return;
  }
  k_pool_bwd<<<grid_for(dx.n), 256, 0, mdlrt_rt.stream>>>(
      op, dx, accum, dy, x, y, dx.dim[2], dx.dim[3], dy.dim[2], dy.dim[3],
      kernel, stride, pad);
  KERNEL_CHECK();
}

/* y[n,c] = mean over H*W: one block per (n, c). */
__global__ void k_gap_fwd(View y, View x, int64_t hw) {
  int64_t r = blockIdx.x;
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < hw; j += blockDim.x) s += ldf(x, r * hw + j);
  s = block_sum(s);
  if (threadIdx.x == 0) stf(y, r, s / (float)hw, 0);
}

__global__ void k_gap_bwd(View dx, int accum, View dy, int64_t hw) {
  GRID_LOOP(i, dx.n) stf(dx, i, ldf(dy, i / hw) / (float)hw, accum);
}

void mdlrt_global_avgpool_fwd(mdlrt_ref yr, mdlrt_ref xr) {
  View y = mdlrt_view(yr), x = mdlrt_view(xr);
  k_gap_fwd<<<(unsigned)y.n, 256, 0, mdlrt_rt.stream>>>(y, x, x.n / y.n);
  KERNEL_CHECK();
}

void mdlrt_global_avgpool_bwd(mdlrt_ref dxr, int accum, mdlrt_ref dyr) {
  View dx = mdlrt_view(dxr), dy = mdlrt_view(dyr);
  k_gap_bwd<<<grid_for(dx.n), 256, 0, mdlrt_rt.stream>>>(dx, accum, dy,
                                                         dx.n / dy.n);
  KERNEL_CHECK();
}

/* ---- batchnorm and groupnorm on packed NCHW: the fast paths -------------
 * x[N, C, L] packed (L = H W ...), x and y (forward) or dy, x and dx
 * (backward) of one float dtype, is R = N C rows of L elements: row r =
 * n C + c is channel c of sample n. Its statistic set q is c (batchnorm,
 * G = 0) or n G + c / cpg = r / cpg (groupnorm, cpg = C / G). Every pass
 * walks units, one warp a unit (no block barriers): segment s of row r,
 * elements [s seg, min(L, (s + 1) seg)). The lanes take groups of NG
 * consecutive elements (16 bytes: 4 f32, 8 f16 or bf16), group j of a
 * unit to lane j % 32 in increasing j, each group loaded 16 bytes, 8 or
 * one element at a time as L and the pointers' alignment allow. The
 * grouping, and with it the order of every sum, depends only on the
 * shapes and the workspace's size, never on alignment or the GPU.
 *   forward: each lane keeps (count, mean, M2) of its groups (a group's
 *     mean and M2 two-pass in registers, merged by Chan's formula), the
 *     lanes merge in a fixed tree (f32) and the unit's (mean, M2) goes to
 *     the workspace. k_ng_stats_fin (a warp a set) merges the set's units
 *     in double, lane-strided in (n, s) order (batchnorm) or (c, s) order
 *     (groupnorm) then a fixed tree, and writes mean, rstd = 1/sqrt(var +
 *     eps) (double, rounded once) and batchnorm's running statistics;
 *     k_ng_apply writes y = ((x - mean) rstd) w + b.
 *   backward: each unit sums a = dy and b = dy (x - mean) (f32, a lane in
 *     order, then a fixed tree); k_ng_bwd_fin forms in double db[c] =
 *     sum a, dw[c] = sum b rstd and per set the means of g = dy w and of
 *     g xhat; k_ng_dx writes dx = k1 (dy k2 - mean(g) - xhat mean(g
 *     xhat)), (k1, k2) = (w rstd, 1) for batchnorm, (rstd, w) for
 *     groupnorm: the formulas of the generic kernels.
 * The elementwise passes (k_ng_apply, k_ng_dx) walk the units last first,
 * so that they begin with what L2 still holds from the pass before.
 * The workspace holds the units' float2 partials (and backward the sets'
 * coefficients). Segments are 16 KiB of a row, or whole rows when the
 * workspace is short; where even that does not fit, where L < 16 or the
 * layout or dtypes do not qualify, the generic kernels run. Groupnorm
 * sets small enough for shared memory take k_gnf_* instead (below). */
struct NGeo {
  int64_t R, L, S, seg; /* rows, their length, segments a row, length */
  int64_t N, C, G, cpg; /* samples, channels, groups (0: batchnorm), C/G */
};

__device__ __forceinline__ int64_t ng_set(const NGeo &g, int64_t r) {
  return g.G ? r / g.cpg : r % g.C;
}

__device__ __forceinline__ int64_t ng_len(const NGeo &g, int64_t s) {
  int64_t l = g.L - s * g.seg;
  return l < g.seg ? l : g.seg;
}

#define NG_WARPS_BEGIN(u, nu)                                                \
  for (int64_t u = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;    \
       u < (nu); u += ((int64_t)gridDim.x * blockDim.x) >> 5)

/* The n <= NG elements of a group at p, widened; a full group V at a time
 * (p then V-aligned), a partial one element by element. */
template <int DT, int V>
__device__ __forceinline__ void ng_load(const typename NT<DT>::S *p, int n,
                                        float *f) {
  typedef typename NT<DT>::S S;
  constexpr int NG = NT<DT>::NG;
  if (n == NG) {
#pragma unroll
    for (int t = 0; t < NG; t += V) {
      NPack<S, V> v = *(const NPack<S, V> *)(p + t);
#pragma unroll
      for (int e = 0; e < V; e++) f[t + e] = NT<DT>::ld(v.e[e]);
    }
  } else {
#pragma unroll
    for (int e = 0; e < NG; e++) f[e] = e < n ? NT<DT>::ld(p[e]) : 0.0f;
  }
}

/* V elements at p (V-aligned) from f, added to what is there if accum. */
template <int DT, int V>
__device__ __forceinline__ void ng_store(typename NT<DT>::S *p, float *f,
                                         int accum) {
  typedef typename NT<DT>::S S;
  NPack<S, V> v;
  if (accum) {
    v = *(const NPack<S, V> *)p;
#pragma unroll
    for (int e = 0; e < V; e++) f[e] += NT<DT>::ld(v.e[e]);
  }
#pragma unroll
  for (int e = 0; e < V; e++) v.e[e] = NT<DT>::st(f[e]);
  *(NPack<S, V> *)p = v;
}

/* (na, ma, qa) = count, mean and M2 of a set merged with (nb, mb, qb). */
__device__ __forceinline__ void wf_merge(float &na, float &ma, float &qa,
                                         float nb, float mb, float qb) {
  if (nb > 0.0f) {
    float n = na + nb, d = mb - ma, fr = nb / n;
    ma = fmaf(d, fr, ma);
    qa = qa + qb + d * d * (na * fr);
    na = n;
  }
}

__device__ __forceinline__ void wf_merge_d(double &na, double &ma,
                                           double &qa, double nb, double mb,
                                           double qb) {
  if (nb > 0.0) {
    double n = na + nb, d = mb - ma, fr = nb / n;
    ma = fma(d, fr, ma);
    qa = qa + qb + d * d * (na * fr);
    na = n;
  }
}

/* A group of n elements into a lane's (count, mean, M2). */
template <int NG>
__device__ __forceinline__ void wf_group(const float *f, int n, float &cnt,
                                         float &mean, float &m2) {
  float s = 0.0f;
#pragma unroll
  for (int e = 0; e < NG; e++) s += f[e]; /* the missing ones are 0 */
  float mb = n == NG ? s * (1.0f / NG) : s / (float)n, q = 0.0f;
#pragma unroll
  for (int e = 0; e < NG; e++)
    if (e < n) {
      float d = f[e] - mb;
      q = fmaf(d, d, q);
    }
  wf_merge(cnt, mean, m2, (float)n, mb, q);
}

enum { NG_U = 4 }; /* groups a lane loads before it uses them */

/* Forward, first pass: each unit's (mean, M2). */
template <int DT, int V>
__global__ void __launch_bounds__(256)
    k_ng_stats(const void *xp, NGeo g, float2 *part) {
  typedef typename NT<DT>::S S;
  constexpr int NG = NT<DT>::NG;
  int lane = threadIdx.x & 31;
  NG_WARPS_BEGIN(u, g.R * g.S) {
    int64_t r = u / g.S, s = u - r * g.S;
    const S *p = (const S *)xp + r * g.L + s * g.seg;
    int len = (int)ng_len(g, s), nf = len / NG, ngr = (len + NG - 1) / NG;
    float cnt = 0.0f, mean = 0.0f, m2 = 0.0f;
    int j = lane;
    for (; j + 32 * (NG_U - 1) < nf; j += 32 * NG_U) {
      float f[NG_U][NG];
#pragma unroll
      for (int t = 0; t < NG_U; t++)
        ng_load<DT, V>(p + (j + 32 * t) * NG, NG, f[t]);
#pragma unroll
      for (int t = 0; t < NG_U; t++) wf_group<NG>(f[t], NG, cnt, mean, m2);
    }
    for (; j < ngr; j += 32) {
      float f[NG];
      int n = len - j * NG < NG ? len - j * NG : NG;
      ng_load<DT, V>(p + j * NG, n, f);
      wf_group<NG>(f, n, cnt, mean, m2);
    }
    for (int o = 16; o > 0; o >>= 1) {
      float nb = __shfl_down_sync(0xffffffffu, cnt, o);
      float mb = __shfl_down_sync(0xffffffffu, mean, o);
      float qb = __shfl_down_sync(0xffffffffu, m2, o);
      wf_merge(cnt, mean, m2, nb, mb, qb);
    }
    if (lane == 0) part[u] = make_float2(mean, m2);
  }
}

/* Forward, second pass: a warp a statistic set. */
__global__ void __launch_bounds__(256)
    k_ng_stats_fin(const float2 *part, NGeo g, View mean, View rstd, View rm,
                   View rv, double eps) {
  int lane = threadIdx.x & 31;
  int64_t I = g.G ? 1 : g.N, K = g.G ? g.cpg * g.S : g.S;
  NG_WARPS_BEGIN(q, g.G ? g.N * g.G : g.C) {
    int64_t base = g.G ? q * g.cpg * g.S : q * g.S, step = g.C * g.S;
    double n = 0.0, mu = 0.0, m2 = 0.0;
    for (int64_t t = lane; t < I * K; t += 32) {
      int64_t i = t / K, kk = t - i * K;
      float2 v = part[base + i * step + kk];
      wf_merge_d(n, mu, m2, (double)ng_len(g, kk % g.S), v.x, v.y);
    }
    for (int o = 16; o > 0; o >>= 1) {
      double nb = __shfl_down_sync(0xffffffffu, n, o);
      double mb = __shfl_down_sync(0xffffffffu, mu, o);
      double qb = __shfl_down_sync(0xffffffffu, m2, o);
      wf_merge_d(n, mu, m2, nb, mb, qb);
    }
    if (lane == 0) {
      double var = m2 / n;
      float mf = (float)mu;
      stf(mean, q, mf, 0);
      stf(rstd, q, (float)(1.0 / sqrt(var + eps)), 0);
      double unb = n > 1.0 ? m2 / (n - 1.0) : var;
      if (rm.p) stf(rm, q, 0.9f * ldf(rm, q) + 0.1f * mf, 0);
      if (rv.p) stf(rv, q, 0.9f * ldf(rv, q) + 0.1f * (float)unb, 0);
    }
  }
}

/* y = ((x - mean) rstd) w + b; train = 0 (batchnorm inference): the
 * running statistics, rstd = rsqrtf(running_var + eps) as k_bn_apply. */
template <int DT, int V>
__global__ void __launch_bounds__(256)
    k_ng_apply(void *yp, const void *xp, NGeo g, View mean, View rstd, View w,
               View b, View rm, View rv, float eps, int train) {
  typedef typename NT<DT>::S S;
  int lane = threadIdx.x & 31;
  NG_WARPS_BEGIN(iu, g.R * g.S) {
    int64_t u = g.R * g.S - 1 - iu; /* last first: what L2 still holds */
    int64_t r = u / g.S, s = u - r * g.S, c = r % g.C, q = ng_set(g, r);
    int64_t at = r * g.L + s * g.seg;
    const S *x = (const S *)xp + at;
    S *y = (S *)yp + at;
    float mu, rs;
    if (train) {
      mu = ldf(mean, q), rs = ldf(rstd, q);
    } else {
      mu = ldf(rm, c), rs = rsqrtf(ldf(rv, c) + eps);
    }
    float wc = w.p ? ldf(w, c) : 1.0f, bc = b.p ? ldf(b, c) : 0.0f;
    int nv = (int)ng_len(g, s) / V, j = lane;
    for (; j + 32 * (NG_U - 1) < nv; j += 32 * NG_U) {
      NPack<S, V> v[NG_U];
#pragma unroll
      for (int t = 0; t < NG_U; t++)
        v[t] = *(const NPack<S, V> *)(x + (j + 32 * t) * V);
#pragma unroll
      for (int t = 0; t < NG_U; t++) {
        float f[V];
#pragma unroll
        for (int e = 0; e < V; e++)
          f[e] = (NT<DT>::ld(v[t].e[e]) - mu) * rs * wc + bc;
        ng_store<DT, V>(y + (j + 32 * t) * V, f, 0);
      }
    }
    for (; j < nv; j += 32) {
      NPack<S, V> v = *(const NPack<S, V> *)(x + j * V);
      float f[V];
#pragma unroll
      for (int e = 0; e < V; e++)
        f[e] = (NT<DT>::ld(v.e[e]) - mu) * rs * wc + bc;
      ng_store<DT, V>(y + j * V, f, 0);
    }
  }
}

/* Backward, first pass: each unit's sum of dy and of dy (x - mean), in
 * double within the unit, rounded to f32 once. */
template <int DT, int V>
__global__ void __launch_bounds__(256)
    k_ng_sums(const void *dyp, const void *xp, NGeo g, View mean,
              float2 *part) {
  typedef typename NT<DT>::S S;
  constexpr int NG = NT<DT>::NG;
  int lane = threadIdx.x & 31;
  NG_WARPS_BEGIN(u, g.R * g.S) {
    int64_t r = u / g.S, s = u - r * g.S, at = r * g.L + s * g.seg;
    const S *x = (const S *)xp + at, *dy = (const S *)dyp + at;
    float mu = ldf(mean, ng_set(g, r));
    int len = (int)ng_len(g, s), nf = len / NG, ngr = (len + NG - 1) / NG;
    double a = 0.0, b = 0.0; /* long rows: f32 would lose ~1e-4 */
    int j = lane;
    for (; j + 32 * (NG_U - 1) < nf; j += 32 * NG_U) {
      float fd[NG_U][NG], fx[NG_U][NG];
#pragma unroll
      for (int t = 0; t < NG_U; t++) {
        ng_load<DT, V>(dy + (j + 32 * t) * NG, NG, fd[t]);
        ng_load<DT, V>(x + (j + 32 * t) * NG, NG, fx[t]);
      }
#pragma unroll
      for (int t = 0; t < NG_U; t++)
#pragma unroll
        for (int e = 0; e < NG; e++) {
          a += fd[t][e];
          b = fma((double)fd[t][e], (double)(fx[t][e] - mu), b);
        }
    }
    for (; j < ngr; j += 32) {
      float fd[NG], fx[NG];
      int n = len - j * NG < NG ? len - j * NG : NG;
      ng_load<DT, V>(dy + j * NG, n, fd);
      ng_load<DT, V>(x + j * NG, n, fx);
#pragma unroll
      for (int e = 0; e < NG; e++)
        if (e < n) {
          a += fd[e];
          b = fma((double)fd[e], (double)(fx[e] - mu), b);
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
      a += __shfl_down_sync(0xffffffffu, a, o);
      b += __shfl_down_sync(0xffffffffu, b, o);
    }
    if (lane == 0) part[u] = make_float2((float)a, (float)b);
  }
}

/* Backward, second pass, a warp a job. Batchnorm: job c gives db[c], dw[c]
 * and (if dx) co[c] = (mean of dy, mean of dy xhat). Groupnorm: jobs
 * [0, C) give db, dw (if asked), jobs C + q (if dx) co[q] = (mean of g,
 * mean of g xhat) of set q, g = dy w. */
__global__ void __launch_bounds__(256)
    k_ng_bwd_fin(const float2 *part, NGeo g, View rstd, View w, View dw,
                 int aw, View db, int ab, float2 *co) {
  int lane = threadIdx.x & 31;
  int64_t nc = (dw.p || db.p || !g.G) ? g.C : 0;
  int64_t jobs = g.G ? nc + (co ? g.N * g.G : 0) : g.C;
  NG_WARPS_BEGIN(jb, jobs) {
    double A = 0.0, B = 0.0, M;
    int64_t q;
    if (jb < nc) { /* channel c = jb: units (n, s) in order */
      int64_t c = jb;
      for (int64_t t = lane; t < g.N * g.S; t += 32) {
        int64_t n = t / g.S, s = t - n * g.S;
        float2 v = part[(n * g.C + c) * g.S + s];
        A += v.x;
        B += g.G ? (double)v.y * ldf(rstd, n * g.G + c / g.cpg) : v.y;
      }
      q = c, M = (double)(g.N * g.L);
    } else { /* groupnorm set q: units (c, s) of its channels in order */
      q = jb - nc;
      int64_t c0 = (q % g.G) * g.cpg;
      for (int64_t t = lane; t < g.cpg * g.S; t += 32) {
        float2 v = part[q * g.cpg * g.S + t];
        double wc = w.p ? ldf(w, c0 + t / g.S) : 1.0f;
        A += wc * v.x;
        B += wc * v.y;
      }
      M = (double)(g.cpg * g.L);
    }
    for (int o = 16; o > 0; o >>= 1) {
      A += __shfl_down_sync(0xffffffffu, A, o);
      B += __shfl_down_sync(0xffffffffu, B, o);
    }
    if (lane) continue;
    if (jb < nc) {
      double bw = g.G ? B : B * ldf(rstd, q); /* sum dy xhat */
      if (dw.p) stf(dw, q, (float)bw, aw);
      if (db.p) stf(db, q, (float)A, ab);
      if (!g.G && co) co[q] = make_float2((float)(A / M), (float)(bw / M));
    } else {
      co[q] = make_float2((float)(A / M), (float)(B * ldf(rstd, q) / M));
    }
  }
}

/* Backward, third pass: dx (+)= k1 (dy k2 - co.x - xhat co.y). */
template <int DT, int V>
__global__ void __launch_bounds__(256)
    k_ng_dx(void *dxp, int ax, const void *dyp, const void *xp, NGeo g,
            View mean, View rstd, View w, const float2 *co) {
  typedef typename NT<DT>::S S;
  int lane = threadIdx.x & 31;
  NG_WARPS_BEGIN(iu, g.R * g.S) {
    int64_t u = g.R * g.S - 1 - iu; /* last first: what L2 still holds */
    int64_t r = u / g.S, s = u - r * g.S, c = r % g.C, q = ng_set(g, r);
    int64_t at = r * g.L + s * g.seg;
    const S *x = (const S *)xp + at, *dy = (const S *)dyp + at;
    S *dx = (S *)dxp + at;
    float mu = ldf(mean, q), rs = ldf(rstd, q);
    float wc = w.p ? ldf(w, c) : 1.0f;
    float k1 = g.G ? rs : wc * rs, k2 = g.G ? wc : 1.0f;
    float2 cq = co[q];
    int nv = (int)ng_len(g, s) / V, j = lane;
    for (; j + 32 * (NG_U - 1) < nv; j += 32 * NG_U) {
      NPack<S, V> vd[NG_U], vx[NG_U];
#pragma unroll
      for (int t = 0; t < NG_U; t++) {
        vd[t] = *(const NPack<S, V> *)(dy + (j + 32 * t) * V);
        vx[t] = *(const NPack<S, V> *)(x + (j + 32 * t) * V);
      }
#pragma unroll
      for (int t = 0; t < NG_U; t++) {
        float f[V];
#pragma unroll
        for (int e = 0; e < V; e++) {
          float xh = (NT<DT>::ld(vx[t].e[e]) - mu) * rs;
          f[e] = k1 * (NT<DT>::ld(vd[t].e[e]) * k2 - cq.x - xh * cq.y);
        }
        ng_store<DT, V>(dx + (j + 32 * t) * V, f, ax);
      }
    }
    for (; j < nv; j += 32) {
      NPack<S, V> vd = *(const NPack<S, V> *)(dy + j * V);
      NPack<S, V> vx = *(const NPack<S, V> *)(x + j * V);
      float f[V];
#pragma unroll
      for (int e = 0; e < V; e++) {
        float xh = (NT<DT>::ld(vx.e[e]) - mu) * rs;
        f[e] = k1 * (NT<DT>::ld(vd.e[e]) * k2 - cq.x - xh * cq.y);
      }
      ng_store<DT, V>(dx + j * V, f, ax);
    }
  }
}

/* Groupnorm with each statistic set in shared memory: where a set (cpg L
 * elements, contiguous) holds between 1024 elements and NGF_BYTES, one
 * block of NGF_T threads a set copies it (x) into shared memory, so x is
 * read from memory once. Sums run over the set's groups of NG elements,
 * group j to thread j % NGF_T in increasing j, each thread in f32, the
 * threads then in double in a fixed tree: again independent of the loads'
 * width.
 *   forward: mean from the sum; var = sum (x - m)^2 / M - (mean - m)^2
 *     with m the f32 mean (exact shift); y from the stored f32 mean and
 *     rstd.
 *   backward: per channel c of the set, a = sum dy and b = sum dy (x -
 *     mean) (dy read here, x from shared memory), written to the workspace
 *     as the (n, c) partials of one segment a row (k_ng_bwd_fin then sums
 *     dw, db over n); the set's means of g and g xhat in the block; dx from
 *     dy (read again: from L2, just read by this block) and x. */
enum { NGF_BYTES = 32 << 10, NGF_T = 256 };

/* The block's sum of a and of b (each thread's), in double, in a fixed
 * order; every thread gets both. */
__device__ __forceinline__ void ngf_sum2(float a, float b, double &ra,
                                         double &rb) {
  __shared__ double part[2][NGF_T / 32];
  double da = a, db = b;
  for (int o = 16; o > 0; o >>= 1) {
    da += __shfl_down_sync(0xffffffffu, da, o);
    db += __shfl_down_sync(0xffffffffu, db, o);
  }
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads(); /* part[] may still be read by a previous call */
  if (lane == 0) part[0][warp] = da, part[1][warp] = db;
  __syncthreads();
  ra = 0.0, rb = 0.0;
  for (int k = 0; k < NGF_T / 32; k++) ra += part[0][k], rb += part[1][k];
}

/* Copies the set's n elements at src (V-aligned, n % V == 0) to xs. */
template <int DT, int V>
__device__ __forceinline__ void ngf_stage(typename NT<DT>::S *xs,
                                          const typename NT<DT>::S *src,
                                          int64_t n) {
  typedef typename NT<DT>::S S;
  int nv = (int)(n / V), j = threadIdx.x;
  for (; j + NGF_T * (NG_U - 1) < nv; j += NGF_T * NG_U) {
    NPack<S, V> v[NG_U];
#pragma unroll
    for (int t = 0; t < NG_U; t++)
      v[t] = *(const NPack<S, V> *)(src + (j + NGF_T * t) * V);
#pragma unroll
    for (int t = 0; t < NG_U; t++)
      *(NPack<S, V> *)(xs + (j + NGF_T * t) * V) = v[t];
  }
  for (; j < nv; j += NGF_T)
    *(NPack<S, V> *)(xs + j * V) = *(const NPack<S, V> *)(src + j * V);
}

template <int DT, int V>
__global__ void __launch_bounds__(NGF_T)
    k_gnf_fwd(void *yp, const void *xp, NGeo g, View mean, View rstd, View w,
              View b, double eps) {
  typedef typename NT<DT>::S S;
  constexpr int NG = NT<DT>::NG;
  extern __shared__ uint4 ngf_sm[];
  S *xs = (S *)ngf_sm;
  int64_t q = blockIdx.x, L = g.L, M = g.cpg * L;
  ngf_stage<DT, V>(xs, (const S *)xp + q * M, M);
  __syncthreads();
  int ngr = (int)((M + NG - 1) / NG);
  float s = 0.0f;
  for (int j = threadIdx.x; j < ngr; j += NGF_T)
    for (int e = j * NG; e < j * NG + NG && e < M; e++) s += NT<DT>::ld(xs[e]);
  double sum, unused, sq;
  ngf_sum2(s, 0.0f, sum, unused);
  double mu = sum / (double)M;
  float mf = (float)mu, v = 0.0f;
  for (int j = threadIdx.x; j < ngr; j += NGF_T)
    for (int e = j * NG; e < j * NG + NG && e < M; e++) {
      float d = NT<DT>::ld(xs[e]) - mf;
      v = fmaf(d, d, v);
    }
  ngf_sum2(v, 0.0f, sq, unused);
  double dm = mu - (double)mf, var = sq / (double)M - dm * dm;
  float rs = (float)(1.0 / sqrt((var > 0.0 ? var : 0.0) + eps));
  if (threadIdx.x == 0) {
    stf(mean, q, mf, 0);
    stf(rstd, q, rs, 0);
  }
  S *y = (S *)yp + q * M;
  for (int64_t ci = 0; ci < g.cpg; ci++) {
    int64_t c = (q % g.G) * g.cpg + ci;
    float wc = w.p ? ldf(w, c) : 1.0f, bc = b.p ? ldf(b, c) : 0.0f;
    const S *xr = xs + ci * L;
    for (int j = threadIdx.x; j < (int)(L / V); j += NGF_T) {
      NPack<S, V> xv = *(const NPack<S, V> *)(xr + j * V);
      float f[V];
#pragma unroll
      for (int e = 0; e < V; e++)
        f[e] = (NT<DT>::ld(xv.e[e]) - mf) * rs * wc + bc;
      ng_store<DT, V>(y + ci * L + j * V, f, 0);
    }
  }
}

template <int DT, int V>
__global__ void __launch_bounds__(NGF_T)
    k_gnf_bwd(void *dxp, int ax, const void *dyp, const void *xp, NGeo g,
              View mean, View rstd, View w, float2 *part) {
  typedef typename NT<DT>::S S;
  constexpr int NG = NT<DT>::NG;
  extern __shared__ uint4 ngf_sm[];
  S *xs = (S *)ngf_sm;
  int64_t q = blockIdx.x, L = g.L, M = g.cpg * L;
  int64_t n = q / g.G, c0 = (q % g.G) * g.cpg;
  const S *dy = (const S *)dyp + q * M;
  ngf_stage<DT, V>(xs, (const S *)xp + q * M, M);
  __syncthreads();
  float mu = ldf(mean, q), rs = ldf(rstd, q);
  int ngr = (int)((L + NG - 1) / NG);
  double sg = 0.0, sgx = 0.0;
  for (int64_t ci = 0; ci < g.cpg; ci++) {
    const S *xr = xs + ci * L, *dr = dy + ci * L;
    float a = 0.0f, bb = 0.0f;
    for (int j = threadIdx.x; j < ngr; j += NGF_T) {
      float fd[NG];
      int ne = L - j * NG < NG ? (int)(L - j * NG) : NG;
      ng_load<DT, V>(dr + j * NG, ne, fd);
#pragma unroll
      for (int e = 0; e < NG; e++)
        if (e < ne) {
          a += fd[e];
          bb = fmaf(fd[e], NT<DT>::ld(xr[j * NG + e]) - mu, bb);
        }
    }
    double A, B;
    ngf_sum2(a, bb, A, B);
    if (part && threadIdx.x == 0)
      part[n * g.C + c0 + ci] = make_float2((float)A, (float)B);
    double wc = w.p ? ldf(w, c0 + ci) : 1.0f;
    sg += wc * A, sgx += wc * B;
  }
  if (!dxp) return;
  float cx = (float)(sg / (double)M), cy = (float)(sgx * rs / (double)M);
  S *dx = (S *)dxp + q * M;
  for (int64_t ci = 0; ci < g.cpg; ci++) {
    float wc = w.p ? ldf(w, c0 + ci) : 1.0f;
    const S *xr = xs + ci * L, *dr = dy + ci * L;
    for (int j = threadIdx.x; j < (int)(L / V); j += NGF_T) {
      NPack<S, V> xv = *(const NPack<S, V> *)(xr + j * V);
      NPack<S, V> dv = *(const NPack<S, V> *)(dr + j * V);
      float f[V];
#pragma unroll
      for (int e = 0; e < V; e++) {
        float xh = (NT<DT>::ld(xv.e[e]) - mu) * rs;
        f[e] = rs * (NT<DT>::ld(dv.e[e]) * wc - cx - xh * cy);
      }
      ng_store<DT, V>(dx + ci * L + j * V, f, ax);
    }
  }
}

/* Whether groupnorm's sets go through the shared-memory kernels: a
 * function of the shapes alone. */
static int gnf_ok(const NGeo &g, int es) {
  int64_t M = g.cpg * g.L;
  return g.G && M >= 1024 && M * es <= NGF_BYTES &&
         g.N * g.G <= INT32_MAX;
}

/* The fast path's geometry for x[N, C, ...] in G groups (0: batchnorm):
 * segments of 16 KiB. 0 where the fast path does not apply. */
static int ng_plan(NGeo *g, const View &x, int64_t G) {
  if (x.rank < 2 || !x.contig) return 0;
  if (x.dt != MDLRT_F32 && x.dt != MDLRT_F16 && x.dt != MDLRT_BF16) return 0;
  int64_t N = x.dim[0], C = x.dim[1];
  if (N < 1 || C < 1 || (G && (G < 1 || C % G))) return 0;
  int64_t L = x.n / (N * C), es = mdlrt_dt_size(x.dt), ng = 16 / es;
  if (L < 16) return 0;
  int64_t seg = (16 << 10) / es, S = (L + seg - 1) / seg;
  if (S > 1) {
    seg = ((L + S - 1) / S + ng - 1) / ng * ng;
    S = (L + seg - 1) / seg;
  } else {
    seg = L;
  }
  g->R = N * C, g->L = L, g->S = S, g->seg = seg;
  g->N = N, g->C = C, g->G = G, g->cpg = G ? C / G : 1;
  return seg < (1 << 24); /* counts exact in f32 */
}

static int64_t ng_part_bytes(const NGeo &g) {
  return (g.R * g.S * 8 + 255) & ~(int64_t)255;
}

/* Fits the partials (and `coef` float2 after them) into the workspace:
 * whole rows (one segment each) if segments do not fit; 0 if neither. */
static int ng_fit(NGeo *g, int64_t coef) {
  int64_t room = mdlrt_rt.ws && ((uintptr_t)mdlrt_rt.ws & 15) == 0
                     ? mdlrt_rt.ws_bytes : 0;
  if (ng_part_bytes(*g) + coef * 8 <= room) return 1;
  g->S = 1, g->seg = g->L;
  return ng_part_bytes(*g) + coef * 8 <= room && g->seg < (1 << 24);
}

/* The loads' width in elements (16 bytes, 8, or 1) for rows of L elements
 * at these pointers (NULL ones ignored). */
static int ng_vec(int dt, int64_t L, const void *a, const void *b,
                  const void *c) {
  int es = mdlrt_dt_size(dt);
  uintptr_t m = (uintptr_t)a | (uintptr_t)b | (uintptr_t)c;
  for (int bytes = 16; bytes >= 8; bytes /= 2)
    if (L % (bytes / es) == 0 && (m & (uintptr_t)(bytes - 1)) == 0)
      return bytes / es;
  return 1;
}

static unsigned ng_grid(int64_t warps) {
  int64_t b = (warps + 7) / 8;
  if (b > 65535 * 8) b = 65535 * 8;
  return (unsigned)(b < 1 ? 1 : b);
}

/* Runs STMT with DT and V compile-time constants for dtype dt and width v. */
#define NG_CASE(DT_, V_, ...)                                                \
  case DT_ * 16 + V_: {                                                      \
    constexpr int DT = DT_, V = V_;                                          \
    __VA_ARGS__;                                                             \
  } break;
#define NG_DISPATCH(dt, v, ...)                                              \
  switch ((dt) * 16 + (v)) {                                                 \
    NG_CASE(MDLRT_F32, 4, __VA_ARGS__)                                       \
    NG_CASE(MDLRT_F32, 2, __VA_ARGS__)                                       \
    NG_CASE(MDLRT_F32, 1, __VA_ARGS__)                                       \
    NG_CASE(MDLRT_F16, 8, __VA_ARGS__)                                       \
    NG_CASE(MDLRT_F16, 4, __VA_ARGS__)                                       \
    NG_CASE(MDLRT_F16, 1, __VA_ARGS__)                                       \
    NG_CASE(MDLRT_BF16, 8, __VA_ARGS__)                                      \
    NG_CASE(MDLRT_BF16, 4, __VA_ARGS__)                                      \
    NG_CASE(MDLRT_BF16, 1, __VA_ARGS__)                                      \
  default: break;                                                            \
  }

/* Batchnorm (G = 0, running statistics rm, rv; train = 0: inference) or
 * groupnorm forward on the fast path; 0 if it does not apply. */
static int ng_fwd(const View &y, const View &mean, const View &rstd,
                  const View &x, const View &w, const View &b, const View &rm,
                  const View &rv, int64_t G, double eps, int train) {
  NGeo g;
  if (!y.contig || y.dt != x.dt || y.n != x.n) return 0;
  if (!ng_plan(&g, x, G)) return 0;
  int v = ng_vec(x.dt, g.L, x.p, y.p, NULL);
  cudaStream_t st = mdlrt_rt.stream;
  if (gnf_ok(g, mdlrt_dt_size(x.dt))) {
    size_t sm = (size_t)(g.cpg * g.L * mdlrt_dt_size(x.dt) + 15) & ~15;
    NG_DISPATCH(x.dt, v,
                k_gnf_fwd<DT, V><<<(unsigned)(g.N * G), NGF_T, sm, st>>>(
                    y.p, x.p, g, mean, rstd, w, b, eps))
    KERNEL_CHECK();
    return 1;
  }
  if (train && !ng_fit(&g, 0)) return 0;
  unsigned grid = ng_grid(g.R * g.S);
  if (train) {
    float2 *part = (float2 *)mdlrt_rt.ws;
    NG_DISPATCH(x.dt, v, k_ng_stats<DT, V><<<grid, 256, 0, st>>>(x.p, g, part))
    KERNEL_CHECK();
    k_ng_stats_fin<<<ng_grid(G ? g.N * G : g.C), 256, 0, st>>>(
        part, g, mean, rstd, rm, rv, eps);
    KERNEL_CHECK();
  }
  NG_DISPATCH(x.dt, v,
              k_ng_apply<DT, V><<<grid, 256, 0, st>>>(
                  y.p, x.p, g, mean, rstd, w, b, rm, rv, (float)eps, train))
  KERNEL_CHECK();
  return 1;
}

/* Batchnorm (G = 0) or groupnorm backward on the fast path; 0 if it does
 * not apply. */
static int ng_bwd(const View &dx, int ax, const View &dw, int aw,
                  const View &db, int ab, const View &dy, const View &x,
                  const View &mean, const View &rstd, const View &w,
                  int64_t G) {
  NGeo g;
  if (!dy.contig || dy.dt != x.dt || dy.n != x.n) return 0;
  if (dx.p && (!dx.contig || dx.dt != x.dt || dx.n != x.n)) return 0;
  if (!ng_plan(&g, x, G)) return 0;
  if (!dx.p && !dw.p && !db.p) return 1;
  int v = ng_vec(x.dt, g.L, dy.p, x.p, dx.p);
  cudaStream_t st = mdlrt_rt.stream;
  float2 *part = (float2 *)mdlrt_rt.ws;
  if (gnf_ok(g, mdlrt_dt_size(x.dt))) {
    /* the partials of dw, db: one segment a row */
    g.S = 1, g.seg = g.L;
    int wb = dw.p || db.p;
    if (wb && !ng_fit(&g, 0)) return 0;
    size_t sm = (size_t)(g.cpg * g.L * mdlrt_dt_size(x.dt) + 15) & ~15;
    NG_DISPATCH(x.dt, v,
                k_gnf_bwd<DT, V><<<(unsigned)(g.N * G), NGF_T, sm, st>>>(
                    dx.p, ax, dy.p, x.p, g, mean, rstd, w,
                    wb ? part : NULL))
    KERNEL_CHECK();
    if (wb) {
      k_ng_bwd_fin<<<ng_grid(g.C), 256, 0, st>>>(part, g, rstd, w, dw, aw,
                                                 db, ab, NULL);
      KERNEL_CHECK();
    }
    return 1;
  }
  int64_t sets = G ? g.N * G : g.C;
  if (!ng_fit(&g, dx.p ? sets : 0)) return 0;
  unsigned grid = ng_grid(g.R * g.S);
  float2 *co = dx.p ? (float2 *)((char *)mdlrt_rt.ws + ng_part_bytes(g))
                    : NULL;
  NG_DISPATCH(x.dt, v,
              k_ng_sums<DT, V><<<grid, 256, 0, st>>>(dy.p, x.p, g, mean, part))
  KERNEL_CHECK();
  int64_t jobs = G ? (dw.p || db.p ? g.C : 0) + (dx.p ? sets : 0) : g.C;
  k_ng_bwd_fin<<<ng_grid(jobs), 256, 0, st>>>(part, g, rstd, w, dw, aw, db,
                                              ab, co);
  KERNEL_CHECK();
  if (dx.p) {
    NG_DISPATCH(x.dt, v,
                k_ng_dx<DT, V><<<grid, 256, 0, st>>>(dx.p, ax, dy.p, x.p, g,
                                                     mean, rstd, w, co))
    KERNEL_CHECK();
  }
  return 1;
}

/* ---- layernorm and groupnorm: normalised rows --------------------------
 * Both normalise rows of L contiguous elements: layernorm's rows are the
 * last dim (L = D); groupnorm's row (n, g) is the C/G channels of group g
 * (L = C/G * HW). The affine parameter of element (row, col) is channel
 * ch = (row % G) * cpg + col / hw: layernorm has G = 1, cpg = D, hw = 1. */
struct RowMap {
  int64_t rows, L, G, cpg, hw;
};

__device__ __forceinline__ int64_t row_ch(const RowMap &m, int64_t row,
                                          int64_t col) {
  if (m.cpg == 1) return row % m.G;          /* instancenorm: no division */
  if (m.hw == 1) return (row % m.G) * m.cpg + col; /* layernorm */
  return (row % m.G) * m.cpg + col / m.hw;
}

/* One block per row: mean, rstd = 1/sqrt(var + eps) (biased variance). */
__global__ void k_rownorm_fwd(View y, View mean, View rstd, View x, View w,
                              View b, RowMap m, float eps) {
  int64_t r = blockIdx.x, base = r * m.L;
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < m.L; j += blockDim.x) s += ldf(x, base + j);
  float mu = block_sum(s) / (float)m.L;
  float v = 0.0f;
  for (int64_t j = threadIdx.x; j < m.L; j += blockDim.x) {
    float d = ldf(x, base + j) - mu;
    v += d * d;
  }
  float rs = rsqrtf(block_sum(v) / (float)m.L + eps);
  if (threadIdx.x == 0) {
    stf(mean, r, mu, 0);
    stf(rstd, r, rs, 0);
  }
  for (int64_t j = threadIdx.x; j < m.L; j += blockDim.x) {
    float o = (ldf(x, base + j) - mu) * rs;
    if (w.p) {
      int64_t c = row_ch(m, r, j);
      o = o * ldf(w, c) + ldf(b, c);
    }
    stf(y, base + j, o, 0);
  }
}

/* dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy * w. */
__global__ void k_rownorm_bwd(View dx, int accum, View dy, View x, View mean,
                              View rstd, View w, RowMap m) {
  int64_t r = blockIdx.x, base = r * m.L;
  float mu = ldf(mean, r), rs = ldf(rstd, r);
  float sg = 0.0f, sgx = 0.0f;
  for (int64_t j = threadIdx.x; j < m.L; j += blockDim.x) {
    float g = ldf(dy, base + j) * (w.p ? ldf(w, row_ch(m, r, j)) : 1.0f);
    sg += g;
    sgx += g * (ldf(x, base + j) - mu) * rs;
  }
  sg = block_sum(sg) / (float)m.L;
  sgx = block_sum(sgx) / (float)m.L;
  for (int64_t j = threadIdx.x; j < m.L; j += blockDim.x) {
    float g = ldf(dy, base + j) * (w.p ? ldf(w, row_ch(m, r, j)) : 1.0f);
    float xh = (ldf(x, base + j) - mu) * rs;
    stf(dx, base + j, rs * (g - sg - xh * sgx), accum);
  }
}

/* The same two kernels eight elements at a time (16-byte loads), for
 * contiguous, aligned operands with L a multiple of 8. */
__global__ void k_rownorm_fwd8(View y, View mean, View rstd, View x, View w,
                               View b, RowMap m, float eps) {
  int64_t r = blockIdx.x, base = r * m.L;
  float f[8], s = 0.0f;
  for (int64_t j = threadIdx.x * 8; j < m.L; j += blockDim.x * 8) {
    ld8(x, base + j, f);
    for (int k = 0; k < 8; k++) s += f[k];
  }
  float mu = block_sum(s) / (float)m.L, v = 0.0f;
  for (int64_t j = threadIdx.x * 8; j < m.L; j += blockDim.x * 8) {
    ld8(x, base + j, f);
    for (int k = 0; k < 8; k++) v += (f[k] - mu) * (f[k] - mu);
  }
  float rs = rsqrtf(block_sum(v) / (float)m.L + eps);
  if (threadIdx.x == 0) {
    stf(mean, r, mu, 0);
    stf(rstd, r, rs, 0);
  }
  for (int64_t j = threadIdx.x * 8; j < m.L; j += blockDim.x * 8) {
    ld8(x, base + j, f);
    for (int k = 0; k < 8; k++) {
      f[k] = (f[k] - mu) * rs;
      if (w.p) {
        int64_t c = row_ch(m, r, j + k);
        f[k] = f[k] * ldf(w, c) + ldf(b, c);
      }
    }
    st8(y, base + j, f, 0);
  }
}

__global__ void k_rownorm_bwd8(View dx, int accum, View dy, View x, View mean,
                               View rstd, View w, RowMap m) {
  int64_t r = blockIdx.x, base = r * m.L;
  float mu = ldf(mean, r), rs = ldf(rstd, r);
  float g[8], f[8], sg = 0.0f, sgx = 0.0f;
  for (int64_t j = threadIdx.x * 8; j < m.L; j += blockDim.x * 8) {
    ld8(dy, base + j, g);
    ld8(x, base + j, f);
    for (int k = 0; k < 8; k++) {
      float gk = g[k] * (w.p ? ldf(w, row_ch(m, r, j + k)) : 1.0f);
      sg += gk;
      sgx += gk * (f[k] - mu) * rs;
    }
  }
  sg = block_sum(sg) / (float)m.L;
  sgx = block_sum(sgx) / (float)m.L;
  for (int64_t j = threadIdx.x * 8; j < m.L; j += blockDim.x * 8) {
    ld8(dy, base + j, g);
    ld8(x, base + j, f);
    for (int k = 0; k < 8; k++) {
      float gk = g[k] * (w.p ? ldf(w, row_ch(m, r, j + k)) : 1.0f);
      f[k] = rs * (gk - sg - (f[k] - mu) * rs * sgx);
    }
    st8(dx, base + j, f, accum);
  }
}

/* dw[c] (+)= sum dy xhat, db[c] (+)= sum dy over the elements of channel c:
 * rows r = t*G + c/cpg, cols (c%cpg)*hw + [0, hw). One block per channel. */
__global__ void k_rownorm_wgrad(View dw, int aw, View db, int ab, View dy,
                                View x, View mean, View rstd, RowMap m) {
  int64_t c = blockIdx.x, g = c / m.cpg, c0 = (c % m.cpg) * m.hw;
  int64_t count = (m.rows / m.G) * m.hw;
  float sw = 0.0f, sb = 0.0f;
  for (int64_t e = threadIdx.x; e < count; e += blockDim.x) {
    int64_t r = (e / m.hw) * m.G + g, col = c0 + e % m.hw;
    float d = ldf(dy, r * m.L + col);
    sw += d * (ldf(x, r * m.L + col) - ldf(mean, r)) * ldf(rstd, r);
    sb += d;
  }
  sw = block_sum(sw);
  sb = block_sum(sb);
  if (threadIdx.x == 0) {
    if (dw.p) stf(dw, c, sw, aw);
    if (db.p) stf(db, c, sb, ab);
  }
}

static void rownorm_fwd(mdlrt_ref y, mdlrt_ref mean, mdlrt_ref rstd,
                        mdlrt_ref x, mdlrt_ref w, mdlrt_ref b, RowMap m,
                        double eps) {
  View vy = mdlrt_view(y), vx = mdlrt_view(x);
  if (m.L % 8 == 0 && vec_ok(vy) && vec_ok(vx))
    k_rownorm_fwd8<<<(unsigned)m.rows, 256, 0, mdlrt_rt.stream>>>(
        vy, mdlrt_view(mean), mdlrt_view(rstd), vx, mdlrt_view(w),
        mdlrt_view(b), m, (float)eps);
  else
    k_rownorm_fwd<<<(unsigned)m.rows, 256, 0, mdlrt_rt.stream>>>(
        vy, mdlrt_view(mean), mdlrt_view(rstd), vx, mdlrt_view(w),
        mdlrt_view(b), m, (float)eps);
  KERNEL_CHECK();
}

static void rownorm_bwd(mdlrt_ref dx, int ax, mdlrt_ref dw, int aw,
                        mdlrt_ref db, int ab, mdlrt_ref dy, mdlrt_ref x,
                        mdlrt_ref mean, mdlrt_ref rstd, mdlrt_ref w,
                        RowMap m, int64_t channels) {
  if (dx.base) {
    View vdx = mdlrt_view(dx), vdy = mdlrt_view(dy), vx = mdlrt_view(x);
    if (m.L % 8 == 0 && vec_ok(vdx) && vec_ok(vdy) && vec_ok(vx))
      k_rownorm_bwd8<<<(unsigned)m.rows, 256, 0, mdlrt_rt.stream>>>(
          vdx, ax, vdy, vx, mdlrt_view(mean), mdlrt_view(rstd),
          mdlrt_view(w), m);
    else
      k_rownorm_bwd<<<(unsigned)m.rows, 256, 0, mdlrt_rt.stream>>>(
          vdx, ax, vdy, vx, mdlrt_view(mean), mdlrt_view(rstd),
          mdlrt_view(w), m);
    KERNEL_CHECK();
  }
  if (dw.base || db.base) {
    /* channel c of [outer, channels, inner]: layernorm [rows, D, 1],
     * groupnorm [N, C, hw]; statistic of (o, c): o G + c / cpg */
    View vdy = mdlrt_view(dy), vx = mdlrt_view(x);
    if (vdy.contig && vx.contig) {
      CRed r;
      memset(&r, 0, sizeof r);
      r.what = CR_DYXHAT, r.ep = EP_WGRAD, r.a = vdy, r.b = vx;
      r.mean = mdlrt_view(mean), r.rstd = mdlrt_view(rstd);
      r.outer = m.rows / m.G, r.C = channels, r.inner = m.hw;
      r.G = m.G, r.cpg = m.cpg;
      r.out0 = mdlrt_view(dw), r.acc0 = aw, r.out1 = mdlrt_view(db);
      r.acc1 = ab;
      cred_run(r, 0);
    } else {
      k_rownorm_wgrad<<<(unsigned)channels, 256, 0, mdlrt_rt.stream>>>(
          mdlrt_view(dw), aw, mdlrt_view(db), ab, vdy, vx, mdlrt_view(mean),
          mdlrt_view(rstd), m);
      KERNEL_CHECK();
    }
  }
}

static RowMap layer_map(mdlrt_ref x) {
  View v = mdlrt_view(x);
  int64_t D = v.dim[v.rank - 1];
  RowMap m = {v.n / D, D, 1, D, 1};
  return m;
}

static RowMap group_map(mdlrt_ref x, int64_t G, int64_t *C) {
  View v = mdlrt_view(x);
  *C = v.dim[1];
  int64_t hw = v.n / (v.dim[0] * v.dim[1]);
  RowMap m = {v.dim[0] * G, (*C / G) * hw, G, *C / G, hw};
  return m;
}

void mdlrt_layernorm_fwd(mdlrt_ref y, mdlrt_ref mean, mdlrt_ref rstd,
                         mdlrt_ref x, mdlrt_ref w, mdlrt_ref b, double eps) {
  rownorm_fwd(y, mean, rstd, x, w, b, layer_map(x), eps);
}

void mdlrt_layernorm_bwd(mdlrt_ref dx, int ax, mdlrt_ref dw, int aw,
                         mdlrt_ref db, int ab, mdlrt_ref dy, mdlrt_ref x,
                         mdlrt_ref mean, mdlrt_ref rstd, mdlrt_ref w) {
  RowMap m = layer_map(x);
  rownorm_bwd(dx, ax, dw, aw, db, ab, dy, x, mean, rstd, w, m, m.L);
}

void mdlrt_groupnorm_fwd(mdlrt_ref y, mdlrt_ref mean, mdlrt_ref rstd,
                         mdlrt_ref x, mdlrt_ref w, mdlrt_ref b, int64_t G,
                         double eps) {
  int64_t C;
  View none = {};
  if (ng_fwd(mdlrt_view(y), mdlrt_view(mean), mdlrt_view(rstd), mdlrt_view(x),
             mdlrt_view(w), mdlrt_view(b), none, none, G, eps, 1))
    return;
  rownorm_fwd(y, mean, rstd, x, w, b, group_map(x, G, &C), eps);
}

void mdlrt_groupnorm_bwd(mdlrt_ref dx, int ax, mdlrt_ref dw, int aw,
                         mdlrt_ref db, int ab, mdlrt_ref dy, mdlrt_ref x,
                         mdlrt_ref mean, mdlrt_ref rstd, mdlrt_ref w,
                         int64_t G) {
  int64_t C;
  if (ng_bwd(mdlrt_view(dx), ax, mdlrt_view(dw), aw, mdlrt_view(db), ab,
             mdlrt_view(dy), mdlrt_view(x), mdlrt_view(mean), mdlrt_view(rstd),
             mdlrt_view(w), G))
    return;
  RowMap m = group_map(x, G, &C);
  rownorm_bwd(dx, ax, dw, aw, db, ab, dy, x, mean, rstd, w, m, C);
}

/* ---- batchnorm: statistics per channel of x[N, C, HW] ------------------ */

/* One block per channel. Training: batch statistics (biased variance for
 * the normalisation, unbiased for the running variance), momentum 0.1. */
__global__ void k_bn_fwd(View y, View mean, View invstd, View x, View w,
                         View b, View rm, View rv, int64_t N, int64_t C,
                         int64_t HW, float eps, int train) {
  int64_t c = blockIdx.x, cnt = N * HW;
  float mu, is;
  if (train) {
    float s = 0.0f;
    for (int64_t e = threadIdx.x; e < cnt; e += blockDim.x)
      s += ldf(x, ((e / HW) * C + c) * HW + e % HW);
    mu = block_sum(s) / (float)cnt;
    float v = 0.0f;
    for (int64_t e = threadIdx.x; e < cnt; e += blockDim.x) {
      float d = ldf(x, ((e / HW) * C + c) * HW + e % HW) - mu;
      v += d * d;
    }
    v = block_sum(v);
    is = rsqrtf(v / (float)cnt + eps);
    if (threadIdx.x == 0) {
      stf(mean, c, mu, 0);
      stf(invstd, c, is, 0);
      float unb = cnt > 1 ? v / (float)(cnt - 1) : v;
      stf(rm, c, 0.9f * ldf(rm, c) + 0.1f * mu, 0);
      stf(rv, c, 0.9f * ldf(rv, c) + 0.1f * unb, 0);
    }
  } else {
    mu = ldf(rm, c);
    is = rsqrtf(ldf(rv, c) + eps);
  }
  float wc = ldf(w, c), bc = ldf(b, c);
  for (int64_t e = threadIdx.x; e < cnt; e += blockDim.x) {
    int64_t o = ((e / HW) * C + c) * HW + e % HW;
    stf(y, o, (ldf(x, o) - mu) * is * wc + bc, 0);
  }
}

__global__ void k_bn_bwd(View dx, int ax, View dw, int aw, View db, int ab,
                         View dy, View x, View mean, View invstd, View w,
                         int64_t N, int64_t C, int64_t HW) {
  int64_t c = blockIdx.x, cnt = N * HW;
  float mu = ldf(mean, c), is = ldf(invstd, c);
  float sg = 0.0f, sgx = 0.0f;
  for (int64_t e = threadIdx.x; e < cnt; e += blockDim.x) {
    int64_t o = ((e / HW) * C + c) * HW + e % HW;
    float d = ldf(dy, o);
    sg += d;
    sgx += d * (ldf(x, o) - mu) * is;
  }
  sg = block_sum(sg);
  sgx = block_sum(sgx);
  if (threadIdx.x == 0) {
    if (dw.p) stf(dw, c, sgx, aw);
    if (db.p) stf(db, c, sg, ab);
  }
  if (!dx.p) return;
  float wc = ldf(w, c), mg = sg / (float)cnt, mgx = sgx / (float)cnt;
  for (int64_t e = threadIdx.x; e < cnt; e += blockDim.x) {
    int64_t o = ((e / HW) * C + c) * HW + e % HW;
    float xh = (ldf(x, o) - mu) * is;
    stf(dx, o, wc * is * (ldf(dy, o) - mg - xh * mgx), ax);
  }
}

/* y = (x - mean) invstd w + b, block per (n, c) row of HW. Training:
 * the statistics computed by the reductions; inference: the running
 * ones. */
__global__ void k_bn_apply(View y, View x, View mean, View invstd, View w,
                           View b, View rm, View rv, int64_t C, int64_t HW,
                           float eps, int train) {
  int64_t rows = x.n / HW;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    int64_t c = row % C;
    float mu, is;
    if (train) {
      mu = ldf(mean, c), is = ldf(invstd, c);
    } else {
      mu = ldf(rm, c), is = rsqrtf(ldf(rv, c) + eps);
    }
    float wc = ldf(w, c), bc = ldf(b, c);
    for (int64_t h = threadIdx.x; h < HW; h += blockDim.x) {
      int64_t o = row * HW + h;
      stf(y, o, (ldf(x, o) - mu) * is * wc + bc, 0);
    }
  }
}

/* dx (+)= w invstd (dy - sum dy / M - xhat sum(dy xhat) / M), the sums
 * (tot[2c], tot[2c+1]) from the reduction. */
__global__ void k_bn_dx(View dx, int ax, View dy, View x, View mean,
                        View invstd, View w, const float *tot, int64_t C,
                        int64_t HW, float cnt) {
  int64_t rows = x.n / HW;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    int64_t c = row % C;
    float mu = ldf(mean, c), is = ldf(invstd, c), wc = ldf(w, c);
    float mg = tot[2 * c] / cnt, mgx = tot[2 * c + 1] / cnt;
    for (int64_t h = threadIdx.x; h < HW; h += blockDim.x) {
      int64_t o = row * HW + h;
      float xh = (ldf(x, o) - mu) * is;
      stf(dx, o, wc * is * (ldf(dy, o) - mg - xh * mgx), ax);
    }
  }
}

static unsigned rows_grid(int64_t rows) {
  return (unsigned)(rows < (1 << 20) ? (rows < 1 ? 1 : rows) : (1 << 20));
}
static unsigned rows_block(int64_t HW) {
  return HW >= 256 ? 256 : HW >= 128 ? 128 : 64;
}

void mdlrt_batchnorm_fwd(mdlrt_ref yr, mdlrt_ref mean, mdlrt_ref invstd,
                         mdlrt_ref xr, mdlrt_ref w, mdlrt_ref b,
                         mdlrt_ref rmean, mdlrt_ref rvar, double eps,
                         int train) {
  View x = mdlrt_view(xr), y = mdlrt_view(yr);
  if (ng_fwd(y, mdlrt_view(mean), mdlrt_view(invstd), x, mdlrt_view(w),
             mdlrt_view(b), mdlrt_view(rmean), mdlrt_view(rvar), 0, eps,
             train))
    return;
  int64_t N = x.dim[0], C = x.dim[1], HW = x.n / (N * C);
  if (x.contig && y.contig) {
    if (train) { /* mean, then the squared deviations from it */
      CRed r;
      memset(&r, 0, sizeof r);
      r.what = CR_SUM, r.ep = EP_BN_MEAN, r.a = x, r.out0 = mdlrt_view(mean);
      r.outer = N, r.C = C, r.inner = HW;
      cred_run(r, 0);
      r.what = CR_SQDEV, r.ep = EP_BN_VAR, r.mean = mdlrt_view(mean);
      r.out0 = mdlrt_view(invstd), r.rm = mdlrt_view(rmean);
      r.rv = mdlrt_view(rvar), r.eps = (float)eps;
      cred_run(r, 0);
    }
    k_bn_apply<<<rows_grid(N * C), rows_block(HW), 0, mdlrt_rt.stream>>>(
        y, x, mdlrt_view(mean), mdlrt_view(invstd), mdlrt_view(w),
        mdlrt_view(b), mdlrt_view(rmean), mdlrt_view(rvar), C, HW,
        (float)eps, train);
    KERNEL_CHECK();
    return;
  }
  k_bn_fwd<<<(unsigned)C, 256, 0, mdlrt_rt.stream>>>(
      mdlrt_view(yr), mdlrt_view(mean), mdlrt_view(invstd), x, mdlrt_view(w),
      mdlrt_view(b), mdlrt_view(rmean), mdlrt_view(rvar), N, C, HW,
      (float)eps, train);
  KERNEL_CHECK();
}

void mdlrt_batchnorm_bwd(mdlrt_ref dx, int ax, mdlrt_ref dw, int aw,
                         mdlrt_ref db, int ab, mdlrt_ref dy, mdlrt_ref xr,
                         mdlrt_ref mean, mdlrt_ref invstd, mdlrt_ref w) {
  View x = mdlrt_view(xr), vdy = mdlrt_view(dy), vdx = mdlrt_view(dx);
  if (ng_bwd(vdx, ax, mdlrt_view(dw), aw, mdlrt_view(db), ab, vdy, x,
             mdlrt_view(mean), mdlrt_view(invstd), mdlrt_view(w), 0))
    return;
  int64_t N = x.dim[0], C = x.dim[1], HW = x.n / (N * C);
  if (x.contig && vdy.contig && (!vdx.p || vdx.contig) && mdlrt_rt.ws &&
      mdlrt_rt.ws_bytes >= 8 * C) {
    /* sums of dy and dy xhat per channel (kept at the workspace's start
     * for dx), then dx elementwise */
    CRed r;
    memset(&r, 0, sizeof r);
    r.what = CR_DYXHAT, r.ep = EP_WGRAD, r.a = vdy, r.b = x;
    r.mean = mdlrt_view(mean), r.rstd = mdlrt_view(invstd);
    r.outer = N, r.C = C, r.inner = HW;
    r.out0 = mdlrt_view(dw), r.acc0 = aw, r.out1 = mdlrt_view(db);
    r.acc1 = ab, r.tot = (float *)mdlrt_rt.ws;
    cred_run(r, 2 * C);
    if (vdx.p) {
      k_bn_dx<<<rows_grid(N * C), rows_block(HW), 0, mdlrt_rt.stream>>>(
          vdx, ax, vdy, x, mdlrt_view(mean), mdlrt_view(invstd),
          mdlrt_view(w), r.tot, C, HW, (float)(N * HW));
      KERNEL_CHECK();
    }
    return;
  }
  k_bn_bwd<<<(unsigned)C, 256, 0, mdlrt_rt.stream>>>(
      mdlrt_view(dx), ax, mdlrt_view(dw), aw, mdlrt_view(db), ab,
      mdlrt_view(dy), x, mdlrt_view(mean), mdlrt_view(invstd), mdlrt_view(w),
      N, C, HW);
  KERNEL_CHECK();
}

/* ---- softmax ------------------------------------------------------------ */

/* One block per row of L; causal: columns > the row's index in the
 * second-to-last dim (S of them) are masked to 0. */
__global__ void k_softmax_fwd(View y, View x, int64_t L, int64_t S,
                              int causal) {
  int64_t r = blockIdx.x, base = r * L;
  int64_t lim = causal ? (r % S) + 1 : L;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < lim; j += blockDim.x)
    mx = fmaxf(mx, ldf(x, base + j));
  mx = block_max(mx);
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < lim; j += blockDim.x)
    s += expf(ldf(x, base + j) - mx);
  s = block_sum(s);
  for (int64_t j = threadIdx.x; j < L; j += blockDim.x)
    stf(y, base + j, j < lim ? expf(ldf(x, base + j) - mx) / s : 0.0f, 0);
}

/* dx = y (dy - sum(dy y)) */
__global__ void k_softmax_bwd(View dx, int accum, View dy, View y,
                              int64_t L) {
  int64_t r = blockIdx.x, base = r * L;
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < L; j += blockDim.x)
    s += ldf(dy, base + j) * ldf(y, base + j);
  s = block_sum(s);
  for (int64_t j = threadIdx.x; j < L; j += blockDim.x)
    stf(dx, base + j, ldf(y, base + j) * (ldf(dy, base + j) - s), accum);
}

void mdlrt_softmax_fwd(mdlrt_ref yr, mdlrt_ref xr, int causal) {
  View y = mdlrt_view(yr), x = mdlrt_view(xr);
  int64_t L = y.dim[y.rank - 1], S = y.rank >= 2 ? y.dim[y.rank - 2] : 1;
  k_softmax_fwd<<<(unsigned)(y.n / L), 256, 0, mdlrt_rt.stream>>>(y, x, L, S,
                                                                  causal);
  KERNEL_CHECK();
}

void mdlrt_softmax_bwd(mdlrt_ref dxr, int accum, mdlrt_ref dyr,
                       mdlrt_ref yr) {
  View dx = mdlrt_view(dxr), dy = mdlrt_view(dyr), y = mdlrt_view(yr);
  int64_t L = y.dim[y.rank - 1];
  k_softmax_bwd<<<(unsigned)(y.n / L), 256, 0, mdlrt_rt.stream>>>(dx, accum,
                                                                  dy, y, L);
  KERNEL_CHECK();
}

/* ---- embedding ------------------------------------------------------------ */

__global__ void k_embed_fwd(View y, View ids, View w, int64_t D) {
  GRID_LOOP(i, y.n) {
    int64_t id = ldi(ids, vofs(ids, i / D));
    stf(y, i, ldf(w, id * D + i % D), 0);
  }
}

__global__ void k_embed_bwd(View dw, View dy, View ids, int64_t D) {
  GRID_LOOP(i, dy.n) {
    int64_t id = ldi(ids, vofs(ids, i / D));
    atomic_addf(dw, id * D + i % D, ldf(dy, i));
  }
}

void mdlrt_embedding_fwd(mdlrt_ref yr, mdlrt_ref idr, mdlrt_ref wr) {
  View y = mdlrt_view(yr), w = mdlrt_view(wr);
  k_embed_fwd<<<grid_for(y.n), 256, 0, mdlrt_rt.stream>>>(
      y, mdlrt_view(idr), w, w.dim[1]);
  KERNEL_CHECK();
}

void mdlrt_embedding_bwd(mdlrt_ref dwr, int accum, mdlrt_ref dyr,
                         mdlrt_ref idr) {
  View dw = mdlrt_view(dwr), dy = mdlrt_view(dyr);
  if (!accum)
    CUDA_CHECK(cudaMemsetAsync(dw.p, 0, (size_t)dw.n * mdlrt_dt_size(dw.dt),
                               mdlrt_rt.stream));
  k_embed_bwd<<<grid_for(dy.n), 256, 0, mdlrt_rt.stream>>>(
      dw, dy, mdlrt_view(idr), dw.dim[1]);
  KERNEL_CHECK();
}

/* ---- losses ------------------------------------------------------------------ */

/* One block per row: logprobs = x - logsumexp(x). */
__global__ void k_logsoftmax(View lp, View x, int64_t C) {
  int64_t r = blockIdx.x, base = r * C;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x)
    mx = fmaxf(mx, ldf(x, base + j));
  mx = block_max(mx);
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x)
    s += expf(ldf(x, base + j) - mx);
  float lse = mx + logf(block_sum(s));
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x)
    stf(lp, base + j, ldf(x, base + j) - lse, 0);
}

/* loss = -mean over rows of logprobs[row, target]: one block, in order. */
__global__ void k_nll(View loss, View lp, View t, int64_t rows, int64_t C) {
  float s = 0.0f;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x)
    s -= ldf(lp, r * C + ldi(t, vofs(t, r)));
  s = block_sum(s);
  if (threadIdx.x == 0) stf(loss, 0, s / (float)rows, 0);
}

__global__ void k_ce_bwd(View dx, int accum, View dloss, View lp, View t,
                         int64_t rows, int64_t C) {
  float g = ldf(dloss, 0) / (float)rows;
  GRID_LOOP(i, dx.n) {
    int64_t r = i / C, c = i % C;
    float p = expf(ldf(lp, i)) - (c == ldi(t, vofs(t, r)) ? 1.0f : 0.0f);
    stf(dx, i, p * g, accum);
  }
}

void mdlrt_cross_entropy_fwd(mdlrt_ref loss, mdlrt_ref lpr, mdlrt_ref xr,
                             mdlrt_ref tr) {
  View lp = mdlrt_view(lpr), x = mdlrt_view(xr);
  int64_t C = x.dim[x.rank - 1], rows = x.n / C;
  k_logsoftmax<<<(unsigned)rows, 256, 0, mdlrt_rt.stream>>>(lp, x, C);
  KERNEL_CHECK();
  k_nll<<<1, 1024, 0, mdlrt_rt.stream>>>(mdlrt_view(loss), lp, mdlrt_view(tr),
                                         rows, C);
  KERNEL_CHECK();
}

void mdlrt_cross_entropy_bwd(mdlrt_ref dxr, int accum, mdlrt_ref dloss,
                             mdlrt_ref lpr, mdlrt_ref tr) {
  View dx = mdlrt_view(dxr), lp = mdlrt_view(lpr);
  int64_t C = lp.dim[lp.rank - 1], rows = lp.n / C;
  k_ce_bwd<<<grid_for(dx.n), 256, 0, mdlrt_rt.stream>>>(
      dx, accum, mdlrt_view(dloss), lp, mdlrt_view(tr), rows, C);
  KERNEL_CHECK();
}

__global__ void k_mse_fwd(View loss, View a, View b) {
  float s = 0.0f;
  for (int64_t i = threadIdx.x; i < a.n; i += blockDim.x) {
    float d = ldf(a, vofs(a, i)) - ldf(b, vofs(b, i));
    s += d * d;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) stf(loss, 0, s / (float)a.n, 0);
}

__global__ void k_mse_bwd(View d, int accum, float sign, View dloss, View a,
                          View b) {
  float g = sign * 2.0f * ldf(dloss, 0) / (float)a.n;
  GRID_LOOP(i, d.n) {
    float diff = ldf(a, vofs(a, i)) - ldf(b, vofs(b, i));
    stf(d, vofs(d, i), g * diff, accum);
  }
}

/* Partial sums of (a - b)^2: MSE_BLOCKS blocks over a grid-stride loop, one
 * float each in the workspace; k_mse_fin adds them in a fixed tree order.
 * A fixed grid (not the GPU's size), so the sum is the same everywhere. */
enum { MSE_BLOCKS = 1024 };
__global__ void k_mse_part(float *part, View a, View b) {
  float s = 0.0f;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < a.n;
       i += (int64_t)gridDim.x * blockDim.x) {
    float d = ldf(a, vofs(a, i)) - ldf(b, vofs(b, i));
    s += d * d;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ void k_mse_fin(View loss, const float *part, int64_t n) {
  float s = block_sum(part[threadIdx.x]);
  if (threadIdx.x == 0) stf(loss, 0, s / (float)n, 0);
}

void mdlrt_mse_fwd(mdlrt_ref loss, mdlrt_ref a, mdlrt_ref b) {
  View va = mdlrt_view(a);
  if (va.n >= 64 * 1024 && mdlrt_rt.ws &&
      mdlrt_rt.ws_bytes >= (int64_t)(MSE_BLOCKS * sizeof(float))) {
    float *part = (float *)mdlrt_rt.ws;
    k_mse_part<<<MSE_BLOCKS, 256, 0, mdlrt_rt.stream>>>(part, va,
                                                        mdlrt_view(b));
    KERNEL_CHECK();
    k_mse_fin<<<1, MSE_BLOCKS, 0, mdlrt_rt.stream>>>(mdlrt_view(loss), part,
                                                     va.n);
    KERNEL_CHECK();
    return;
  }
  k_mse_fwd<<<1, 1024, 0, mdlrt_rt.stream>>>(mdlrt_view(loss), va,
                                             mdlrt_view(b));
  KERNEL_CHECK();
}

void mdlrt_mse_bwd(mdlrt_ref dr, int accum, double sign, mdlrt_ref dloss,
                   mdlrt_ref a, mdlrt_ref b) {
  View d = mdlrt_view(dr);
  k_mse_bwd<<<grid_for(d.n), 256, 0, mdlrt_rt.stream>>>(
      d, accum, (float)sign, mdlrt_view(dloss), mdlrt_view(a), mdlrt_view(b));
  KERNEL_CHECK();
}
