/* runtime/mdlrt_loss.cu: the losses: cross_entropy (log-softmax rows, the
 * mean negative log-likelihood) and mse, forward and backward; the means
 * are sums in a fixed order (one block, or fixed partials in the
 * workspace), so deterministic.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdlrt_dev.cuh"

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
