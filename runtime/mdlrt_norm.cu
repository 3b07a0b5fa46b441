/* runtime/mdlrt_norm.cu: the normalisations, forward and backward:
 * batchnorm (statistics per channel, running statistics), groupnorm
 * (instancenorm: G = C), layernorm and rmsnorm. Packed NCHW batchnorm and
 * groupnorm take fast paths (a warp a unit, partials in the workspace,
 * sums whose order depends on the shapes alone); the rest normalise rows,
 * a block a row; rmsnorm takes a warp a row. Statistics are f32; x, y, dx
 * may be 16-bit with f32 weights.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdlrt_dev.cuh"

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
  default:                                                                   \
    mdlrt_bad_code("norm fast path (dtype * 16 + width)", (dt) * 16 + (v),  \
                   __FILE__, __LINE__);                                      \
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
  for (int64_t j = threadIdx.x; j < m.L; j += blockDim.x) s += ldv(x, base + j);
  float mu = block_sum(s) / (float)m.L;
  float v = 0.0f;
  for (int64_t j = threadIdx.x; j < m.L; j += blockDim.x) {
    float d = ldv(x, base + j) - mu;
    v += d * d;
  }
  float rs = rsqrtf(block_sum(v) / (float)m.L + eps);
  if (threadIdx.x == 0) {
    stf(mean, r, mu, 0);
    stf(rstd, r, rs, 0);
  }
  for (int64_t j = threadIdx.x; j < m.L; j += blockDim.x) {
    float o = (ldv(x, base + j) - mu) * rs;
    if (w.p) {
      int64_t c = row_ch(m, r, j);
      o = o * ldf(w, c) + ldf(b, c);
    }
    stv(y, base + j, o, 0);
  }
}

/* dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy * w. */
__global__ void k_rownorm_bwd(View dx, int accum, View dy, View x, View mean,
                              View rstd, View w, RowMap m) {
  int64_t r = blockIdx.x, base = r * m.L;
  float mu = ldf(mean, r), rs = ldf(rstd, r);
  float sg = 0.0f, sgx = 0.0f;
  for (int64_t j = threadIdx.x; j < m.L; j += blockDim.x) {
    float g = ldv(dy, base + j) * (w.p ? ldf(w, row_ch(m, r, j)) : 1.0f);
    sg += g;
    sgx += g * (ldv(x, base + j) - mu) * rs;
  }
  sg = block_sum(sg) / (float)m.L;
  sgx = block_sum(sgx) / (float)m.L;
  for (int64_t j = threadIdx.x; j < m.L; j += blockDim.x) {
    float g = ldv(dy, base + j) * (w.p ? ldf(w, row_ch(m, r, j)) : 1.0f);
    float xh = (ldv(x, base + j) - mu) * rs;
    stv(dx, base + j, rs * (g - sg - xh * sgx), accum);
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
    float d = ldv(dy, r * m.L + col);
    sw += d * (ldv(x, r * m.L + col) - ldf(mean, r)) * ldf(rstd, r);
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
      mdlrt_cred_run(r, 0);
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
      s += ldv(x, ((e / HW) * C + c) * HW + e % HW);
    mu = block_sum(s) / (float)cnt;
    float v = 0.0f;
    for (int64_t e = threadIdx.x; e < cnt; e += blockDim.x) {
      float d = ldv(x, ((e / HW) * C + c) * HW + e % HW) - mu;
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
    stv(y, o, (ldv(x, o) - mu) * is * wc + bc, 0);
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
    float d = ldv(dy, o);
    sg += d;
    sgx += d * (ldv(x, o) - mu) * is;
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
    float xh = (ldv(x, o) - mu) * is;
    stv(dx, o, wc * is * (ldv(dy, o) - mg - xh * mgx), ax);
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
      mdlrt_cred_run(r, 0);
      r.what = CR_SQDEV, r.ep = EP_BN_VAR, r.mean = mdlrt_view(mean);
      r.out0 = mdlrt_view(invstd), r.rm = mdlrt_view(rmean);
      r.rv = mdlrt_view(rvar), r.eps = (float)eps;
      mdlrt_cred_run(r, 0);
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
    mdlrt_cred_run(r, 2 * C);
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

/* ---- rmsnorm: y = x rstd w over the last dim ----------------------------
 * Rows of D elements (x any strides; y, dy, dx too), rstd = 1/sqrt(mean
 * (x^2) + eps) saved in f32. A warp a row: lane l takes the row's groups
 * of 8 consecutive elements l, l + 32, l + 64, ... (the last group may be
 * short), sums in f32 in that order, then the lanes add in a fixed xor
 * tree. A group is one 16-byte load (two for f32) where every operand is
 * contiguous, 16-byte aligned and D % 8 == 0, else eight loads through
 * the strides; the order of the sums is the same either way, so the
 * results do not depend on alignment.
 *   forward: y = (x rstd) w.
 *   backward: g = dy w, S = sum g x; dx (+)= rstd (g - (x rstd) m) with
 *     m = rstd S / D (the mean of g xhat); dw (+)= sum over rows of dy x
 *     rstd, through the per-channel reductions (CR_DYXRMS, deterministic,
 *     partials in the workspace) where dy and x are contiguous, else a
 *     block a column. */

/* Group j0 / 8 of row r: 8 elements from element j0 (zeros past D). `vec`:
 * the contiguous 16-byte path (v's row at r D); else through the row's
 * offset `ro` and the last dim's stride `ls`. */
__device__ __forceinline__ void rms_ld(const View &v, int vec, int64_t r,
                                       int64_t ro, int64_t ls, int64_t j0,
                                       int64_t D, float *f) {
  if (vec) {
    ld8(v, r * D + j0, f);
    return;
  }
#pragma unroll
  for (int k = 0; k < 8; k++)
    f[k] = j0 + k < D ? ldf(v, ro + (j0 + k) * ls) : 0.0f;
}

__device__ __forceinline__ void rms_st(const View &v, int vec, int64_t r,
                                       int64_t ro, int64_t ls, int64_t j0,
                                       int64_t D, float *f, int accum) {
  if (vec) {
    st8(v, r * D + j0, f, accum);
    return;
  }
#pragma unroll
  for (int k = 0; k < 8; k++)
    if (j0 + k < D) stf(v, ro + (j0 + k) * ls, f[k], accum);
}

/* The last dim's stride, as the element offsets above use it. */
static int64_t last_stride(const View &v) {
  return v.contig ? 1 : v.st[v.rank - 1];
}

__device__ __forceinline__ float warp_sum(float s) {
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  return s;
}

/* y[rows, D] = x rstd w; rstd[r] saved. */
__global__ void __launch_bounds__(256)
    k_rms_fwd(View y, View rstd, View x, View w, int64_t rows, int64_t D,
              int64_t ysl, int64_t xsl, int64_t wsl, float eps, int vec) {
  int lane = threadIdx.x & 31;
  int64_t ngr = (D + 7) / 8;
  NG_WARPS_BEGIN(r, rows) {
    int64_t xo = vec ? 0 : vofs(x, r * D), yo = vec ? 0 : vofs(y, r * D);
    float ss = 0.0f, f[8], g[8];
    for (int64_t j = lane; j < ngr; j += 32) {
      rms_ld(x, vec, r, xo, xsl, 8 * j, D, f);
#pragma unroll
      for (int k = 0; k < 8; k++) ss = fmaf(f[k], f[k], ss);
    }
    float rs = rsqrtf(warp_sum(ss) / (float)D + eps);
    if (lane == 0) stv(rstd, r, rs, 0);
    for (int64_t j = lane; j < ngr; j += 32) {
      rms_ld(x, vec, r, xo, xsl, 8 * j, D, f);
      rms_ld(w, vec, 0, 0, wsl, 8 * j, D, g);
#pragma unroll
      for (int k = 0; k < 8; k++) f[k] = f[k] * rs * g[k];
      rms_st(y, vec, r, yo, ysl, 8 * j, D, f, 0);
    }
  }
}

/* dx[rows, D] (+)= rstd (g - x rstd m), g = dy w, m = rstd sum(g x) / D. */
__global__ void __launch_bounds__(256)
    k_rms_bwd(View dx, int ax, View dy, View x, View rstd, View w,
              int64_t rows, int64_t D, int64_t dxsl, int64_t dysl,
              int64_t xsl, int64_t wsl, int vec) {
  int lane = threadIdx.x & 31;
  int64_t ngr = (D + 7) / 8;
  NG_WARPS_BEGIN(r, rows) {
    int64_t xo = vec ? 0 : vofs(x, r * D), dyo = vec ? 0 : vofs(dy, r * D);
    int64_t dxo = vec ? 0 : vofs(dx, r * D);
    float rs = ldv(rstd, r), s = 0.0f;
    float f[8], g[8], wv[8];
    for (int64_t j = lane; j < ngr; j += 32) {
      rms_ld(dy, vec, r, dyo, dysl, 8 * j, D, g);
      rms_ld(x, vec, r, xo, xsl, 8 * j, D, f);
      rms_ld(w, vec, 0, 0, wsl, 8 * j, D, wv);
#pragma unroll
      for (int k = 0; k < 8; k++) s = fmaf(g[k] * wv[k], f[k], s);
    }
    float m = rs * warp_sum(s) / (float)D;
    for (int64_t j = lane; j < ngr; j += 32) {
      rms_ld(dy, vec, r, dyo, dysl, 8 * j, D, g);
      rms_ld(x, vec, r, xo, xsl, 8 * j, D, f);
      rms_ld(w, vec, 0, 0, wsl, 8 * j, D, wv);
#pragma unroll
      for (int k = 0; k < 8; k++) f[k] = rs * (g[k] * wv[k] - f[k] * rs * m);
      rms_st(dx, vec, r, dxo, dxsl, 8 * j, D, f, ax);
    }
  }
}

/* dw[j] (+)= sum over rows of dy x rstd, a block a column (any strides). */
__global__ void k_rms_wgrad(View dw, int aw, View dy, View x, View rstd,
                            int64_t rows, int64_t D) {
  int64_t j = blockIdx.x;
  float s = 0.0f;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x)
    s += ldv(dy, r * D + j) * ldv(x, r * D + j) * ldv(rstd, r);
  s = block_sum(s);
  if (threadIdx.x == 0) stv(dw, j, s, aw);
}

/* rows and D of x; fails unless y (dy, dx), w and rstd fit. */
static void rms_geo(const char *fn, const View &x, const View &y,
                    const View &w, const View &rstd, int64_t *rows,
                    int64_t *D) {
  if (x.rank < 1 || !x.dim[x.rank - 1] || y.n != x.n || y.rank < 1 ||
      y.dim[y.rank - 1] != x.dim[x.rank - 1] || w.n != x.dim[x.rank - 1] ||
      rstd.n * x.dim[x.rank - 1] != x.n)
    mdlrt_fail("mdlrt", "rmsnorm wants x[..., D], y (dy, dx) of x's shape, "
               "w[D] and rstd of x's rows", fn, __FILE__, __LINE__);
  *D = x.dim[x.rank - 1];
  *rows = x.n / *D;
}

void mdlrt_rmsnorm_fwd(mdlrt_ref yr, mdlrt_ref rr, mdlrt_ref xr, mdlrt_ref wr,
                       double eps) {
  View y = mdlrt_view(yr), rstd = mdlrt_view(rr), x = mdlrt_view(xr);
  View w = mdlrt_view(wr);
  int64_t rows, D;
  rms_geo("mdlrt_rmsnorm_fwd", x, y, w, rstd, &rows, &D);
  if (!rows) return;
  int vec = D % 8 == 0 && x.contig && y.contig && w.contig && vec_ok(x) &&
            vec_ok(y) && vec_ok(w);
  k_rms_fwd<<<ng_grid(rows), 256, 0, mdlrt_rt.stream>>>(
      y, rstd, x, w, rows, D, last_stride(y), last_stride(x), last_stride(w),
      (float)eps, vec);
  KERNEL_CHECK();
}

void mdlrt_rmsnorm_bwd(mdlrt_ref dxr, int ax, mdlrt_ref dwr, int aw,
                       mdlrt_ref dyr, mdlrt_ref xr, mdlrt_ref rr,
                       mdlrt_ref wr) {
  View dy = mdlrt_view(dyr), x = mdlrt_view(xr), rstd = mdlrt_view(rr);
  View w = mdlrt_view(wr), dx = mdlrt_view(dxr), dw = mdlrt_view(dwr);
  int64_t rows, D;
  rms_geo("mdlrt_rmsnorm_bwd", x, dy, w, rstd, &rows, &D);
  if (dx.p && (dx.n != x.n || dx.rank < 1 || dx.dim[dx.rank - 1] != D))
    mdlrt_fail("mdlrt", "rmsnorm: dx is not of x's shape",
               "mdlrt_rmsnorm_bwd", __FILE__, __LINE__);
  if (dw.p && dw.n != D)
    mdlrt_fail("mdlrt", "rmsnorm: dw is not w[D]", "mdlrt_rmsnorm_bwd",
               __FILE__, __LINE__);
  if (!rows) return; /* (dw of no rows: left as it is) */
  if (dx.p) {
    int vec = D % 8 == 0 && dx.contig && dy.contig && x.contig && w.contig &&
              vec_ok(dx) && vec_ok(dy) && vec_ok(x) && vec_ok(w);
    k_rms_bwd<<<ng_grid(rows), 256, 0, mdlrt_rt.stream>>>(
        dx, ax, dy, x, rstd, w, rows, D, last_stride(dx), last_stride(dy),
        last_stride(x), last_stride(w), vec);
    KERNEL_CHECK();
  }
  if (!dw.p) return;
  if (dy.contig && x.contig && dw.contig && rstd.contig) {
    CRed r;
    memset(&r, 0, sizeof r);
    r.what = CR_DYXRMS, r.ep = EP_WGRAD, r.a = dy, r.b = x, r.rstd = rstd;
    r.outer = rows, r.C = D, r.inner = 1;
    r.out0 = dw, r.acc0 = aw;
    mdlrt_cred_run(r, 0);
  } else {
    k_rms_wgrad<<<(unsigned)D, 256, 0, mdlrt_rt.stream>>>(dw, aw, dy, x, rstd,
                                                          rows, D);
    KERNEL_CHECK();
  }
}
