/* runtime/mdlrt_scan.cu: the state-space ops of Mamba: the selective scan
 * (S6), forward and backward, and conv1d (docs/scan.md).
 *
 * The scan is N*D*S independent scalar recurrences over L steps,
 *     h_t = a_t h_{t-1} + u_t,  a_t = exp(dt_t A),  u_t = dt_t b_t x_t,
 * read out as y_t = sum_s c_t h_t + Dskip x_t, with the adjoint
 *     g_t = c_t dy_t + a_{t+1} g_{t+1}
 * for the backward. The parallelism is over (n, d, s); each thread keeps a
 * few states in registers and walks the sequence in sub-chunks staged in
 * shared memory. Sums over s (y, dx, ddt) stay inside a block that holds all
 * S states of a few channels ("DS" kernels); sums over d (db, dc) inside a
 * block that holds all D channels of a few states ("SD" kernel), so no sum
 * ever crosses blocks and every result is bit-identical from run to run.
 *
 * The backward needs h_{t-1} and g_t together at every t. It stores the
 * states at every chunk boundary (T1 steps) into the workspace, then walks
 * the chunks in reverse: each chunk's states are recomputed from its
 * checkpoint, once to find the sub-chunk starts (kept in shared memory),
 * and once per sub-chunk (T2 steps) keeping h and a in registers, against
 * which the adjoint runs backwards. The adjoint's carry at each chunk
 * boundary is stored too, so the SD kernel runs every chunk independently.
 * dA_log and dDskip are per-sequence partials in the workspace, summed over
 * the batch in order by a last kernel. If the checkpoints do not fit the
 * workspace the batch is processed in slices; if one sequence does not fit,
 * the op says so and exits 1.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdlrt_dev.cuh"

#define LOG2E 1.4426950408889634f
#define LN2 0.69314718055994531f
#define FULL 0xffffffffu

/* A tensor of rank <= 3 as these kernels see it: its first element, dtype
 * and the element stride of each dim (s0 the outermost). */
struct TV {
  char *p;          /* first element; NULL: absent */
  int dt;           /* MDLRT_F32, F16 or BF16 */
  int64_t s0, s1, s2;
};

static TV tv(mdlrt_ref r) {
  View v = mdlrt_view(r);
  TV t;
  memset(&t, 0, sizeof t);
  t.p = v.p, t.dt = v.dt;
  if (v.rank > 0) t.s0 = v.st[0];
  if (v.rank > 1) t.s1 = v.st[1];
  if (v.rank > 2) t.s2 = v.st[2];
  return t;
}

__device__ __forceinline__ float ld(const TV &v, int64_t o) {
  switch (v.dt) {
  case MDLRT_F16: return __half2float(((const __half *)v.p)[o]);
  case MDLRT_BF16: return __bfloat162float(((const __nv_bfloat16 *)v.p)[o]);
  default: return ((const float *)v.p)[o];
  }
}

__device__ __forceinline__ void st(const TV &v, int64_t o, float x,
                                   int accum) {
  if (accum) x += ld(v, o);
  switch (v.dt) {
  case MDLRT_F16: ((__half *)v.p)[o] = __float2half(x); break;
  case MDLRT_BF16: ((__nv_bfloat16 *)v.p)[o] = __float2bfloat16(x); break;
  default: ((float *)v.p)[o] = x; break;
  }
}

__device__ __forceinline__ int64_t at3(const TV &v, int64_t n, int64_t i,
                                       int64_t t) {
  return n * v.s0 + i * v.s1 + t * v.s2;
}

/* G consecutive floats from shared memory (16-byte aligned when G >= 4). */
template <int G>
__device__ __forceinline__ void ld_g(float *v, const float *p) {
  if (G % 4 == 0) {
#pragma unroll
    for (int j = 0; j < G; j += 4) {
      float4 q = *(const float4 *)(p + j);
      v[j] = q.x, v[j + 1] = q.y, v[j + 2] = q.z, v[j + 3] = q.w;
    }
  } else if (G == 2) {
    float2 q = *(const float2 *)p;
    v[0] = q.x, v[1] = q.y;
  } else {
#pragma unroll
    for (int j = 0; j < G; j++) v[j] = p[j];
  }
}

/* ---- selective scan: what every kernel is given ------------------------ */

struct ScanArgs {
  TV x, dt, b, c, dy;     /* x, dt, dy [N, D, L]; b, c [N, S, L] */
  TV Al, Ds;              /* A_log [D, S], Dskip [D] (f32) */
  TV y, dx, ddt, db, dc;  /* outputs; p NULL: not wanted */
  int ax, adt, ab, ac;    /* accumulate into dx, ddt, db, dc */
  int64_t D, S, L;
  int SP;                 /* S rounded up to a power of two */
  int R, DT;              /* DS kernels: lanes per channel, channels a block */
  int64_t n0, nn;         /* the batch slice [n0, n0 + nn) */
  int64_t T1, nck;        /* chunk length and count (backward) */
  int K;                  /* sub-chunks a chunk (k_scan_dx) */
  float *hck;             /* [nck-1][nn][D][SP]: h entering chunk j+1 */
  float *qck;             /* [nck-1][nn][D][SP]: a g entering chunk j */
  float *partA;           /* [nn][D][SP]: sum over t of dt a g h_{t-1} */
  float *partD;           /* [nn][D]: sum over t of dy x */
};

/* The DS kernels: a block is (sequence nl, DT channels), thread tid is
 * channel dl = tid / R and states sl*G .. sl*G+G-1 (sl = tid % R, R*G =
 * SP), so the R lanes of a channel are adjacent in a warp.
 *
 * k_scan_fwd: mode 0 writes y; mode 1 writes nothing but the checkpoints
 * hck (the backward's first pass). Sub-chunks of TS = 32 steps: b (and c)
 * staged as [TS][SP+4] (G floats of a thread contiguous), dt and x as
 * [DT][TS+1]; y by a butterfly over the R lanes. Steps past L read zeros:
 * a = 1, u = 0, so the state stands still. */
enum { FWD_TS = 32 };

static size_t fwd_smem(int SP, int DT) {
  return (size_t)(2 * FWD_TS * (SP + 4) + 3 * DT * (FWD_TS + 1)) * 4;
}

