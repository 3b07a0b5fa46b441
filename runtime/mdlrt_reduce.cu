/* runtime/mdlrt_reduce.cu: the reduction machinery shared by the families:
 * per-channel sums over x[outer, C, inner] (bias gradients of linear and
 * conv2d, batchnorm's statistics, the norms' weight gradients), split over
 * channels and chunks with partials in the workspace and added in a fixed
 * order, so every sum is deterministic.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdlrt_dev.cuh"

/* ---- per-channel reductions over x[outer, C, inner] --------------------
 * (CRed in mdlrt_dev.cuh says what is summed and how the work is split.) */

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
  case CR_DYXHAT: {
    int64_t si = r.G ? o * r.G + c / r.cpg : c;
    float d = ldf(r.a, off);
    s0 += d;
    s1 += d * (ldf(r.b, off) - ldf(r.mean, si)) * ldf(r.rstd, si);
    break;
  }
  default: __trap(); /* mdlrt_cred_run rejects unknown codes */
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
  case EP_WGRAD:
    if (r.out0.p) stf(r.out0, c, s1, r.acc0);
    if (r.out1.p) stf(r.out1, c, s0, r.acc1);
    if (r.tot) r.tot[2 * c] = s0, r.tot[2 * c + 1] = s1;
    break;
  default: __trap(); /* mdlrt_cred_run rejects unknown codes */
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
void mdlrt_cred_run(const CRed &r, int64_t skip) {
  if (r.what < CR_SUM || r.what > CR_DYXHAT)
    mdlrt_bad_code("per-channel reduction (what)", r.what, __FILE__, __LINE__);
  if (r.ep < EP_STORE || r.ep > EP_WGRAD)
    mdlrt_bad_code("per-channel reduction (epilogue)", r.ep, __FILE__,
                   __LINE__);
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

/* ---- bias gradients ----------------------------------------------------- */

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

/* db[c] (+)= sum of dy[outer, C, inner] over all but c. */
void mdlrt_chan_sum(const View &db, int accum, const View &dy, int64_t outer,
                    int64_t C, int64_t inner) {
  CRed r;
  memset(&r, 0, sizeof r);
  r.what = CR_SUM, r.ep = EP_STORE, r.a = dy, r.out0 = db, r.acc0 = accum;
  r.outer = outer, r.C = C, r.inner = inner;
  if (dy.contig) {
    mdlrt_cred_run(r, 0);
  } else {
    k_chan_sum<<<(unsigned)C, 256, 0, mdlrt_rt.stream>>>(db, accum, dy, outer,
                                                        C, inner);
    KERNEL_CHECK();
  }
}
