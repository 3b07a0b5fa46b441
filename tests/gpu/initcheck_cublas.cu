// tests/gpu/initcheck_cublas.cu: does compute-sanitizer's initcheck see the
// writes of cuBLAS GEMMs? A GEMM (bf16 or f32 output) writes a freshly
// allocated C; a plain kernel then reads every element of C. If initcheck
// reports the read, it did not track the library's write (the values are
// checked against the CPU, so the write did happen).
//   nvcc -arch=sm_90 -o icb tests/gpu/initcheck_cublas.cu -lcublas
//   compute-sanitizer --tool initcheck ./icb bf16   (and ./icb f32)
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cstdio>
#include <cstring>
#include <vector>

#define CK(x) do { auto e_ = (x); if ((int)e_) { printf("%s failed: %d\n", #x, (int)e_); return 1; } } while (0)

__global__ void sum_bf16(const __nv_bfloat16 *c, int n, float *out) {
  float s = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += __bfloat162float(c[i]);
  atomicAdd(out, s);
}
__global__ void sum_f32(const float *c, int n, float *out) {
  float s = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += c[i];
  atomicAdd(out, s);
}

int main(int argc, char **argv) {
  bool bf = argc > 1 && !strcmp(argv[1], "bf16");
  const int n = 256;
  size_t es = bf ? 2 : 4;
  std::vector<unsigned char> ha(n * n * es);
  for (int i = 0; i < n * n; i++) {  // A = B = all ones
    if (bf) { __nv_bfloat16 one = __float2bfloat16(1.0f); memcpy(&ha[i * 2], &one, 2); }
    else { float one = 1.0f; memcpy(&ha[i * 4], &one, 4); }
  }
  void *a, *b, *c; float *out;
  CK(cudaMalloc(&a, n * n * es)); CK(cudaMalloc(&b, n * n * es));
  CK(cudaMalloc(&c, n * n * es)); CK(cudaMalloc(&out, 4));
  CK(cudaMemcpy(a, ha.data(), n * n * es, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(b, ha.data(), n * n * es, cudaMemcpyHostToDevice));
  CK(cudaMemset(out, 0, 4));
  cublasHandle_t h; CK(cublasCreate(&h));
  float alpha = 1, beta = 0;
  cudaDataType t = bf ? CUDA_R_16BF : CUDA_R_32F;
  CK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a, t, n, b, t,
                  n, &beta, c, t, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  if (bf) sum_bf16<<<1, 256>>>((const __nv_bfloat16 *)c, n * n, out);
  else sum_f32<<<1, 256>>>((const float *)c, n * n, out);
  float s; CK(cudaMemcpy(&s, out, 4, cudaMemcpyDeviceToHost));
  // every element of C is n: the sum is n^3
  printf("%s: sum %.0f, expected %.0f: %s\n", bf ? "bf16" : "f32", s,
         (double)n * n * n, s == (float)n * n * n ? "ok" : "WRONG");
  return s == (float)n * n * n ? 0 : 1;
}