template <int G>
__global__ void __launch_bounds__(256) k_scan_fwd(ScanArgs a, int mode) {
  extern __shared__ float sm[];
  const int TS = FWD_TS, TSP = TS + 1;
  const int R = a.R, DT = a.DT, SP = a.SP, SPP = SP + 4;
  float *bs = sm, *cs = bs + TS * SPP;       /* [TS][SPP] */
  float *dts = cs + TS * SPP, *xs = dts + DT * TSP, *ys = xs + DT * TSP;
  const int tid = threadIdx.x, BD = blockDim.x, dl = tid / R, sl = tid % R;
  const int64_t nl = blockIdx.y, n = a.n0 + nl;
  const int64_t d0 = (int64_t)blockIdx.x * DT, d = d0 + dl;
  const bool dok = d < a.D;
  float A2[G], h[G]; /* A log2(e), so a = exp2(dt A2) */
#pragma unroll
  for (int j = 0; j < G; j++) {
    int64_t s = sl * G + j;
    A2[j] = dok && s < a.S ? -expf(ld(a.Al, d * a.Al.s0 + s * a.Al.s1)) * LOG2E
                           : 0.0f;
    h[j] = 0.0f;
  }
  const float Dv = mode == 0 && dok ? ld(a.Ds, d * a.Ds.s0) : 0.0f;
  const int64_t slot = a.nn * a.D * SP, ckrow = (nl * a.D + d) * SP + sl * G;
  int64_t next = a.T1; /* mode 1: the next chunk boundary */
  for (int64_t t0 = 0; t0 < a.L; t0 += TS) {
    __syncthreads();
    for (int e = tid; e < SP * TS; e += BD) {
      int s = e / TS, i = e % TS;
      int64_t t = t0 + i;
      bool ok = s < a.S && t < a.L;
      bs[i * SPP + s] = ok ? ld(a.b, at3(a.b, n, s, t)) : 0.0f;
      if (mode == 0) cs[i * SPP + s] = ok ? ld(a.c, at3(a.c, n, s, t)) : 0.0f;
    }
    for (int e = tid; e < DT * TS; e += BD) {
      int dd = e / TS, i = e % TS;
      int64_t t = t0 + i, d2 = d0 + dd;
      bool ok = d2 < a.D && t < a.L;
      dts[dd * TSP + i] = ok ? ld(a.dt, at3(a.dt, n, d2, t)) : 0.0f;
      xs[dd * TSP + i] = ok ? ld(a.x, at3(a.x, n, d2, t)) : 0.0f;
    }
    __syncthreads();
#pragma unroll 2
    for (int i = 0; i < TS; i++) {
      float dtv = dts[dl * TSP + i], xv = xs[dl * TSP + i], dtx = dtv * xv;
      float bv[G];
      ld_g<G>(bv, bs + i * SPP + sl * G);
#pragma unroll
      for (int j = 0; j < G; j++)
        h[j] = fmaf(exp2f(dtv * A2[j]), h[j], dtx * bv[j]);
      if (mode == 0) {
        float cv[G], p = 0.0f;
        ld_g<G>(cv, cs + i * SPP + sl * G);
#pragma unroll
        for (int j = 0; j < G; j++) p = fmaf(cv[j], h[j], p);
        for (int off = R >> 1; off > 0; off >>= 1)
          p += __shfl_xor_sync(FULL, p, off);
        if (sl == 0) ys[dl * TSP + i] = fmaf(Dv, xv, p);
      } else if (t0 + i + 1 == next) {
        if (next < a.L && dok) {
          float *o = a.hck + (next / a.T1 - 1) * slot + ckrow;
#pragma unroll
          for (int j = 0; j < G; j++) o[j] = h[j];
        }
        next += a.T1;
      }
    }
    if (mode == 0) {
      __syncthreads();
      for (int e = tid; e < DT * TS; e += BD) {
        int dd = e / TS, i = e % TS;
        int64_t t = t0 + i, d2 = d0 + dd;
        if (d2 < a.D && t < a.L)
          st(a.y, at3(a.y, n, d2, t), ys[dd * TSP + i], 0);
      }
    }
  }
}

/* Stages steps [tk, tk + T) of a DS block: b, c as [T][SP+4] (c if
 * want_c), dt, x, dy as [DT][T+1] (dy if want_c); zeros past L. */
__device__ __forceinline__ void ds_stage(const ScanArgs &a, int T, int64_t n,
                                         int64_t d0, int64_t tk, float *bs,
                                         float *cs, float *dts, float *xs,
                                         float *dys, int want_c) {
  const int tid = threadIdx.x, BD = blockDim.x, SPP = a.SP + 4, TP = T + 1;
  for (int e = tid; e < a.SP * T; e += BD) {
    int s = e / T, i = e % T;
    int64_t t = tk + i;
    bool ok = s < a.S && t < a.L;
    bs[i * SPP + s] = ok ? ld(a.b, at3(a.b, n, s, t)) : 0.0f;
    if (want_c) cs[i * SPP + s] = ok ? ld(a.c, at3(a.c, n, s, t)) : 0.0f;
  }
  for (int e = tid; e < a.DT * T; e += BD) {
    int dd = e / T, i = e % T;
    int64_t t = tk + i, d2 = d0 + dd;
    bool ok = d2 < a.D && t < a.L;
    dts[dd * TP + i] = ok ? ld(a.dt, at3(a.dt, n, d2, t)) : 0.0f;
    xs[dd * TP + i] = ok ? ld(a.x, at3(a.x, n, d2, t)) : 0.0f;
    if (want_c) dys[dd * TP + i] = ok ? ld(a.dy, at3(a.dy, n, d2, t)) : 0.0f;
  }
}

/* k_scan_dx: dx, ddt, and the per-sequence partials of dA and dDskip; the
 * adjoint carry at each chunk boundary into qck. Chunks in reverse; in
 * each, a sweep from the checkpoint stores the K sub-chunk starts in shared
 * memory, then sub-chunks in reverse: T2 = 32/G steps forward keeping
 * h_{t-1} and a_t in registers (2*32 floats), then back:
 *   g = c dy + q;  w += g b;  z += A a g h_{t-1};  dA += dt a g h_{t-1};
 *   q = a g
 * w and z (sums over s) through shared memory, one row of R lanes each,
 * summed in order; dx = dt w + Dskip dy, ddt = x w + z.
 * Shared: sub [K][BD][G], b c [T2][SP+4], dt x dy [DT][T2+1],
 * red [2][T2][DT*(R+1)+1], out [2][DT][T2]. */
static size_t dx_smem(int SP, int DT, int R, int BD, int G, int K) {
  int T2 = 32 / G;
  return (size_t)(K * BD * G + 2 * T2 * (SP + 4) + 3 * DT * (T2 + 1) +
                  2 * T2 * (DT * (R + 1) + 1) + 2 * DT * T2) * 4;
}

