/* runtime/mdlrt_dev.cuh: what the runtime's translation units share and
 * emitted code never sees: the check macros, the device-side view of a
 * tensor, loads and stores in any float dtype, the launch helpers, and
 * (last, in sections named after the file that defines them) the helpers
 * that more than one family of ops uses.
 *
 * Every kernel computes in f32 and reaches memory through a View (base
 * pointer already offset, dtype, shape, strides). `vofs` turns a row-major
 * element number into an offset through the strides, so one kernel serves
 * contiguous tensors, views and broadcast operands (stride 0) alike.
 */
#ifndef MDLRT_DEV_CUH
#define MDLRT_DEV_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stdint.h>

#include "mdlrt.h"

/* ---- failures: the call, the error's name, the op, exit 3 ---------- */

[[noreturn]] void mdlrt_fail(const char *lib, const char *err,
                             const char *call, const char *file, int line);

#define CUDA_CHECK(call)                                                     \
  do {                                                                       \
    cudaError_t e_ = (call);                                                 \
    if (e_ != cudaSuccess)                                                   \
      mdlrt_fail("CUDA", cudaGetErrorName(e_), #call, __FILE__, __LINE__);  \
  } while (0)
#define CUBLAS_CHECK(call)                                                   \
  do {                                                                       \
    cublasStatus_t s_ = (call);                                              \
    if (s_ != CUBLAS_STATUS_SUCCESS)                                         \
      mdlrt_fail("cuBLAS", cublasGetStatusName(s_), #call, __FILE__,        \
                 __LINE__);                                                  \
  } while (0)
#define CUDNN_CHECK(call)                                                    \
  do {                                                                       \
    cudnnStatus_t s_ = (call);                                               \
    if (s_ != CUDNN_STATUS_SUCCESS)                                          \
      mdlrt_fail("cuDNN", cudnnGetErrorString(s_), #call, __FILE__,         \
                 __LINE__);                                                  \
  } while (0)
/* After every launch: the launch error, and with MDLRT_SYNC=1 the fault. */
#define KERNEL_CHECK() mdlrt_after_launch(__FILE__, __LINE__)
void mdlrt_after_launch(const char *file, int line);
/* An op, kind or dtype code that the runtime does not know (a caller's
 * bug): names it, the op running and the place, exits 3 as mdlrt_fail. */
[[noreturn]] void mdlrt_bad_code(const char *what, int code, const char *file,
                                 int line);

/* What changes between steps (mdlrt_step_begin). */
struct StepVars {
  uint64_t step;   /* 0-based: dropout's masks */
  float adam_step; /* lr / (1 - beta1^t), t = step + 1 */
  float sqrt_bc2;  /* sqrt(1 - beta2^t) */
};

/* The runtime's state, made once by mdlrt_init. */
typedef struct {
  cudaStream_t stream;       /* the one stream */
  cublasHandle_t blas;       /* cuBLAS, on `stream`, workspace set */
  cudnnHandle_t dnn;         /* cuDNN, on `stream` */
  cudaMemPool_t pool;        /* every buffer of the step */
  void *ws;                  /* the workspace buffer */
  int64_t ws_bytes;          /* its size */
  uint64_t seed;             /* --seed */
  int arena;                 /* --alloc arena */
  int sync;                  /* MDLRT_SYNC=1 */
  int prof;                  /* MDLRT_PROF=1: time per kind of op */
  const char *op;            /* the op running (for messages) */
  StepVars *hstep;           /* pinned: the next step's variables */
  StepVars *dstep;           /* d_step's address */
  mdlrt_optim opt;           /* the optimizer of the last step begun */
  int has_opt;               /* ... if it had one */
  int capturing;             /* inside mdlrt_graph_capture */
  cudaGraphExec_t graph;     /* the captured step, or NULL */
} Runtime;
extern Runtime mdlrt_rt;

/* ---- the device-side tensor view ----------------------------------- */

struct View {
  char *p;                       /* first element */
  int dt;                        /* MDLRT_F32 ... */
  int rank;
  int contig;                    /* strides are row-major of dim */
  int64_t n;                     /* elements */
  int64_t dim[MDLRT_MAX_RANK];
  int64_t st[MDLRT_MAX_RANK];
};

int mdlrt_dt_size(int dt);
__device__ __forceinline__ int mdlrt_dt_size_dev(int dt) {
  return dt == MDLRT_I64 ? 8 : dt == MDLRT_U8 ? 1
         : (dt == MDLRT_F16 || dt == MDLRT_BF16) ? 2 : 4;
}
/* The view of a tensor reference. */
View mdlrt_view(mdlrt_ref r);
/* `r` read as if it had `shape`'s shape, NumPy broadcasting (stride 0 on
 * broadcast dims): for the operands of add and mul. */
View mdlrt_view_bcast(mdlrt_ref r, const mdlrt_tensor *shape);

__device__ __forceinline__ int64_t vofs(const View &v, int64_t i) {
  if (v.contig) return i;
  int64_t o = 0;
  for (int d = v.rank - 1; d >= 0; d--) {
    int64_t q = i / v.dim[d];
    o += (i - q * v.dim[d]) * v.st[d];
    i = q;
  }
  return o;
}

__device__ __forceinline__ float ldf(const View &v, int64_t o) {
  switch (v.dt) {
  case MDLRT_F32: return ((const float *)v.p)[o];
  case MDLRT_F16: return __half2float(((const __half *)v.p)[o]);
  case MDLRT_BF16: return __bfloat162float(((const __nv_bfloat16 *)v.p)[o]);
  case MDLRT_I32: return (float)((const int32_t *)v.p)[o];
  case MDLRT_I64: return (float)((const int64_t *)v.p)[o];
  default: return (float)((const uint8_t *)v.p)[o];
  }
}

__device__ __forceinline__ int64_t ldi(const View &v, int64_t o) {
  switch (v.dt) {
  case MDLRT_I32: return ((const int32_t *)v.p)[o];
  case MDLRT_I64: return ((const int64_t *)v.p)[o];
  case MDLRT_U8: return ((const uint8_t *)v.p)[o];
  default: return (int64_t)ldf(v, o);
  }
}

/* Stores x (or adds it, if accum) at offset o. */
__device__ __forceinline__ void stf(const View &v, int64_t o, float x,
                                    int accum) {
  if (accum) x += ldf(v, o);
  switch (v.dt) {
  case MDLRT_F32: ((float *)v.p)[o] = x; break;
  case MDLRT_F16: ((__half *)v.p)[o] = __float2half(x); break;
  case MDLRT_BF16: ((__nv_bfloat16 *)v.p)[o] = __float2bfloat16(x); break;
  case MDLRT_I32: ((int32_t *)v.p)[o] = (int32_t)x; break;
  case MDLRT_I64: ((int64_t *)v.p)[o] = (int64_t)x; break;
  default: ((uint8_t *)v.p)[o] = (uint8_t)x; break;
  }
}

/* Element i, numbered row-major, of a view through its strides. */
__device__ __forceinline__ float ldv(const View &v, int64_t i) {
  return ldf(v, vofs(v, i));
}
__device__ __forceinline__ void stv(const View &v, int64_t i, float x,
                                    int accum) {
  stf(v, vofs(v, i), x, accum);
}

__device__ __forceinline__ void atomic_addf(const View &v, int64_t o,
                                            float x) {
  switch (v.dt) {
  case MDLRT_F32: atomicAdd((float *)v.p + o, x); break;
  case MDLRT_F16: atomicAdd((__half *)v.p + o, __float2half(x)); break;
  case MDLRT_BF16:
    atomicAdd((__nv_bfloat16 *)v.p + o, __float2bfloat16(x));
    break;
  default: break;
  }
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every
 * thread gets the result. */
__device__ __forceinline__ float block_sum(float x) {
  __shared__ float part[32];
  for (int s = 16; s > 0; s >>= 1) x += __shfl_xor_sync(0xffffffffu, x, s);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads(); /* part[] may still be read by a previous call */
  if (lane == 0) part[warp] = x;
  __syncthreads();
  int nw = blockDim.x >> 5;
  x = lane < nw ? part[lane] : 0.0f;
  for (int s = 16; s > 0; s >>= 1) x += __shfl_xor_sync(0xffffffffu, x, s);
  return x;
}

__device__ __forceinline__ float block_max(float x) {
  __shared__ float part[32];
  for (int s = 16; s > 0; s >>= 1)
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, s));
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) part[warp] = x;
  __syncthreads();
  int nw = blockDim.x >> 5;
  x = lane < nw ? part[lane] : -INFINITY;
  for (int s = 16; s > 0; s >>= 1)
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, s));
  return x;
}

