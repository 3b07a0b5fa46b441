/* runtime/mdlrt_softmax.cu: softmax over the last dim (causal: columns
 * past the row's index in the second-to-last dim masked), forward and
 * backward, a block a row.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdlrt_dev.cuh"

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