template <int G>
__global__ void __launch_bounds__(256) k_scan_dx(ScanArgs a) {
  constexpr int T2 = 32 / G, TP = T2 + 1;
  extern __shared__ float sm[];
  const int R = a.R, DT = a.DT, SP = a.SP, SPP = SP + 4, K = a.K;
  const int tid = threadIdx.x, BD = blockDim.x, dl = tid / R, sl = tid % R;
  const int RP = R + 1, RL = DT * RP + 1;
  float *sub = sm;                        /* [K][BD][G] */
  float *bs = sub + K * BD * G, *cs = bs + T2 * SPP;
  float *dts = cs + T2 * SPP, *xs = dts + DT * TP, *dys = xs + DT * TP;
  float *red = dys + DT * TP;             /* [2][T2][RL] */
  float *outw = red + 2 * T2 * RL, *outz = outw + DT * T2;
  const int64_t nl = blockIdx.y, n = a.n0 + nl;
  const int64_t d0 = (int64_t)blockIdx.x * DT, d = d0 + dl;
  const bool dok = d < a.D;
  float A2[G], h[G], q[G], gA[G], gD = 0.0f;
#pragma unroll
  for (int j = 0; j < G; j++) {
    int64_t s = sl * G + j;
    A2[j] = dok && s < a.S ? -expf(ld(a.Al, d * a.Al.s0 + s * a.Al.s1)) * LOG2E
                           : 0.0f;
    q[j] = 0.0f, gA[j] = 0.0f;
  }
  const int64_t slot = a.nn * a.D * SP, ckrow = (nl * a.D + d) * SP + sl * G;
  for (int64_t J = a.nck - 1; J >= 0; J--) {
    const int64_t t0 = J * a.T1, t1 = min(a.L, t0 + a.T1);
    const int KJ = (int)((t1 - t0 + T2 - 1) / T2);
#pragma unroll
    for (int j = 0; j < G; j++)
      h[j] = J > 0 && dok ? a.hck[(J - 1) * slot + ckrow + j] : 0.0f;
    /* the sweep: sub[k] = the state entering sub-chunk k */
    for (int k = 0; k < KJ; k++) {
#pragma unroll
      for (int j = 0; j < G; j++) sub[(k * BD + tid) * G + j] = h[j];
      if (k == KJ - 1) break;
      __syncthreads();
      ds_stage(a, T2, n, d0, t0 + (int64_t)k * T2, bs, cs, dts, xs, dys, 0);
      __syncthreads();
#pragma unroll
      for (int i = 0; i < T2; i++) {
        float dtv = dts[dl * TP + i], dtx = dtv * xs[dl * TP + i];
        float bv[G];
        ld_g<G>(bv, bs + i * SPP + sl * G);
#pragma unroll
        for (int j = 0; j < G; j++)
          h[j] = fmaf(exp2f(dtv * A2[j]), h[j], dtx * bv[j]);
      }
    }
    /* sub-chunks in reverse */
    for (int k = KJ - 1; k >= 0; k--) {
      const int64_t tk = t0 + (int64_t)k * T2;
#pragma unroll
      for (int j = 0; j < G; j++) h[j] = sub[(k * BD + tid) * G + j];
      __syncthreads();
      ds_stage(a, T2, n, d0, tk, bs, cs, dts, xs, dys, 1);
      __syncthreads();
      float hh[T2][G], aa[T2][G]; /* h_{t-1} and a_t of the sub-chunk */
#pragma unroll
      for (int i = 0; i < T2; i++) {
        float dtv = dts[dl * TP + i], dtx = dtv * xs[dl * TP + i];
        float bv[G];
        ld_g<G>(bv, bs + i * SPP + sl * G);
#pragma unroll
        for (int j = 0; j < G; j++) {
          hh[i][j] = h[j];
          aa[i][j] = exp2f(dtv * A2[j]);
          h[j] = fmaf(aa[i][j], h[j], dtx * bv[j]);
        }
      }
#pragma unroll
      for (int i = T2 - 1; i >= 0; i--) {
        float dtv = dts[dl * TP + i], xv = xs[dl * TP + i];
        float dyv = dys[dl * TP + i];
        float bv[G], cv[G], wp = 0.0f, zp = 0.0f;
        ld_g<G>(bv, bs + i * SPP + sl * G);
        ld_g<G>(cv, cs + i * SPP + sl * G);
#pragma unroll
        for (int j = 0; j < G; j++) {
          float g = fmaf(cv[j], dyv, q[j]);
          float e = aa[i][j] * g * hh[i][j];
          wp = fmaf(g, bv[j], wp);
          zp = fmaf(A2[j], e, zp);
          gA[j] = fmaf(dtv, e, gA[j]);
          q[j] = aa[i][j] * g;
        }
        red[i * RL + dl * RP + sl] = wp;
        red[(T2 + i) * RL + dl * RP + sl] = zp;
        if (sl == 0) gD = fmaf(dyv, xv, gD);
      }
      __syncthreads();
      /* rows: (which, channel, step), step fastest; each sums its R lanes */
      for (int r = tid; r < 2 * DT * T2; r += BD) {
        int which = r / (DT * T2), rem = r % (DT * T2);
        int dd = rem / T2, i = rem % T2;
        const float *row = red + (which * T2 + i) * RL + dd * RP;
        float s = 0.0f;
        for (int e = 0; e < R; e++) s += row[e];
        (which ? outz : outw)[rem] = s;
      }
      __syncthreads();
      for (int e = tid; e < DT * T2; e += BD) {
        int dd = e / T2, i = e % T2;
        int64_t d2 = d0 + dd, t = tk + i;
        if (d2 >= a.D || t >= a.L) continue;
        float w = outw[e];
        if (a.dx.p)
          st(a.dx, at3(a.dx, n, d2, t),
             fmaf(dts[dd * TP + i], w,
                  ld(a.Ds, d2 * a.Ds.s0) * dys[dd * TP + i]),
             a.ax);
        if (a.ddt.p)
          st(a.ddt, at3(a.ddt, n, d2, t),
             fmaf(xs[dd * TP + i], w, outz[e] * LN2), a.adt);
      }
    }
    if (J > 0 && a.qck && dok) {
#pragma unroll
      for (int j = 0; j < G; j++) a.qck[(J - 1) * slot + ckrow + j] = q[j];
    }
  }
  if (dok) {
#pragma unroll
    for (int j = 0; j < G; j++) a.partA[(nl * a.D + d) * SP + sl * G + j] = gA[j];
    if (sl == 0) a.partD[nl * a.D + d] = gD;
  }
}

/* k_scan_sd: db and dc. A block is (ST states, chunk J, sequence nl) and
 * holds all D channels: thread tid is state sl = tid % ST and channels
 * dg*DG .. dg*DG+DG-1 (dg = tid / ST). From the chunk's checkpoint,
 * forward:  h = a h + u;  dc += dy h;
 * from its carry, backward:  g = c dy + q;  db += g dt x;  q = a g.
 * The sums over d: within the thread (DG channels), across the warp's
 * channel groups by shuffles, across warps through shared memory, in
 * order. Sub-chunks of TC steps (8, fewer if D is large): dt, dt x, dy
 * staged as [TC][DP+4], b or c as [TC][ST], the warps' sums as
 * [TC][ST][NW]. */