/* ---- eight contiguous elements at once ------------------------------
 * For views whose elements i..i+7 are contiguous and whose base is 16-byte
 * aligned (vec_ok on the host), i a multiple of 8: one 16-byte load per
 * 16-bit view (two per f32, one 8-byte per u8). Conversions round as stf
 * does (to nearest even), so the numerics are those of the scalar path. */
__device__ __forceinline__ void ld8(const View &v, int64_t i, float *f) {
  switch (v.dt) {
  case MDLRT_F32: {
    float4 a = *(const float4 *)(v.p + 4 * i);
    float4 b = *(const float4 *)(v.p + 4 * i + 16);
    f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w;
    f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
    break;
  }
  case MDLRT_F16: {
    uint4 u = *(const uint4 *)(v.p + 2 * i);
    const __half2 *h = (const __half2 *)&u;
    for (int k = 0; k < 4; k++) {
      float2 t = __half22float2(h[k]);
      f[2 * k] = t.x, f[2 * k + 1] = t.y;
    }
    break;
  }
  case MDLRT_BF16: {
    uint4 u = *(const uint4 *)(v.p + 2 * i);
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
    for (int k = 0; k < 4; k++) {
      float2 t = __bfloat1622float2(h[k]);
      f[2 * k] = t.x, f[2 * k + 1] = t.y;
    }
    break;
  }
  case MDLRT_U8: {
    uint2 u = *(const uint2 *)(v.p + i);
    const uint8_t *b = (const uint8_t *)&u;
    for (int k = 0; k < 8; k++) f[k] = (float)b[k];
    break;
  }
  default:
    for (int k = 0; k < 8; k++) f[k] = ldf(v, i + k);
  }
}

