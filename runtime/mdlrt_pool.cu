/* runtime/mdlrt_pool.cu: max and average pooling (NCHW, contiguous),
 * forward and backward, and global average pooling. Max pooling's backward
 * sends dy to each window's first maximum (PyTorch's choice on ties) by
 * three paths that agree bit for bit: tiles staged in shared memory, the
 * window arguments in the workspace, or a plain gather.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdlrt_dev.cuh"

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