static size_t sd_smem(int TC, int DP, int ST, int NW) {
  return (size_t)(3 * TC * (DP + 4) + TC * ST + TC * ST * NW) * 4;
}

__device__ __forceinline__ void sd_stage(const ScanArgs &a, int TC, int ST,
                                         int DP, int64_t n, int64_t s0,
                                         int64_t tc,
                                         int64_t t1, const TV &bc, float *dts,
                                         float *dtxs, float *dys, float *bcs) {
  const int tid = threadIdx.x, BD = blockDim.x, DPP = DP + 4;
  for (int e = tid; e < DP * TC; e += BD) {
    int dd = e / TC, i = e % TC;
    int64_t t = tc + i;
    bool ok = dd < a.D && t < t1;
    float dtv = ok ? ld(a.dt, at3(a.dt, n, dd, t)) : 0.0f;
    float xv = ok ? ld(a.x, at3(a.x, n, dd, t)) : 0.0f;
    dts[i * DPP + dd] = dtv;
    dtxs[i * DPP + dd] = dtv * xv;
    dys[i * DPP + dd] = ok ? ld(a.dy, at3(a.dy, n, dd, t)) : 0.0f;
  }
  for (int e = tid; e < ST * TC; e += BD) {
    int s = e / TC, i = e % TC;
    int64_t t = tc + i;
    bool ok = s0 + s < a.S && t < t1;
    bcs[i * ST + s] = ok ? ld(bc, at3(bc, n, s0 + s, t)) : 0.0f;
  }
}

template <int ST, int DG>
__global__ void __launch_bounds__(512) k_scan_sd(ScanArgs a, int DP, int TC) {
  extern __shared__ float sm[];
  const int DPP = DP + 4, BD = blockDim.x, NW = BD / 32;
  float *dts = sm, *dtxs = dts + TC * DPP, *dys = dtxs + TC * DPP;
  float *bcs = dys + TC * DPP, *redw = bcs + TC * ST;
  const int tid = threadIdx.x, sl = tid % ST, dg = tid / ST;
  const int lane = tid & 31, warp = tid >> 5;
  const int64_t s0 = (int64_t)blockIdx.x * ST, s = s0 + sl, J = blockIdx.y;
  const int64_t nl = blockIdx.z, n = a.n0 + nl;
  const int64_t t0 = J * a.T1, t1 = min(a.L, t0 + a.T1);
  const bool sok = s < a.S;
  const int64_t slot = a.nn * a.D * a.SP;
  float A2[DG], v[DG];
#pragma unroll
  for (int j = 0; j < DG; j++) {
    int64_t d = (int64_t)dg * DG + j;
    A2[j] = sok && d < a.D
                ? -expf(ld(a.Al, d * a.Al.s0 + s * a.Al.s1)) * LOG2E
                : 0.0f;
  }
  if (a.dc.p) { /* forward: v = h */
#pragma unroll
    for (int j = 0; j < DG; j++) {
      int64_t d = (int64_t)dg * DG + j;
      v[j] = J > 0 && sok && d < a.D
                 ? a.hck[(J - 1) * slot + (nl * a.D + d) * a.SP + s]
                 : 0.0f;
    }
    for (int64_t tc = t0; tc < t1; tc += TC) {
      __syncthreads();
      sd_stage(a, TC, ST, DP, n, s0, tc, t1, a.b, dts, dtxs, dys, bcs);
      __syncthreads();
      for (int i = 0; i < TC; i++) {
        const float *dr = dts + i * DPP + dg * DG;
        const float *xr = dtxs + i * DPP + dg * DG;
        const float *yr = dys + i * DPP + dg * DG;
        float bv = bcs[i * ST + sl], p = 0.0f;
#pragma unroll
        for (int j = 0; j < DG; j += 4) {
          float4 d4 = *(const float4 *)(dr + j), x4 = *(const float4 *)(xr + j);
          float4 y4 = *(const float4 *)(yr + j);
          float dd[4] = {d4.x, d4.y, d4.z, d4.w}, xx[4] = {x4.x, x4.y, x4.z, x4.w};
          float yy[4] = {y4.x, y4.y, y4.z, y4.w};
#pragma unroll
          for (int k = 0; k < 4; k++) {
            v[j + k] = fmaf(exp2f(dd[k] * A2[j + k]), v[j + k], xx[k] * bv);
            p = fmaf(yy[k], v[j + k], p);
          }
        }
        for (int off = ST; off < 32; off <<= 1)
          p += __shfl_xor_sync(FULL, p, off);
        if (lane < ST) redw[(i * ST + sl) * NW + warp] = p;
      }
      __syncthreads();
      for (int e = tid; e < ST * TC; e += BD) {
        int s2 = e / TC, i = e % TC;
        int64_t t = tc + i;
        if (s0 + s2 >= a.S || t >= t1) continue;
        float sum = 0.0f;
        for (int w = 0; w < NW; w++) sum += redw[(i * ST + s2) * NW + w];
        st(a.dc, at3(a.dc, n, s0 + s2, t), sum, a.ac);
      }
    }
  }
  if (a.db.p) { /* backward: v = q */
#pragma unroll
    for (int j = 0; j < DG; j++) {
      int64_t d = (int64_t)dg * DG + j;
      v[j] = J < a.nck - 1 && sok && d < a.D
                 ? a.qck[J * slot + (nl * a.D + d) * a.SP + s]
                 : 0.0f;
    }
    for (int64_t tc = t0 + (t1 - t0 - 1) / TC * TC; tc >= t0; tc -= TC) {
      __syncthreads();
      sd_stage(a, TC, ST, DP, n, s0, tc, t1, a.c, dts, dtxs, dys, bcs);
      __syncthreads();
      for (int i = TC - 1; i >= 0; i--) {
        const float *dr = dts + i * DPP + dg * DG;
        const float *xr = dtxs + i * DPP + dg * DG;
        const float *yr = dys + i * DPP + dg * DG;
        float cv = bcs[i * ST + sl], p = 0.0f;
#pragma unroll
        for (int j = 0; j < DG; j += 4) {
          float4 d4 = *(const float4 *)(dr + j), x4 = *(const float4 *)(xr + j);
          float4 y4 = *(const float4 *)(yr + j);
          float dd[4] = {d4.x, d4.y, d4.z, d4.w}, xx[4] = {x4.x, x4.y, x4.z, x4.w};
          float yy[4] = {y4.x, y4.y, y4.z, y4.w};
#pragma unroll
          for (int k = 0; k < 4; k++) {
            float g = fmaf(cv, yy[k], v[j + k]);
            p = fmaf(g, xx[k], p);
            v[j + k] = exp2f(dd[k] * A2[j + k]) * g;
          }
        }
        for (int off = ST; off < 32; off <<= 1)
          p += __shfl_xor_sync(FULL, p, off);
        if (lane < ST) redw[(i * ST + sl) * NW + warp] = p;
      }
      __syncthreads();
      for (int e = tid; e < ST * TC; e += BD) {
        int s2 = e / TC, i = e % TC;
        int64_t t = tc + i;
        if (s0 + s2 >= a.S || t >= t1) continue;
        float sum = 0.0f;
        for (int w = 0; w < NW; w++) sum += redw[(i * ST + s2) * NW + w];
        st(a.db, at3(a.db, n, s0 + s2, t), sum, a.ab);
      }
    }
  }
}