__device__ __forceinline__ void st8(const View &v, int64_t i, float *f,
                                    int accum) {
  if (accum) {
    float o[8];
    ld8(v, i, o);
    for (int k = 0; k < 8; k++) f[k] += o[k];
  }
  switch (v.dt) {
  case MDLRT_F32:
    *(float4 *)(v.p + 4 * i) = make_float4(f[0], f[1], f[2], f[3]);
    *(float4 *)(v.p + 4 * i + 16) = make_float4(f[4], f[5], f[6], f[7]);
    break;
  case MDLRT_F16: {
    uint4 u;
    __half2 *h = (__half2 *)&u;
    for (int k = 0; k < 4; k++) h[k] = __floats2half2_rn(f[2 * k], f[2 * k + 1]);
    *(uint4 *)(v.p + 2 * i) = u;
    break;
  }
  case MDLRT_BF16: {
    uint4 u;
    __nv_bfloat162 *h = (__nv_bfloat162 *)&u;
    for (int k = 0; k < 4; k++)
      h[k] = __floats2bfloat162_rn(f[2 * k], f[2 * k + 1]);
    *(uint4 *)(v.p + 2 * i) = u;
    break;
  }
  case MDLRT_U8: {
    uint2 u;
    uint8_t *b = (uint8_t *)&u;
    for (int k = 0; k < 8; k++) b[k] = (uint8_t)f[k];
    *(uint2 *)(v.p + i) = u;
    break;
  }
  default:
    for (int k = 0; k < 8; k++) stf(v, i + k, f[k], 0);
  }
}

