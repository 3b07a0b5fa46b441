/* runtime/mdlrt_linear.cu: matrix products: linear (x W^T + b) and matmul
 * (batched, transposed operands, a broadcast operand's stride 0), forward
 * and backward, through cuBLAS (f32 accumulation, tensor cores for 16-bit
 * data), and the gemm and bias-fill helpers that conv2d shares.
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
  case MDLRT_F32: return CUDA_R_32F;
  default: mdlrt_bad_code("matrix product dtype", dt, __FILE__, __LINE__);
  }
}

/* Row-major C[m,n] = alpha op(A) op(B) + beta C, `batch` times with
 * element strides sA, sB, sC between the matrices. A is [m,k] ([k,m] if
 * ta), B is [k,n] ([n,k] if tb). A stride of 0 on C (a broadcast operand's
 * gradient) runs the batch one by one, accumulating. */
void mdlrt_gemm(int ta, int tb, int64_t m, int64_t n, int64_t k,
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

void mdlrt_bias_fill(const View &y, const View &b, int64_t N, int64_t inner) {
  k_bias_fill<<<grid_for(y.n), 256, 0, mdlrt_rt.stream>>>(y, b, N, inner);
  KERNEL_CHECK();
}

void mdlrt_linear_fwd(mdlrt_ref yr, mdlrt_ref xr, mdlrt_ref wr, mdlrt_ref br,
                      int64_t M, int64_t K, int64_t N) {
  View y = mdlrt_view(yr), x = mdlrt_view(xr), w = mdlrt_view(wr);
  if (br.base) mdlrt_bias_fill(y, mdlrt_view(br), N, 1);
  mdlrt_gemm(0, 1, M, N, K, x, w, y, br.base ? 1.0f : 0.0f, 1, 0, 0, 0);
}

void mdlrt_linear_bwd(mdlrt_ref dxr, int ax, mdlrt_ref dwr, int aw,
                      mdlrt_ref dbr, int ab, mdlrt_ref dyr, mdlrt_ref xr,
                      mdlrt_ref wr, int64_t M, int64_t K, int64_t N) {
  View dy = mdlrt_view(dyr), x = mdlrt_view(xr), w = mdlrt_view(wr);
  if (dxr.base) /* dx[M,K] = dy[M,N] w[N,K] */
    mdlrt_gemm(0, 0, M, K, N, dy, w, mdlrt_view(dxr), ax ? 1.0f : 0.0f, 1, 0,
               0, 0);
  if (dwr.base) /* dw[N,K] = dy^T x */
    mdlrt_gemm(1, 0, N, K, M, dy, x, mdlrt_view(dwr), aw ? 1.0f : 0.0f, 1, 0,
               0, 0);
  if (dbr.base) mdlrt_chan_sum(mdlrt_view(dbr), ab, dy, M, N, 1);
}

void mdlrt_matmul_fwd(mdlrt_ref yr, mdlrt_ref ar, mdlrt_ref br, int ta,
                      int tb, int64_t batch, int64_t m, int64_t k, int64_t n,
                      int64_t sa, int64_t sb) {
  mdlrt_gemm(ta, tb, m, n, k, mdlrt_view(ar), mdlrt_view(br), mdlrt_view(yr),
             0.0f, batch, sa, sb, m * n);
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
      mdlrt_gemm(0, tb ? 0 : 1, m, k, n, dy, b, da, aa ? 1.0f : 0.0f, batch,
                 sy, sb, sa);
    else /* da[k,m] = op(b) dy^T */
      mdlrt_gemm(tb ? 1 : 0, 1, k, m, n, b, dy, da, aa ? 1.0f : 0.0f, batch,
                 sb, sy, sa);
  }
  if (dbr.base) {
    View db = mdlrt_view(dbr);
    if (!tb) /* db[k,n] = op(a)^T dy */
      mdlrt_gemm(ta ? 0 : 1, 0, k, n, m, a, dy, db, ab ? 1.0f : 0.0f, batch,
                 sa, sy, sb);
    else /* db[n,k] = dy^T op(a) */
      mdlrt_gemm(1, ta ? 1 : 0, n, k, m, dy, a, db, ab ? 1.0f : 0.0f, batch,
                 sy, sa, sb);
  }
}