/* dA_log (+)= A * (sum over the slice's sequences of partA), in order;
 * dDskip (+)= sum of partD. */
__global__ void k_scan_params(ScanArgs a, TV dA, int aA, TV dD, int aD) {
  if (dA.p) {
    GRID_LOOP(i, a.D * a.S) {
      int64_t d = i / a.S, s = i % a.S;
      float sum = 0.0f;
      for (int64_t nl = 0; nl < a.nn; nl++)
        sum += a.partA[(nl * a.D + d) * a.SP + s];
      float A = -expf(ld(a.Al, d * a.Al.s0 + s * a.Al.s1));
      st(dA, d * dA.s0 + s * dA.s1, A * sum, aA);
    }
  }
  if (dD.p) {
    GRID_LOOP(d, a.D) {
      float sum = 0.0f;
      for (int64_t nl = 0; nl < a.nn; nl++) sum += a.partD[nl * a.D + d];
      st(dD, d * dD.s0, sum, aD);
    }
  }
}

/* ---- selective scan: the host side ------------------------------------- */

/* An unsupported size or a workspace too small: a message, exit 1. */
[[noreturn]] static void scan_limit(const char *msg) {
  fprintf(stderr, "mdlrt: %s (in op %s)\n", msg,
          mdlrt_rt.op ? mdlrt_rt.op : "?");
  exit(1);
}

/* Operands of the wrong rank, shape or dtype: an internal error (exit 3). */
static void need_shape(const char *what, mdlrt_ref r, int rank, int64_t a,
                       int64_t b, int64_t c) {
  if (!r.base) return;
  const mdlrt_tensor *t = r.t;
  int64_t want[3] = {a, b, c};
  int ok = t->rank == rank &&
           (t->dt == MDLRT_F32 || t->dt == MDLRT_F16 || t->dt == MDLRT_BF16);
  for (int d = 0; ok && d < rank; d++) ok = t->dim[d] == want[d];
  if (!ok) {
    char m[160];
    int k = snprintf(m, sizeof m, "%s: wanted a float tensor [", what);
    for (int d = 0; d < rank; d++)
      k += snprintf(m + k, sizeof m - k, d ? ", %lld" : "%lld",
                    (long long)want[d]);
    snprintf(m + k, sizeof m - k, "]");
    mdlrt_fail("mdlrt", "bad operand", m, __FILE__, __LINE__);
  }
}

static int pow2_at_least(int64_t x) {
  int p = 1;
  while (p < x) p <<= 1;
  return p;
}

/* The shape of the problem and every choice that follows from it. */
typedef struct {
  int64_t N, D, S, L;
  int SP;          /* S up to a power of two (<= 256) */
  int Gf, Rf, DTf; /* k_scan_fwd: states a thread, lanes, channels */
  int Gb, Rb, DTb; /* k_scan_dx, T2 = 32 / Gb */
  int Kmax;        /* sub-chunks a chunk at most (k_scan_dx's shared) */
  int ST, DG, NDG; /* k_scan_sd: states, channels a thread, groups */
} ScanPlan;

/* DS kernels: 256 threads, fewer channels if D is small. */
static int ds_channels(int R, int64_t D) {
  int DT = 256 / R;
  while (DT > 1 && DT / 2 >= D && (DT / 2) * R >= 32) DT /= 2;
  return DT;
}

static ScanPlan scan_plan(int64_t N, int64_t D, int64_t S, int64_t L) {
  ScanPlan p;
  memset(&p, 0, sizeof p);
  p.N = N, p.D = D, p.S = S, p.L = L;
  if (S < 1 || S > 256) {
    char m[96];
    snprintf(m, sizeof m, "selective_scan: state %lld is outside 1..256",
             (long long)S);
    scan_limit(m);
  }
  p.SP = pow2_at_least(S);
  /* forward: as many states a thread as keep >= 64k threads busy */
  p.Gf = p.SP > 32 ? p.SP / 32 : 1;
  while (p.Gf < 16 && p.Gf < p.SP && N * D * (p.SP / (2 * p.Gf)) >= 65536)
    p.Gf *= 2;
  p.Rf = p.SP / p.Gf;
  p.DTf = ds_channels(p.Rf, D);
  p.Gb = p.SP > 32 ? p.SP / 32 : 1;
  p.Rb = p.SP / p.Gb;
  p.DTb = ds_channels(p.Rb, D);
  int bd = p.DTb * p.Rb;
  p.Kmax = 16384 / (bd * p.Gb); /* sub-checkpoints: at most 64 KiB */
  if (p.Kmax > 64) p.Kmax = 64;
  int64_t subs = (L + 32 / p.Gb - 1) / (32 / p.Gb);
  if (p.Kmax > subs) p.Kmax = (int)subs;
  if (p.Kmax < 1) p.Kmax = 1;
  /* sd: up to 16 states a block, 32 (or 8) channels a thread, <= 512 */
  p.ST = p.SP < 16 ? p.SP : 16;
  p.DG = D >= 256 ? 32 : 8;
  p.NDG = (int)((D + p.DG - 1) / p.DG);
  for (;;) {
    int per = 32 / p.ST; /* channel groups a warp */
    int ndg = (p.NDG + per - 1) / per * per;
    if (ndg * p.ST <= 512) {
      p.NDG = ndg;
      break;
    }
    if (p.ST == 1) {
      char m[96];
      snprintf(m, sizeof m, "selective_scan: %lld channels is over 16384",
               (long long)D);
      scan_limit(m);
    }
    p.ST /= 2;
  }
  return p;
}

static int64_t align256(int64_t x) { return (x + 255) & ~(int64_t)255; }

/* Workspace bytes for a slice of nn sequences, K sub-chunks a chunk. */
static int64_t scan_ws(const ScanPlan *p, int64_t nn, int K) {
  int64_t T1 = (int64_t)K * (32 / p->Gb), nck = (p->L + T1 - 1) / T1;
  int64_t per = nn * p->D * p->SP * 4;
  return align256(per) + align256(nn * p->D * 4) + 2 * align256((nck - 1) * per);
}