/* Whether a view can be read and written eight elements at a time from
 * element 0: contiguous (row-major), base 16-byte aligned. A view with no
 * base (an absent operand) qualifies. */
static inline int vec_ok(const View &v) {
  return !v.p || (v.contig && ((uintptr_t)v.p & 15) == 0);
}

/* Grid for a grid-stride loop over n elements. */
static inline unsigned grid_for(int64_t n) {
  int64_t b = (n + 255) / 256;
  if (b > 65535 * 8) b = 65535 * 8;
  return (unsigned)(b < 1 ? 1 : b);
}
#define GRID_LOOP(i, n)                                                      \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n);  \
       i += (int64_t)gridDim.x * blockDim.x)

/* The contiguous fast path of the maps over elements (mdlrt_copy and
 * mdlrt_pointwise.cu): thread per 8 elements (ld8/st8), the tail (n % 8)
 * by block 0. Launched with vec_grid(n). */
#define VEC_LOOP(i, n)                                                       \
  for (int64_t i = 8 * (blockIdx.x * (int64_t)blockDim.x + threadIdx.x);     \
       i + 8 <= (n); i += 8 * (int64_t)gridDim.x * blockDim.x)
#define TAIL_LOOP(i, n)                                                      \
  if (blockIdx.x == 0)                                                       \
    for (int64_t i = ((n) & ~(int64_t)7) + threadIdx.x; i < (n);             \
         i += blockDim.x)
static inline unsigned vec_grid(int64_t n) { return grid_for((n + 7) / 8); }

/* ---- loads and stores of one float dtype, known at compile time ---------
 * For the fast paths of pooling's backward and of the norms (mdlrt_pool.cu,
 * mdlrt_norm.cu): the dtype's raw storage S, its widening to f32 (exact)
 * and the rounding of an f32 to it (to nearest even, as stf), and NG, the
 * elements of 16 bytes. */
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

/* ---- helpers shared by the families, by the file that defines them ---- */

/* ---- runtime/mdlrt_linear.cu ----------------------------------------- */

/* Row-major C[m,n] = op(A) op(B) + beta C through cuBLAS, `batch` times
 * with element strides sA, sB, sC between the matrices; A is [m,k] ([k,m]
 * if ta), B is [k,n] ([n,k] if tb). sC == 0 with batch > 1 (a broadcast
 * operand's gradient) runs the batch one by one, accumulating. */
void mdlrt_gemm(int ta, int tb, int64_t m, int64_t n, int64_t k,
                const View &A, const View &B, const View &C, float beta,
                int64_t batch, int64_t sA, int64_t sB, int64_t sC);
/* y = b broadcast: y[i] = b[(i / inner) % N] (a bias over [M, N] rows,
 * inner = 1, or over NCHW channels, inner = HW), before a product adds
 * onto it. */
void mdlrt_bias_fill(const View &y, const View &b, int64_t N, int64_t inner);

/* ---- runtime/mdlrt_reduce.cu ----------------------------------------- */

/* Per-channel reductions over x[outer, C, inner].
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
enum { CR_SUM, CR_SQDEV, CR_DYXHAT, CR_DYXRMS }; /* what is summed */
enum { EP_STORE, EP_BN_MEAN, EP_BN_VAR, EP_WGRAD }; /* what totals become */

struct CRed {
  int what;             /* CR_SUM: s0 = sum a. CR_SQDEV: s0 = sum (a -
                           mean[c])^2. CR_DYXHAT: s0 = sum a (dy), s1 =
                           sum a (b - mean[si]) rstd[si] (b: x).
                           CR_DYXRMS (rmsnorm): s0 = sum a, s1 = sum a b
                           rstd[o] */
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

/* Runs reduction r; the partials take the workspace after its first
 * `skip` floats (r.tot's). */
void mdlrt_cred_run(const CRed &r, int64_t skip);
/* db[c] (+)= sum of dy[outer, C, inner] over all but c. */
void mdlrt_chan_sum(const View &db, int accum, const View &dy, int64_t outer,
                    int64_t C, int64_t inner);

#endif /* MDLRT_DEV_CUH */
