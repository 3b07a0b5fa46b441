/* runtime/mdlrt_dev.cuh: what the runtime's translation units share and
 * emitted code never sees: the check macros, the device-side view of a
 * tensor, loads and stores in any float dtype, and the launch helpers.
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

#endif /* MDLRT_DEV_CUH */