int64_t mdlrt_selective_scan_bwd_scratch(int64_t N, int64_t D, int64_t S,
                                         int64_t L) {
  ScanPlan p = scan_plan(N, D, S, L);
  return scan_ws(&p, N, p.Kmax);
}

/* Dynamic shared memory above 48 KiB must be asked for, once a kernel. */
template <typename F>
static void smem_allow(F *kernel, size_t bytes, size_t *done) {
  if (bytes <= 48 << 10 || bytes <= *done) return;
  CUDA_CHECK(cudaFuncSetAttribute((const void *)kernel,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  (int)bytes));
  *done = bytes;
}

static void launch_fwd(const ScanPlan *p, const ScanArgs &a, int mode) {
  size_t sm = fwd_smem(a.SP, a.DT);
  dim3 grid((unsigned)((p->D + a.DT - 1) / a.DT), (unsigned)a.nn);
  unsigned bd = (unsigned)(a.DT * a.R);
  static size_t done[5];
#define FWD(G, I)                                                            \
  case G:                                                                    \
    smem_allow(k_scan_fwd<G>, sm, &done[I]);                                 \
    k_scan_fwd<G><<<grid, bd, sm, mdlrt_rt.stream>>>(a, mode);               \
    break
  switch (p->Gf) {
    FWD(1, 0); FWD(2, 1); FWD(4, 2); FWD(8, 3); FWD(16, 4);
  }
#undef FWD
  KERNEL_CHECK();
}

void mdlrt_selective_scan_fwd(mdlrt_ref y, mdlrt_ref x, mdlrt_ref dt,
                              mdlrt_ref b, mdlrt_ref c, mdlrt_ref A_log,
                              mdlrt_ref Dskip) {
  const mdlrt_tensor *xt = x.t;
  int64_t N = xt->dim[0], D = xt->dim[1], L = xt->dim[2];
  int64_t S = b.t->dim[1];
  need_shape("selective_scan x", x, 3, N, D, L);
  need_shape("selective_scan dt", dt, 3, N, D, L);
  need_shape("selective_scan b", b, 3, N, S, L);
  need_shape("selective_scan c", c, 3, N, S, L);
  need_shape("selective_scan A_log", A_log, 2, D, S, 0);
  need_shape("selective_scan Dskip", Dskip, 1, D, 0, 0);
  need_shape("selective_scan y", y, 3, N, D, L);
  if (N == 0 || D == 0 || L == 0) return;
  ScanPlan p = scan_plan(N, D, S, L);
  ScanArgs a;
  memset(&a, 0, sizeof a);
  a.x = tv(x), a.dt = tv(dt), a.b = tv(b), a.c = tv(c);
  a.Al = tv(A_log), a.Ds = tv(Dskip), a.y = tv(y);
  a.D = D, a.S = S, a.L = L, a.SP = p.SP, a.R = p.Rf, a.DT = p.DTf;
  a.n0 = 0, a.nn = N, a.T1 = L + 1, a.nck = 1;
  launch_fwd(&p, a, 0);
}

void mdlrt_selective_scan_bwd(mdlrt_ref dx, int ax, mdlrt_ref ddt, int adt,
                              mdlrt_ref db, int ab, mdlrt_ref dc, int ac,
                              mdlrt_ref dA_log, int aA, mdlrt_ref dDskip,
                              int aD, mdlrt_ref dy, mdlrt_ref x, mdlrt_ref dt,
                              mdlrt_ref b, mdlrt_ref c, mdlrt_ref A_log,
                              mdlrt_ref Dskip) {
  const mdlrt_tensor *xt = x.t;
  int64_t N = xt->dim[0], D = xt->dim[1], L = xt->dim[2];
  int64_t S = b.t->dim[1];
  need_shape("selective_scan x", x, 3, N, D, L);
  need_shape("selective_scan dt", dt, 3, N, D, L);
  need_shape("selective_scan b", b, 3, N, S, L);
  need_shape("selective_scan c", c, 3, N, S, L);
  need_shape("selective_scan A_log", A_log, 2, D, S, 0);
  need_shape("selective_scan Dskip", Dskip, 1, D, 0, 0);
  need_shape("selective_scan dy", dy, 3, N, D, L);
  need_shape("selective_scan dx", dx, 3, N, D, L);
  need_shape("selective_scan ddt", ddt, 3, N, D, L);
  need_shape("selective_scan db", db, 3, N, S, L);
  need_shape("selective_scan dc", dc, 3, N, S, L);
  need_shape("selective_scan dA_log", dA_log, 2, D, S, 0);
  need_shape("selective_scan dDskip", dDskip, 1, D, 0, 0);
  if (N == 0 || D == 0 || L == 0) return;
  ScanPlan p = scan_plan(N, D, S, L);

  /* the fewest sub-chunks a chunk whose checkpoints fit for the whole
   * batch (the sweep costs (K-1)/K of a pass); else Kmax and slices */
  int64_t room = mdlrt_rt.ws ? mdlrt_rt.ws_bytes : 0, nn = N;
  int K = 1;
  while (K < p.Kmax && scan_ws(&p, N, K) > room) K++;
  if (scan_ws(&p, N, K) > room) {
    while (nn > 0 && scan_ws(&p, nn, K) > room) nn--;
    if (nn == 0) {
      char m[256];
      snprintf(m, sizeof m,
               "selective_scan backward: the workspace has %lld bytes, the "
               "chunk checkpoints of one sequence need %lld (all %lld: "
               "%lld); raise `workspace`",
               (long long)room, (long long)scan_ws(&p, 1, K), (long long)N,
               (long long)scan_ws(&p, N, K));
      scan_limit(m);
    }
  }
  const int T2 = 32 / p.Gb;
  const int64_t T1 = (int64_t)K * T2, nck = (L + T1 - 1) / T1;
  char *ws = (char *)mdlrt_rt.ws;
  int64_t per = nn * D * p.SP * 4;

  ScanArgs a;
  memset(&a, 0, sizeof a);
  a.x = tv(x), a.dt = tv(dt), a.b = tv(b), a.c = tv(c), a.dy = tv(dy);
  a.Al = tv(A_log), a.Ds = tv(Dskip);
  a.dx = tv(dx), a.ddt = tv(ddt), a.db = tv(db), a.dc = tv(dc);
  a.ax = ax, a.adt = adt, a.ab = ab, a.ac = ac;
  a.D = D, a.S = S, a.L = L, a.SP = p.SP, a.T1 = T1, a.nck = nck, a.K = K;
  a.partA = (float *)ws;
  a.partD = (float *)(ws + align256(per));
  a.hck = (float *)(ws + align256(per) + align256(nn * D * 4));
  a.qck = (float *)((char *)a.hck + align256((nck - 1) * per));
  TV vdA = tv(dA_log), vdD = tv(dDskip);
  int need_dx = a.dx.p || a.ddt.p || vdA.p || vdD.p || a.db.p;
  int need_sd = a.db.p || a.dc.p;
  if (!need_dx && !need_sd) return;
  if (!a.db.p) a.qck = NULL;

  size_t dsm = dx_smem(p.SP, p.DTb, p.Rb, p.DTb * p.Rb, p.Gb, K);
  int DP = p.NDG * p.DG, bsd = p.NDG * p.ST, TC = 8;
  while (TC > 1 && sd_smem(TC, DP, p.ST, bsd / 32) > (200 << 10)) TC /= 2;
  size_t ssm = sd_smem(TC, DP, p.ST, bsd / 32);
  static size_t dx_done[4], sd_done[10];

  for (int64_t n0 = 0; n0 < N; n0 += nn) {
    a.n0 = n0;
    a.nn = n0 + nn <= N ? nn : N - n0;
    /* 1: checkpoints (forward sweep) */
    if (nck > 1) {
      ScanArgs f = a;
      ScanPlan pf = scan_plan(a.nn, D, S, L);
      f.R = pf.Rf, f.DT = pf.DTf;
      launch_fwd(&pf, f, 1);
    }
    /* 2: dx, ddt, partials of dA and dDskip, carries */
    if (need_dx) {
      ScanArgs g = a;
      g.R = p.Rb, g.DT = p.DTb;
      dim3 grid((unsigned)((D + p.DTb - 1) / p.DTb), (unsigned)a.nn);
      unsigned bd = (unsigned)(p.DTb * p.Rb);
#define DX(G, I)                                                             \
  case G:                                                                    \
    smem_allow(k_scan_dx<G>, dsm, &dx_done[I]);                              \
    k_scan_dx<G><<<grid, bd, dsm, mdlrt_rt.stream>>>(g);                     \
    break
      switch (p.Gb) { DX(1, 0); DX(2, 1); DX(4, 2); DX(8, 3); }
#undef DX
      KERNEL_CHECK();
    }
    /* 3: db, dc, every chunk on its own */
    if (need_sd) {
      dim3 grid((unsigned)((S + p.ST - 1) / p.ST), (unsigned)nck,
                (unsigned)a.nn);
#define SD(S_, G_, I)                                                        \
  else if (p.ST == S_ && p.DG == G_) {                                       \
    smem_allow(k_scan_sd<S_, G_>, ssm, &sd_done[I]);                         \
    k_scan_sd<S_, G_><<<grid, bsd, ssm, mdlrt_rt.stream>>>(a, DP, TC);           \
  }
      if (0) {
      }
      SD(16, 32, 0) SD(8, 32, 1) SD(4, 32, 2) SD(2, 32, 3) SD(1, 32, 4)
      SD(16, 8, 5) SD(8, 8, 6) SD(4, 8, 7) SD(2, 8, 8) SD(1, 8, 9)
      else mdlrt_fail("mdlrt", "no k_scan_sd for this plan", "selective_scan",
                      __FILE__, __LINE__);
#undef SD
      KERNEL_CHECK();
    }
    /* 4: dA_log, dDskip, the slices added in order */
    if (vdA.p || vdD.p) {
      int first = n0 == 0;
      k_scan_params<<<grid_for(D * S), 256, 0, mdlrt_rt.stream>>>(
          a, vdA, first ? aA : 1, vdD, first ? aD : 1);
      KERNEL_CHECK();
    }
  }
}

