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
  case CR_DYXRMS: {
    float d = ldf(r.a, off);
    s0 += d;
    s1 += d * ldf(r.b, off) * ldf(r.rstd, o);
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
  if (r.what < CR_SUM || r.what > CR_DYXRMS)
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
    s += ldv(dy, (o * N + c) * inner + h);
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

/* ---- mean and sum over one axis -------------------------------------------
 * x viewed as [outer, A, inner] (A: the axis' extent) reduces to y[outer,
 * inner]; output m = o inner + h. The axis splits into `chunks` equal
 * pieces (a function of the shapes and the workspace's size, never of the
 * GPU) so that every SM has work; with one chunk the kernel stores y, else
 * it writes partials [chunk][m] to the workspace and k_axis_fin adds each
 * output's partials in chunk order. Every sum is in f32 in a fixed order:
 *   inner == 1 (the last axis): a warp a (row, chunk); lane l sums the
 *     chunk's elements l, l + 32, ... in order, then a fixed xor tree;
 *   inner > 1 (a middle or the first axis): a block of 32 x 8 threads a
 *     (o, 32 columns h, chunk); thread (tx, ty) sums rows ty, ty + 8, ...
 *     of the chunk in order, then ty = 0 adds the 8 in order.
 * E.g. x[8, 1024, 768] over axis 1: outer 8, inner 768, 8 x 24 blocks a
 * chunk, 6 chunks of 171 rows. x is read through its strides (ldv). */
struct AxisGeo {
  int64_t outer, A, inner, M; /* M = outer inner outputs */
  int64_t chunks, achunk;     /* pieces of the axis, and their length */
  int mean;
};

__device__ __forceinline__ float axis_ld(const View &x, const AxisGeo &g,
                                         int64_t o, int64_t a, int64_t h) {
  return ldv(x, (o * g.A + a) * g.inner + h);
}

/* The total s of output m: stored (one chunk) or a partial. */
__device__ __forceinline__ void axis_out(const View &y, const AxisGeo &g,
                                         int64_t m, int64_t k, float s,
                                         float *part) {
  if (g.chunks > 1)
    part[k * g.M + m] = s;
  else
    stv(y, m, g.mean ? s / (float)g.A : s, 0);
}

__global__ void __launch_bounds__(256)
    k_axis_rows(View y, View x, AxisGeo g, float *part) {
  int lane = threadIdx.x & 31;
  int64_t units = g.outer * g.chunks;
  for (int64_t u = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
       u < units; u += ((int64_t)gridDim.x * blockDim.x) >> 5) {
    int64_t o = u / g.chunks, k = u - o * g.chunks;
    int64_t a0 = k * g.achunk, a1 = a0 + g.achunk < g.A ? a0 + g.achunk : g.A;
    float s = 0.0f;
    for (int64_t a = a0 + lane; a < a1; a += 32) s += axis_ld(x, g, o, a, 0);
    for (int d = 16; d > 0; d >>= 1) s += __shfl_xor_sync(0xffffffffu, s, d);
    if (lane == 0) axis_out(y, g, o, k, s, part);
  }
}

/* grid (outer * ceil(inner / 32), chunks), block (32, 8). */
__global__ void k_axis_cols(View y, View x, AxisGeo g, float *part) {
  __shared__ float sh[8][33];
  int64_t hb = (g.inner + 31) / 32;
  int64_t o = blockIdx.x / hb, h = (blockIdx.x - o * hb) * 32 + threadIdx.x;
  int64_t k = blockIdx.y, a0 = k * g.achunk;
  int64_t a1 = a0 + g.achunk < g.A ? a0 + g.achunk : g.A;
  float s = 0.0f;
  if (h < g.inner)
    for (int64_t a = a0 + threadIdx.y; a < a1; a += 8)
      s += axis_ld(x, g, o, a, h);
  sh[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y || h >= g.inner) return;
  for (int t = 1; t < 8; t++) s += sh[t][threadIdx.x];
  axis_out(y, g, o * g.inner + h, k, s, part);
}

__global__ void k_axis_fin(View y, AxisGeo g, const float *part) {
  GRID_LOOP(m, g.M) {
    float s = 0.0f;
    for (int64_t k = 0; k < g.chunks; k++) s += part[k * g.M + m];
    stv(y, m, g.mean ? s / (float)g.A : s, 0);
  }
}

/* dx (+)= dy[o, h] (/ A) at every (o, a, h). */
__global__ void k_axis_bwd(View dx, int accum, View dy, AxisGeo g) {
  GRID_LOOP(i, dx.n) {
    int64_t o = i / (g.A * g.inner), h = i % g.inner;
    float v = ldv(dy, o * g.inner + h);
    stv(dx, i, g.mean ? v / (float)g.A : v, accum);
  }
}

__global__ void k_axis_bwd_vec(View dx, int accum, View dy, AxisGeo g) {
  float f[8];
  VEC_LOOP(i, dx.n) {
    for (int k = 0; k < 8; k++) {
      int64_t j = i + k, o = j / (g.A * g.inner), h = j % g.inner;
      float v = ldv(dy, o * g.inner + h);
      f[k] = g.mean ? v / (float)g.A : v;
    }
    st8(dx, i, f, accum);
  }
  TAIL_LOOP(i, dx.n) {
    int64_t o = i / (g.A * g.inner), h = i % g.inner;
    float v = ldv(dy, o * g.inner + h);
    stf(dx, i, g.mean ? v / (float)g.A : v, accum);
  }
}

/* The geometry of x over `axis`; fails unless y (dy) has x's elements
 * without the axis. */
static AxisGeo axis_geo(const char *fn, int mean, const View &x, const View &y,
                        int axis) {
  if (axis < 0 || axis >= x.rank)
    mdlrt_fail("mdlrt", "reduce: the axis is not one of x's dims", fn,
               __FILE__, __LINE__);
  AxisGeo g;
  memset(&g, 0, sizeof g);
  g.outer = 1, g.inner = 1, g.A = x.dim[axis], g.mean = mean ? 1 : 0;
  for (int d = 0; d < x.rank; d++)
    if (d < axis) g.outer *= x.dim[d];
    else if (d > axis) g.inner *= x.dim[d];
  g.M = g.outer * g.inner;
  if (y.n != g.M)
    mdlrt_fail("mdlrt", "reduce: y (dy) does not have x's elements without "
               "the axis", fn, __FILE__, __LINE__);
  g.chunks = 1, g.achunk = g.A;
  return g;
}

void mdlrt_reduce_fwd(int mean, mdlrt_ref yr, mdlrt_ref xr, int axis) {
  View y = mdlrt_view(yr), x = mdlrt_view(xr);
  AxisGeo g = axis_geo("mdlrt_reduce_fwd", mean, x, y, axis);
  if (!g.M) return;
  int rows = g.inner == 1;
  /* chunks: ~8448 warps (rows) or ~1056 blocks (cols), each chunk at
   * least 1024 (rows) or 64 (cols) long; as many as the workspace holds */
  int64_t base = rows ? g.outer : g.outer * ((g.inner + 31) / 32);
  int64_t want = rows ? 8448 : 1056, least = rows ? 1024 : 64;
  int64_t chunks = (want + base - 1) / base, most = (g.A + least - 1) / least;
  if (chunks > most) chunks = most;
  if (chunks > 65535) chunks = 65535;
  int64_t room = mdlrt_rt.ws ? mdlrt_rt.ws_bytes / 4 : 0;
  if (chunks * g.M > room) chunks = room / g.M;
  if (chunks < 2) chunks = 1;
  g.achunk = (g.A + chunks - 1) / chunks;
  if (g.achunk < 1) g.achunk = 1;
  chunks = (g.A + g.achunk - 1) / g.achunk;
  g.chunks = chunks < 1 ? 1 : chunks;
  float *part = g.chunks > 1 ? (float *)mdlrt_rt.ws : NULL;
  if (rows) {
    int64_t blocks = (g.outer * g.chunks + 7) / 8;
    if (blocks > 65535 * 8) blocks = 65535 * 8;
    k_axis_rows<<<(unsigned)blocks, 256, 0, mdlrt_rt.stream>>>(y, x, g, part);
  } else {
    dim3 grid((unsigned)(g.outer * ((g.inner + 31) / 32)), (unsigned)g.chunks);
    k_axis_cols<<<grid, dim3(32, 8), 0, mdlrt_rt.stream>>>(y, x, g, part);
  }
  KERNEL_CHECK();
  if (g.chunks > 1) {
    k_axis_fin<<<grid_for(g.M), 256, 0, mdlrt_rt.stream>>>(y, g, part);
    KERNEL_CHECK();
  }
}

void mdlrt_reduce_bwd(int mean, mdlrt_ref dxr, int accum, mdlrt_ref dyr,
                      int axis) {
  View dx = mdlrt_view(dxr), dy = mdlrt_view(dyr);
  AxisGeo g = axis_geo("mdlrt_reduce_bwd", mean, dx, dy, axis);
  if (!dx.n) return;
  if (dx.contig && vec_ok(dx))
    k_axis_bwd_vec<<<vec_grid(dx.n), 256, 0, mdlrt_rt.stream>>>(dx, accum, dy,
                                                                g);
  else
    k_axis_bwd<<<grid_for(dx.n), 256, 0, mdlrt_rt.stream>>>(dx, accum, dy, g);
  KERNEL_CHECK();
}