/* ---- conv1d ------------------------------------------------------------ */

struct C1 {
  TV x, y, w, b;          /* x [N, C, L], y [N, O, OL], w [O, C/g, K], b [O] */
  int64_t N, C, L, O, K, OL, stride, pl, dil, groups;
};

/* y[n, o, j] = b[o] + sum over ci, u of w[o, ci, u] x[n, g Cg + ci,
 * j stride - pl + u dil]; one thread an output. */
__global__ void k_conv1d_fwd(C1 p) {
  int64_t Cg = p.C / p.groups, Og = p.O / p.groups;
  GRID_LOOP(i, p.N * p.O * p.OL) {
    int64_t j = i % p.OL, o = (i / p.OL) % p.O, n = i / (p.OL * p.O);
    int64_t c0 = (o / Og) * Cg;
    float acc = p.b.p ? ld(p.b, o * p.b.s0) : 0.0f;
    for (int64_t ci = 0; ci < Cg; ci++)
      for (int64_t u = 0; u < p.K; u++) {
        int64_t t = j * p.stride - p.pl + u * p.dil;
        if (t < 0 || t >= p.L) continue;
        acc = fmaf(ld(p.w, at3(p.w, o, ci, u)), ld(p.x, at3(p.x, n, c0 + ci, t)),
                   acc);
      }
    st(p.y, at3(p.y, n, o, j), acc, 0);
  }
}

/* Depthwise (groups = C = O), stride 1, dilation 1 (Mamba's causal conv):
 * a thread makes 8 consecutive outputs of one row from a window of 8+K-1
 * inputs held in registers. */
template <int K>
__global__ void k_conv1d_dw(C1 p) {
  const int64_t nb = (p.OL + 7) / 8;
  GRID_LOOP(i, p.N * p.C * nb) {
    int64_t jb = i % nb, c = (i / nb) % p.C, n = i / (nb * p.C), j0 = jb * 8;
    float w[K], xw[8 + K - 1], acc[8];
#pragma unroll
    for (int u = 0; u < K; u++) w[u] = ld(p.w, at3(p.w, c, 0, u));
#pragma unroll
    for (int m = 0; m < 8 + K - 1; m++) {
      int64_t t = j0 - p.pl + m;
      xw[m] = t >= 0 && t < p.L ? ld(p.x, at3(p.x, n, c, t)) : 0.0f;
    }
    float bias = p.b.p ? ld(p.b, c * p.b.s0) : 0.0f;
#pragma unroll
    for (int r = 0; r < 8; r++) {
      acc[r] = bias;
#pragma unroll
      for (int u = 0; u < K; u++) acc[r] = fmaf(w[u], xw[r + u], acc[r]);
    }
#pragma unroll
    for (int r = 0; r < 8; r++)
      if (j0 + r < p.OL) st(p.y, at3(p.y, n, c, j0 + r), acc[r], 0);
  }
}

/* dx[n, c, t] (+)= sum over the group's outputs o and taps u with
 * j stride = t + pl - u dil of w[o, ci, u] dy[n, o, j]. */
__global__ void k_conv1d_dx(C1 p, TV dx, int ax, TV dy) {
  int64_t Cg = p.C / p.groups, Og = p.O / p.groups;
  GRID_LOOP(i, p.N * p.C * p.L) {
    int64_t t = i % p.L, c = (i / p.L) % p.C, n = i / (p.L * p.C);
    int64_t g = c / Cg, ci = c % Cg;
    float acc = 0.0f;
    for (int64_t o = g * Og; o < (g + 1) * Og; o++)
      for (int64_t u = 0; u < p.K; u++) {
        int64_t num = t + p.pl - u * p.dil;
        if (num < 0 || num % p.stride) continue;
        int64_t j = num / p.stride;
        if (j >= p.OL) continue;
        acc = fmaf(ld(p.w, at3(p.w, o, ci, u)), ld(dy, at3(dy, n, o, j)), acc);
      }
    st(dx, at3(dx, n, c, t), acc, ax);
  }
}

/* dw[o, ci, u] (+)= sum over n, j of dy[n, o, j] x[n, c, j stride - pl +
 * u dil]; db[o] (+)= sum of dy[n, o, :]. A block per (o, ci), 8 taps at a
 * time: each thread sums a fixed set of positions, then block_sum. */
__global__ void k_conv1d_dw_grad(C1 p, TV dw, int aw, TV db, int ab, TV dy) {
  int64_t Cg = p.C / p.groups, Og = p.O / p.groups;
  int64_t o = blockIdx.x, ci = blockIdx.y, c = (o / Og) * Cg + ci;
  int64_t npos = p.N * p.OL;
  for (int64_t u0 = 0; u0 < (dw.p ? p.K : 1); u0 += 8) {
    float acc[8], accb = 0.0f;
#pragma unroll
    for (int r = 0; r < 8; r++) acc[r] = 0.0f;
    for (int64_t e = threadIdx.x; e < npos; e += blockDim.x) {
      int64_t n = e / p.OL, j = e % p.OL;
      float g = ld(dy, at3(dy, n, o, j));
      accb += g;
      if (!dw.p) continue;
#pragma unroll
      for (int r = 0; r < 8; r++) {
        int64_t u = u0 + r, t = j * p.stride - p.pl + u * p.dil;
        if (u < p.K && t >= 0 && t < p.L)
          acc[r] = fmaf(g, ld(p.x, at3(p.x, n, c, t)), acc[r]);
      }
    }
    if (dw.p) {
      for (int r = 0; r < 8 && u0 + r < p.K; r++) {
        float s = block_sum(acc[r]);
        if (threadIdx.x == 0) st(dw, at3(dw, o, ci, u0 + r), s, aw);
      }
    }
    if (u0 == 0 && ci == 0 && db.p) {
      float s = block_sum(accb);
      if (threadIdx.x == 0) st(db, o * db.s0, s, ab);
    }
  }
}

static C1 conv1d_args(const char *op, mdlrt_ref y, mdlrt_ref x, mdlrt_ref w,
                      mdlrt_ref b, int64_t stride, int64_t pl, int64_t pr,
                      int64_t dil, int64_t groups) {
  C1 p;
  memset(&p, 0, sizeof p);
  const mdlrt_tensor *xt = x.t, *wt = w.t;
  p.N = xt->dim[0], p.C = xt->dim[1], p.L = xt->dim[2];
  p.O = wt->dim[0], p.K = wt->dim[2];
  p.stride = stride, p.pl = pl, p.dil = dil, p.groups = groups;
  p.OL = (p.L + pl + pr - dil * (p.K - 1) - 1) / stride + 1;
  char m[64];
  snprintf(m, sizeof m, "%s x", op);
  need_shape(m, x, 3, p.N, p.C, p.L);
  if (groups < 1 || stride < 1 || dil < 1 || pl < 0 || pr < 0 ||
      p.C % groups || p.O % groups || p.OL < 1)
    mdlrt_fail("mdlrt", "bad conv1d geometry", op, __FILE__, __LINE__);
  snprintf(m, sizeof m, "%s weight", op);
  need_shape(m, w, 3, p.O, p.C / groups, p.K);
  snprintf(m, sizeof m, "%s bias", op);
  need_shape(m, b, 1, p.O, 0, 0);
  snprintf(m, sizeof m, "%s y", op);
  need_shape(m, y, 3, p.N, p.O, p.OL);
  p.x = tv(x), p.y = tv(y), p.w = tv(w), p.b = tv(b);
  return p;
}

void mdlrt_conv1d_fwd(mdlrt_ref y, mdlrt_ref x, mdlrt_ref w, mdlrt_ref b,
                      int64_t stride, int64_t pad_left, int64_t pad_right,
                      int64_t dilation, int64_t groups) {
  C1 p = conv1d_args("conv1d", y, x, w, b, stride, pad_left, pad_right,
                     dilation, groups);
  int dw = groups == p.C && p.O == p.C && stride == 1 && dilation == 1;
  if (dw && (p.K == 2 || p.K == 3 || p.K == 4)) {
    int64_t n = p.N * p.C * ((p.OL + 7) / 8);
    if (p.K == 4) k_conv1d_dw<4><<<grid_for(n), 256, 0, mdlrt_rt.stream>>>(p);
    if (p.K == 3) k_conv1d_dw<3><<<grid_for(n), 256, 0, mdlrt_rt.stream>>>(p);
    if (p.K == 2) k_conv1d_dw<2><<<grid_for(n), 256, 0, mdlrt_rt.stream>>>(p);
  } else {
    k_conv1d_fwd<<<grid_for(p.N * p.O * p.OL), 256, 0, mdlrt_rt.stream>>>(p);
  }
  KERNEL_CHECK();
}

void mdlrt_conv1d_bwd(mdlrt_ref dx, int ax, mdlrt_ref dw, int aw,
                      mdlrt_ref db, int ab, mdlrt_ref dy, mdlrt_ref x,
                      mdlrt_ref w, int64_t stride, int64_t pad_left,
                      int64_t pad_right, int64_t dilation, int64_t groups) {
  mdlrt_ref none = {NULL, NULL};
  C1 p = conv1d_args("conv1d backward", dy, x, w, none, stride, pad_left,
                     pad_right, dilation, groups);
  need_shape("conv1d dx", dx, 3, p.N, p.C, p.L);
  need_shape("conv1d dw", dw, 3, p.O, p.C / groups, p.K);
  need_shape("conv1d db", db, 1, p.O, 0, 0);
  TV vdy = tv(dy), vdx = tv(dx), vdw = tv(dw), vdb = tv(db);
  if (vdx.p) {
    k_conv1d_dx<<<grid_for(p.N * p.C * p.L), 256, 0, mdlrt_rt.stream>>>(
        p, vdx, ax, vdy);
    KERNEL_CHECK();
  }
  if (vdw.p || vdb.p) {
    dim3 grid((unsigned)p.O, vdw.p ? (unsigned)(p.C / groups) : 1u);
    k_conv1d_dw_grad<<<grid, 256, 0, mdlrt_rt.stream>>>(p, vdw, aw, vdb, ab,
                                                          vdy);
    KERNEL_CHECK();
  }
}
