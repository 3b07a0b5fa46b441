/* runtime/mdlrt_attn.cu: fused scaled-dot-product attention (the `sdpa` op),
 * forward and backward, FlashAttention-2 style; docs/attention.md is the
 * design.
 *
 * Key idea: the [S, T] scores exist only in registers, one tile at a time.
 * The forward keeps a running row maximum and row sum (online softmax) and
 * writes O and the log-sum-exp of every score row (LSE). The backward
 * recomputes each tile's probabilities from LSE: one kernel per kv block
 * (dK, dV in registers, looping over every q block of every query head of
 * its group, so grouped-query attention needs no atomics) and one per q
 * block (dQ in registers). Every sum is in a fixed order: bit-identical
 * from run to run. Dropout is regenerated, never stored: element
 * (b, h, i, j) is kept iff mdlrt_uniform(seed, DROP + node,
 * mdlrt_dropout_index(step, ((b*H + h)*S + i)*T + j)) >= p.
 *
 * f16 and bf16 use the tensor cores (mma.sync m16n8k16, fragments through
 * ldmatrix, tiles through cp.async); f32 takes a SIMT path. The few lines
 * of PTX are the primitives below; tests/gpu/attn_emu.cpp replaces them
 * with a host emulation (MDLRT_ATTN_EMU) to run these kernels on a CPU.
 */
#ifndef MDLRT_ATTN_EMU
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdlrt_dev.cuh"
#endif
#include "mdlrt.h"
#include "mdlrt_rng.h"

/* ---- kernel arguments ----------------------------------------------------
 * Pointers are at element (0, 0, 0, 0) of each view; strides in elements,
 * outermost first. q, k, v, dout: [b, h, s] strides, the head dim
 * contiguous. o, dq, dk, dv: all four strides. lse: [b, h, s]. */
struct SdpaArgs {
  const void *q, *k, *v;      /* q [B, H, S, Dh], k v [B, Hkv, T, Dh] */
  void *o;                    /* forward: written; backward: read */
  float *lse;                 /* f32 [B, H, S], natural log (NULL: none) */
  const void *dout;           /* backward: dO [B, H, S, Dh] */
  float *dsum;                /* backward: rowsum(dO * O), f32 [B*H*S] */
  void *dq, *dk, *dv;         /* backward: NULL = not wanted */
  int aq, ak, av;             /* backward: add into dq, dk, dv */
  int64_t qs[3], ks[3], vs[3], dos[3];
  int64_t os[4], dqs[4], dks[4], dvs[4];
  int64_t ls[3];
  int B, H, Hkv, S, T, Dh;
  int causal;
  int vec;                    /* q, k, v, dout can be read 16 bytes at a time */
  int ovec;                   /* o pairs can be written 4 bytes at a time */
  float scale, scale_log2;    /* scale, scale * log2(e) */
  int drop;                   /* dropout p > 0 */
  float p, keep;              /* p, 1 / (1 - p) */
  uint64_t seed, stream;      /* dropout: mdlrt_uniform(seed, stream, .) */
  const uint64_t *step;       /* device: the step number (StepVars.step) */
};

#define ATTN_LOG2E 1.4426950408889634f
#define ATTN_LN2 0.6931471805599453f

/* ---- primitives: the only PTX ------------------------------------------- */
#ifndef MDLRT_ATTN_EMU
#define ATTN_SMEM(p)                                                         \
  extern __shared__ __align__(16) unsigned char attn_smem_[];                \
  unsigned char *p = attn_smem_

/* Four 8x8 b16 matrices; lane l gives the address of row l % 8 of matrix
 * l / 8; thread t gets, of matrix i, row t / 4, columns 2(t % 4) + {0, 1}
 * in register i. */
__device__ __forceinline__ void ldsm4(uint32_t r[4], const uint16_t *p) {
  uint32_t s = (uint32_t)__cvta_generic_to_shared(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
/* The same, each matrix transposed: thread t gets rows 2(t % 4) + {0, 1},
 * column t / 4. */
__device__ __forceinline__ void ldsm4t(uint32_t r[4], const uint16_t *p) {
  uint32_t s = (uint32_t)__cvta_generic_to_shared(p);
  asm volatile(
      "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
      : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
      : "r"(s));
}
/* c[16x8] += a[16x16] b[16x8], f32 accumulate. */
template <int DT>
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4],
                                         uint32_t b0, uint32_t b1) {
  if (DT == MDLRT_F16)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
/* 16 bytes global -> shared, asynchronous; zeros when !ok. */
__device__ __forceinline__ void cp16(uint16_t *dst, const uint16_t *src,
                                     bool ok) {
  uint32_t s = (uint32_t)__cvta_generic_to_shared(dst);
  int n = ok ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s),
               "l"(src), "r"(n)
               : "memory");
}
__device__ __forceinline__ void cp_commit(void) {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
/* Waits until at most N committed groups are in flight. */
template <int N> __device__ __forceinline__ void cp_wait(void) {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
/* Two floats as one register of two 16-bit floats (lo in the low half),
 * rounded to nearest even. */
template <int DT> __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  uint32_t r;
  if (DT == MDLRT_F16) {
    __half2 h = __floats2half2_rn(lo, hi);
    r = *(uint32_t *)&h;
  } else {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    r = *(uint32_t *)&h;
  }
  return r;
}
template <int DT> __device__ __forceinline__ float h2f(uint16_t x) {
  if (DT == MDLRT_F16) return __half2float(__ushort_as_half(x));
  return __bfloat162float(__ushort_as_bfloat16(x));
}
template <int DT> __device__ __forceinline__ uint16_t f2h(float x) {
  if (DT == MDLRT_F16) return __half_as_ushort(__float2half_rn(x));
  return __bfloat16_as_ushort(__float2bfloat16_rn(x));
}
#endif /* !MDLRT_ATTN_EMU */

/* ---- helpers -------------------------------------------------------------- */

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }

template <int DT> __device__ __forceinline__ float ld_el(const void *p, int64_t i) {
  if (DT == MDLRT_F32) return ((const float *)p)[i];
  return h2f<DT>(((const uint16_t *)p)[i]);
}
/* Stores x at p[i], or adds it in f32 and rounds once (accum). */
template <int DT>
__device__ __forceinline__ void st_el(void *p, int64_t i, float x, int accum) {
  if (accum) x += ld_el<DT>(p, i);
  if (DT == MDLRT_F32)
    ((float *)p)[i] = x;
  else
    ((uint16_t *)p)[i] = f2h<DT>(x);
}

/* Dropout's draw for score element e (((b*H + h)*S + i)*T + j). */
__device__ __forceinline__ bool attn_kept(const SdpaArgs &a, uint64_t step,
                                          uint64_t e) {
  return mdlrt_uniform(a.seed, a.stream, mdlrt_dropout_index(step, e)) >= a.p;
}

__device__ __forceinline__ float warp_max(float x) {
  for (int s = 16; s > 0; s >>= 1)
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, s));
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
  for (int s = 16; s > 0; s >>= 1) x += __shfl_xor_sync(0xffffffffu, x, s);
  return x;
}

/* Rows [r0, r0 + R) of an [n, Dh] matrix g (row stride rs, Dh contiguous)
 * into shared s[R][DP + 8] (8 elements of padding: ldmatrix's eight rows
 * fall in distinct banks); rows >= n and columns >= Dh are zeros. With vec,
 * cp.async (the caller commits and waits); without, plain loads. */
template <int R, int DP, int NT>
__device__ __forceinline__ void tile_load(uint16_t *s, const uint16_t *g,
                                          int64_t rs, int r0, int n, int Dh,
                                          int vec) {
  constexpr int CH = DP / 8, LD = DP + 8;
#pragma unroll
  for (int c0 = 0; c0 < R * CH; c0 += NT) {
    int c = c0 + (int)threadIdx.x;
    if ((R * CH) % NT == 0 || c < R * CH) {
      int r = c / CH, col = (c % CH) * 8;
      bool ok = r0 + r < n && col < Dh;
      const uint16_t *src = g + (ok ? (int64_t)(r0 + r) * rs + col : 0);
      uint16_t *dst = s + r * LD + col;
      if (vec) {
        cp16(dst, src, ok);
      } else {
        for (int e = 0; e < 8; e++) dst[e] = ok ? src[e] : (uint16_t)0;
      }
    }
  }
}

/* ---- forward, 16-bit, tensor cores ----------------------------------------
 * grid (H, B, ceil(S / BM)), NW warps; a block: BM = 16 MT NW query rows of
 * one (b, h), a warp 16 MT of them (MT m16 tiles: each K and V fragment
 * read from shared memory serves MT products). Loop over kv tiles of
 * BN rows (double buffered, cp.async): S = Q K^T (registers), online
 * softmax, O += P V with P reused from the accumulators as A fragments.
 *   q [B,H,S,Dh]  k,v [B,Hkv,T,Dh]  ->  o [B,H,S,Dh], lse f32 [B,H,S]
 * DP: Dh rounded up to 16 (zero columns in shared memory). Causal: the
 * heaviest q blocks (last rows) first. */
template <int DT, int DP, int NW, int MT, int BN>
__global__ void __launch_bounds__(NW * 32) k_sdpa_fwd16(SdpaArgs a) {
  constexpr int BM = 16 * MT * NW, LD = DP + 8, NT = NW * 32;
  ATTN_SMEM(smem);
  uint16_t *sQ = (uint16_t *)smem;           /* [BM][LD] */
  uint16_t *sK = sQ + BM * LD;               /* [2][BN][LD] */
  uint16_t *sV = sK + 2 * BN * LD;           /* [2][BN][LD] */
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t4 = lane & 3;
  const int h = blockIdx.x, b = blockIdx.y;
  const int mb = a.causal ? (int)(gridDim.z - 1 - blockIdx.z) : (int)blockIdx.z;
  const int m0 = mb * BM, hk = h / (a.H / a.Hkv);
  const int w0 = m0 + warp * 16 * MT; /* the warp's first row */
  const uint16_t *q = (const uint16_t *)a.q + b * a.qs[0] + h * a.qs[1];
  const uint16_t *k = (const uint16_t *)a.k + b * a.ks[0] + hk * a.ks[1];
  const uint16_t *v = (const uint16_t *)a.v + b * a.vs[0] + hk * a.vs[1];
  const int nend = a.causal ? imin(a.T, m0 + BM) : a.T;
  const int ntiles = (nend + BN - 1) / BN;
  const uint64_t step = a.drop ? *a.step : 0;
  /* this thread's rows: w0 + 16 mt + g + 8 r, r = 0, 1 (element e: r = e/2) */
  const uint64_t e0 = ((uint64_t)(b * a.H + h) * a.S + w0 + g) * a.T;

  tile_load<BM, DP, NT>(sQ, q, a.qs[2], m0, a.S, a.Dh, a.vec);
  tile_load<BN, DP, NT>(sK, k, a.ks[2], 0, a.T, a.Dh, a.vec);
  tile_load<BN, DP, NT>(sV, v, a.vs[2], 0, a.T, a.Dh, a.vec);
  cp_commit();

  float o[MT][DP / 8][4];
  float mx[MT][2], l[MT][2];
  uint32_t qf[MT][DP / 16][4];
#pragma unroll
  for (int mt = 0; mt < MT; mt++) {
#pragma unroll
    for (int d = 0; d < DP / 8; d++)
      o[mt][d][0] = o[mt][d][1] = o[mt][d][2] = o[mt][d][3] = 0;
    mx[mt][0] = mx[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0;
  }

  for (int it = 0; it < ntiles; it++) {
    const int n0 = it * BN;
    if (it + 1 < ntiles) {
      const int nb = (it + 1) & 1;
      tile_load<BN, DP, NT>(sK + nb * BN * LD, k, a.ks[2], n0 + BN, a.T, a.Dh,
                            a.vec);
      tile_load<BN, DP, NT>(sV + nb * BN * LD, v, a.vs[2], n0 + BN, a.T, a.Dh,
                            a.vec);
      cp_commit();
      cp_wait<1>();
    } else {
      cp_wait<0>();
    }
    __syncthreads();
    if (it == 0) {
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int kk = 0; kk < DP / 16; kk++)
          ldsm4(qf[mt][kk], sQ + (warp * 16 * MT + mt * 16 + (lane & 15)) * LD +
                                kk * 16 + (lane >> 4) * 8);
    }
    const uint16_t *cK = sK + (it & 1) * BN * LD;
    const uint16_t *cV = sV + (it & 1) * BN * LD;

    /* S = Q K^T: element (mt, n8, e) is row w0 + 16 mt + g + 8 (e / 2),
     * column n0 + 8 n8 + 2 t4 + (e & 1) */
    float s[MT][BN / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int n = 0; n < BN / 8; n++)
        s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0;
#pragma unroll
    for (int kk = 0; kk < DP / 16; kk++) {
#pragma unroll
      for (int nn = 0; nn < BN / 16; nn++) {
        uint32_t bf[4];
        ldsm4(bf, cK + (nn * 16 + (lane & 7) + ((lane >> 4) << 3)) * LD +
                      kk * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          mma16816<DT>(s[mt][2 * nn], qf[mt][kk], bf[0], bf[1]);
          mma16816<DT>(s[mt][2 * nn + 1], qf[mt][kk], bf[2], bf[3]);
        }
      }
    }
    const bool edge = n0 + BN > a.T || (a.causal && n0 + BN - 1 > w0);
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int n = 0; n < BN / 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          float x = s[mt][n][e] * a.scale_log2;
          if (edge) {
            const int col = n0 + n * 8 + 2 * t4 + (e & 1);
            const int row = w0 + 16 * mt + g + 8 * (e >> 1);
            if (col >= a.T || (a.causal && col > row)) x = -INFINITY;
          }
          s[mt][n][e] = x;
        }
    /* online softmax, in log2 units: per m tile, rows g (e = 0, 1) and
     * g + 8 (e = 2, 3), each spread over the four threads of a quad */
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int r = 0; r < 2; r++) {
        float m = -INFINITY;
#pragma unroll
        for (int n = 0; n < BN / 8; n++)
          m = fmaxf(m, fmaxf(s[mt][n][2 * r], s[mt][n][2 * r + 1]));
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
        const float mnew = fmaxf(mx[mt][r], m);
        const float mref = mnew == -INFINITY ? 0.0f : mnew;
        const float alpha = exp2f(mx[mt][r] - mref);
        mx[mt][r] = mnew;
        float sum = 0;
#pragma unroll
        for (int n = 0; n < BN / 8; n++) {
          const float p0 = exp2f(s[mt][n][2 * r] - mref);
          const float p1 = exp2f(s[mt][n][2 * r + 1] - mref);
          s[mt][n][2 * r] = p0, s[mt][n][2 * r + 1] = p1;
          sum += p0 + p1;
        }
        l[mt][r] = l[mt][r] * alpha + sum; /* this thread's share of the sum */
#pragma unroll
        for (int d = 0; d < DP / 8; d++)
          o[mt][d][2 * r] *= alpha, o[mt][d][2 * r + 1] *= alpha;
      }
    if (a.drop) { /* LSE is of the undropped softmax: l already summed */
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int n = 0; n < BN / 8; n++)
#pragma unroll
          for (int e = 0; e < 4; e++) {
            const int col = n0 + n * 8 + 2 * t4 + (e & 1);
            const uint64_t er = e0 + (uint64_t)(16 * mt + 8 * (e >> 1)) * a.T;
            if (!attn_kept(a, step, er + col)) s[mt][n][e] = 0;
          }
    }
    /* O += P V: P's accumulators are the A fragments of the next product;
     * V [j][d] is B = [k = j][n = d], row-major: ldmatrix.trans */
#pragma unroll
    for (int kk = 0; kk < BN / 16; kk++) {
      uint32_t pa[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
        pa[mt][0] = pack2<DT>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        pa[mt][1] = pack2<DT>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        pa[mt][2] = pack2<DT>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        pa[mt][3] = pack2<DT>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dd = 0; dd < DP / 16; dd++) {
        uint32_t bf[4];
        ldsm4t(bf, cV + (kk * 16 + (lane & 15)) * LD + dd * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          mma16816<DT>(o[mt][2 * dd], pa[mt], bf[0], bf[1]);
          mma16816<DT>(o[mt][2 * dd + 1], pa[mt], bf[2], bf[3]);
        }
      }
    }
    __syncthreads(); /* the next iteration loads into this buffer */
  }

  uint16_t *op = (uint16_t *)a.o + b * a.os[0] + h * a.os[1];
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int r = 0; r < 2; r++) {
      float lr = l[mt][r];
      lr += __shfl_xor_sync(0xffffffffu, lr, 1);
      lr += __shfl_xor_sync(0xffffffffu, lr, 2);
      const int row = w0 + 16 * mt + g + 8 * r;
      if (row >= a.S) continue;
      if (a.lse && t4 == 0)
        a.lse[b * a.ls[0] + h * a.ls[1] + row * a.ls[2]] =
            (mx[mt][r] + log2f(lr)) * ATTN_LN2;
      const float inv = a.keep / lr;
#pragma unroll
      for (int d = 0; d < DP / 8; d++) {
        const int col = d * 8 + 2 * t4;
        if (col >= a.Dh) continue;
        const float v0 = o[mt][d][2 * r] * inv, v1 = o[mt][d][2 * r + 1] * inv;
        if (a.ovec) {
          *(uint32_t *)(op + row * a.os[2] + col) = pack2<DT>(v0, v1);
        } else {
          op[row * a.os[2] + col * a.os[3]] = f2h<DT>(v0);
          op[row * a.os[2] + (col + 1) * a.os[3]] = f2h<DT>(v1);
        }
      }
    }
}

/* ---- backward: D = rowsum(dO * O) -----------------------------------------
 * One warp a row, f32 [B*H*S] into the workspace (also valid with dropout:
 * rowsum(dP * P) = rowsum(dO * O) because O = (M * P / (1 - p)) V). */
template <int DT> __global__ void __launch_bounds__(128) k_sdpa_rowdot(SdpaArgs a) {
  const int64_t row = (int64_t)blockIdx.x * 4 + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= (int64_t)a.B * a.H * a.S) return;
  const int i = (int)(row % a.S);
  const int64_t bh = row / a.S;
  const int h = (int)(bh % a.H), b = (int)(bh / a.H);
  const int64_t od = b * a.dos[0] + h * a.dos[1] + i * a.dos[2];
  const int64_t oo = b * a.os[0] + h * a.os[1] + i * a.os[2];
  float acc = 0;
  for (int d = lane; d < a.Dh; d += 32)
    acc += ld_el<DT>(a.dout, od + d) * ld_el<DT>(a.o, oo + d * a.os[3]);
  acc = warp_sum(acc);
  if (lane == 0) a.dsum[row] = acc;
}

/* ---- backward dK, dV, 16-bit, tensor cores --------------------------------
 * grid (Hkv, B, ceil(T / 64)), 4 warps; a block: 64 kv rows of one
 * (b, hk), a warp 16 of them, dK and dV [16 x DP] in its registers. Loop
 * over the q tiles (BMQ rows, double buffered: Q, dO, LSE, D) of every
 * query head of the group:
 *   S^T = K Q^T, P^T = exp(scale S^T - LSE), Z^T = P^T * mask / (1 - p)
 *   dV += Z^T dO, dP^T = V dO^T, dS^T = P^T * (dP^T * mask / (1-p) - D)
 *   dK += dS^T Q   (times scale at the end)
 * Causal: only q tiles holding rows >= the block's first kv row. */
template <int DT, int DP, int BMQ>
__global__ void __launch_bounds__(128) k_sdpa_bwd_kv16(SdpaArgs a) {
  constexpr int BN = 64, LD = DP + 8, NT = 128;
  ATTN_SMEM(smem);
  uint16_t *sK = (uint16_t *)smem;            /* [BN][LD] */
  uint16_t *sV = sK + BN * LD;                /* [BN][LD] */
  uint16_t *sQ = sV + BN * LD;                /* [2][BMQ][LD] */
  uint16_t *sO = sQ + 2 * BMQ * LD;           /* [2][BMQ][LD]: dO */
  float *sL = (float *)(sO + 2 * BMQ * LD);   /* [2][BMQ]: LSE log2e */
  float *sD = sL + 2 * BMQ;                   /* [2][BMQ]: D */
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t4 = lane & 3;
  const int hk = blockIdx.x, b = blockIdx.y, n0 = blockIdx.z * BN;
  const int G = a.H / a.Hkv;
  const int mstart = a.causal ? (n0 / BMQ) * BMQ : 0;
  const int nq = mstart < a.S ? (a.S - mstart + BMQ - 1) / BMQ : 0;
  const int total = G * nq;
  const uint16_t *k = (const uint16_t *)a.k + b * a.ks[0] + hk * a.ks[1];
  const uint16_t *v = (const uint16_t *)a.v + b * a.vs[0] + hk * a.vs[1];
  const uint64_t step = a.drop ? *a.step : 0;
  const int j0 = n0 + warp * 16 + g, j1 = j0 + 8; /* this thread's kv rows */

  tile_load<BN, DP, NT>(sK, k, a.ks[2], n0, a.T, a.Dh, a.vec);
  tile_load<BN, DP, NT>(sV, v, a.vs[2], n0, a.T, a.Dh, a.vec);
  /* iteration it: head hk*G + it / nq, q tile mstart + (it % nq) BMQ */
  auto issue = [&](int it, int buf) {
    const int h = hk * G + it / nq, m0 = mstart + (it % nq) * BMQ;
    const uint16_t *q = (const uint16_t *)a.q + b * a.qs[0] + h * a.qs[1];
    const uint16_t *dq = (const uint16_t *)a.dout + b * a.dos[0] + h * a.dos[1];
    tile_load<BMQ, DP, NT>(sQ + buf * BMQ * LD, q, a.qs[2], m0, a.S, a.Dh, a.vec);
    tile_load<BMQ, DP, NT>(sO + buf * BMQ * LD, dq, a.dos[2], m0, a.S, a.Dh,
                           a.vec);
    for (int i = threadIdx.x; i < BMQ; i += NT) {
      const int row = m0 + i;
      sL[buf * BMQ + i] =
          row < a.S ? a.lse[b * a.ls[0] + h * a.ls[1] + row * a.ls[2]] * ATTN_LOG2E
                    : INFINITY;
      sD[buf * BMQ + i] =
          row < a.S ? a.dsum[((int64_t)b * a.H + h) * a.S + row] : 0.0f;
    }
  };
  if (total > 0) issue(0, 0);
  cp_commit();

  float dk[DP / 8][4], dv[DP / 8][4];
#pragma unroll
  for (int d = 0; d < DP / 8; d++)
#pragma unroll
    for (int e = 0; e < 4; e++) dk[d][e] = dv[d][e] = 0;

  for (int it = 0; it < total; it++) {
    if (it + 1 < total) {
      issue(it + 1, (it + 1) & 1);
      cp_commit();
      cp_wait<1>();
    } else {
      cp_wait<0>();
    }
    __syncthreads();
    const int buf = it & 1;
    const int h = hk * G + it / nq, m0 = mstart + (it % nq) * BMQ;
    const uint16_t *cQ = sQ + buf * BMQ * LD, *cO = sO + buf * BMQ * LD;
    const float *cL = sL + buf * BMQ, *cD = sD + buf * BMQ;

    /* S^T = K Q^T: element (n8, e) is kv row (e < 2 ? j0 : j1), q row
     * m0 + il, il = 8 n8 + 2 t4 + (e & 1) */
    float st[BMQ / 8][4];
#pragma unroll
    for (int n = 0; n < BMQ / 8; n++) st[n][0] = st[n][1] = st[n][2] = st[n][3] = 0;
#pragma unroll
    for (int kk = 0; kk < DP / 16; kk++) {
      uint32_t ka[4];
      ldsm4(ka, sK + (warp * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
#pragma unroll
      for (int nn = 0; nn < BMQ / 16; nn++) {
        uint32_t bq[4];
        ldsm4(bq, cQ + (nn * 16 + (lane & 7) + ((lane >> 4) << 3)) * LD +
                      kk * 16 + ((lane >> 3) & 1) * 8);
        mma16816<DT>(st[2 * nn], ka, bq[0], bq[1]);
        mma16816<DT>(st[2 * nn + 1], ka, bq[2], bq[3]);
      }
    }
    const bool edge = a.causal && m0 < n0 + warp * 16 + 15;
    uint32_t kept = 0xffffffffu; /* bit 4 n8 + e: dropout keeps it */
#pragma unroll
    for (int n = 0; n < BMQ / 8; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int il = n * 8 + 2 * t4 + (e & 1), i = m0 + il;
        const int j = e < 2 ? j0 : j1;
        float p = exp2f(st[n][e] * a.scale_log2 - cL[il]);
        if (edge && j > i) p = 0;
        st[n][e] = p;
        if (a.drop &&
            !attn_kept(a, step, (((uint64_t)b * a.H + h) * a.S + i) * a.T + j))
          kept &= ~(1u << (n * 4 + e));
      }
    /* dV += Z^T dO: dO [i][d] is B = [k = i][n = d]: ldmatrix.trans */
#pragma unroll
    for (int kk = 0; kk < BMQ / 16; kk++) {
      float z[2][4];
#pragma unroll
      for (int u = 0; u < 2; u++)
#pragma unroll
        for (int e = 0; e < 4; e++)
          z[u][e] = (kept >> ((2 * kk + u) * 4 + e)) & 1
                        ? st[2 * kk + u][e] * a.keep : 0.0f;
      uint32_t za[4];
      za[0] = pack2<DT>(z[0][0], z[0][1]);
      za[1] = pack2<DT>(z[0][2], z[0][3]);
      za[2] = pack2<DT>(z[1][0], z[1][1]);
      za[3] = pack2<DT>(z[1][2], z[1][3]);
#pragma unroll
      for (int dd = 0; dd < DP / 16; dd++) {
        uint32_t bo[4];
        ldsm4t(bo, cO + (kk * 16 + (lane & 15)) * LD + dd * 16 + (lane >> 4) * 8);
        mma16816<DT>(dv[2 * dd], za, bo[0], bo[1]);
        mma16816<DT>(dv[2 * dd + 1], za, bo[2], bo[3]);
      }
    }
    /* dP^T = V dO^T */
    float dp[BMQ / 8][4];
#pragma unroll
    for (int n = 0; n < BMQ / 8; n++) dp[n][0] = dp[n][1] = dp[n][2] = dp[n][3] = 0;
#pragma unroll
    for (int kk = 0; kk < DP / 16; kk++) {
      uint32_t va[4];
      ldsm4(va, sV + (warp * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
#pragma unroll
      for (int nn = 0; nn < BMQ / 16; nn++) {
        uint32_t bo[4];
        ldsm4(bo, cO + (nn * 16 + (lane & 7) + ((lane >> 4) << 3)) * LD +
                      kk * 16 + ((lane >> 3) & 1) * 8);
        mma16816<DT>(dp[2 * nn], va, bo[0], bo[1]);
        mma16816<DT>(dp[2 * nn + 1], va, bo[2], bo[3]);
      }
    }
    /* dS^T = P^T (dP^T mask / (1 - p) - D) */
#pragma unroll
    for (int n = 0; n < BMQ / 8; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int il = n * 8 + 2 * t4 + (e & 1);
        const float dz = (kept >> (n * 4 + e)) & 1 ? dp[n][e] * a.keep : 0.0f;
        dp[n][e] = st[n][e] * (dz - cD[il]);
      }
    /* dK += dS^T Q: Q [i][d] is B = [k = i][n = d]: ldmatrix.trans */
#pragma unroll
    for (int kk = 0; kk < BMQ / 16; kk++) {
      uint32_t da[4];
      da[0] = pack2<DT>(dp[2 * kk][0], dp[2 * kk][1]);
      da[1] = pack2<DT>(dp[2 * kk][2], dp[2 * kk][3]);
      da[2] = pack2<DT>(dp[2 * kk + 1][0], dp[2 * kk + 1][1]);
      da[3] = pack2<DT>(dp[2 * kk + 1][2], dp[2 * kk + 1][3]);
#pragma unroll
      for (int dd = 0; dd < DP / 16; dd++) {
        uint32_t bq[4];
        ldsm4t(bq, cQ + (kk * 16 + (lane & 15)) * LD + dd * 16 + (lane >> 4) * 8);
        mma16816<DT>(dk[2 * dd], da, bq[0], bq[1]);
        mma16816<DT>(dk[2 * dd + 1], da, bq[2], bq[3]);
      }
    }
    __syncthreads(); /* the next iteration loads into this buffer */
  }
  cp_wait<0>();

#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int j = r ? j1 : j0;
    if (j >= a.T) continue;
#pragma unroll
    for (int d = 0; d < DP / 8; d++) {
      const int col = d * 8 + 2 * t4;
      if (col >= a.Dh) continue;
#pragma unroll
      for (int u = 0; u < 2; u++) {
        if (a.dk)
          st_el<DT>(a.dk, b * a.dks[0] + hk * a.dks[1] + j * a.dks[2] +
                              (col + u) * a.dks[3],
                    dk[d][2 * r + u] * a.scale, a.ak);
        if (a.dv)
          st_el<DT>(a.dv, b * a.dvs[0] + hk * a.dvs[1] + j * a.dvs[2] +
                              (col + u) * a.dvs[3],
                    dv[d][2 * r + u], a.av);
      }
    }
  }
}

/* ---- backward dQ, 16-bit, tensor cores ------------------------------------
 * grid (H, B, ceil(S / 64)), 4 warps; a block: 64 query rows of one (b, h),
 * a warp 16 of them, dQ [16 x DP] in its registers. Loop over kv tiles of
 * BNK rows (double buffered):
 *   S = Q K^T, P = exp(scale S - LSE), dP = (dO V^T) mask / (1 - p),
 *   dS = P (dP - D), dQ += dS K   (times scale at the end) */
template <int DT, int DP, int BNK>
__global__ void __launch_bounds__(128) k_sdpa_bwd_q16(SdpaArgs a) {
  constexpr int BM = 64, LD = DP + 8, NT = 128;
  ATTN_SMEM(smem);
  uint16_t *sQ = (uint16_t *)smem;            /* [BM][LD] */
  uint16_t *sO = sQ + BM * LD;                /* [BM][LD]: dO */
  uint16_t *sK = sO + BM * LD;                /* [2][BNK][LD] */
  uint16_t *sV = sK + 2 * BNK * LD;           /* [2][BNK][LD] */
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t4 = lane & 3;
  const int h = blockIdx.x, b = blockIdx.y;
  const int mb = a.causal ? (int)(gridDim.z - 1 - blockIdx.z) : (int)blockIdx.z;
  const int m0 = mb * BM, hk = h / (a.H / a.Hkv);
  const uint16_t *q = (const uint16_t *)a.q + b * a.qs[0] + h * a.qs[1];
  const uint16_t *dout = (const uint16_t *)a.dout + b * a.dos[0] + h * a.dos[1];
  const uint16_t *k = (const uint16_t *)a.k + b * a.ks[0] + hk * a.ks[1];
  const uint16_t *v = (const uint16_t *)a.v + b * a.vs[0] + hk * a.vs[1];
  const int nend = a.causal ? imin(a.T, m0 + BM) : a.T;
  const int ntiles = (nend + BNK - 1) / BNK;
  const uint64_t step = a.drop ? *a.step : 0;
  const int r0 = m0 + warp * 16 + g, r1 = r0 + 8;
  const uint64_t e0 = ((uint64_t)(b * a.H + h) * a.S + r0) * a.T;
  const uint64_t e1 = e0 + 8 * (uint64_t)a.T;
  float L[2], D[2];
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int row = r ? r1 : r0;
    L[r] = row < a.S ? a.lse[b * a.ls[0] + h * a.ls[1] + row * a.ls[2]] * ATTN_LOG2E
                     : INFINITY;
    D[r] = row < a.S ? a.dsum[((int64_t)b * a.H + h) * a.S + row] : 0.0f;
  }

  tile_load<BM, DP, NT>(sQ, q, a.qs[2], m0, a.S, a.Dh, a.vec);
  tile_load<BM, DP, NT>(sO, dout, a.dos[2], m0, a.S, a.Dh, a.vec);
  tile_load<BNK, DP, NT>(sK, k, a.ks[2], 0, a.T, a.Dh, a.vec);
  tile_load<BNK, DP, NT>(sV, v, a.vs[2], 0, a.T, a.Dh, a.vec);
  cp_commit();

  float dq[DP / 8][4];
#pragma unroll
  for (int d = 0; d < DP / 8; d++) dq[d][0] = dq[d][1] = dq[d][2] = dq[d][3] = 0;

  for (int it = 0; it < ntiles; it++) {
    const int n0 = it * BNK;
    if (it + 1 < ntiles) {
      const int nb = (it + 1) & 1;
      tile_load<BNK, DP, NT>(sK + nb * BNK * LD, k, a.ks[2], n0 + BNK, a.T,
                             a.Dh, a.vec);
      tile_load<BNK, DP, NT>(sV + nb * BNK * LD, v, a.vs[2], n0 + BNK, a.T,
                             a.Dh, a.vec);
      cp_commit();
      cp_wait<1>();
    } else {
      cp_wait<0>();
    }
    __syncthreads();
    const uint16_t *cK = sK + (it & 1) * BNK * LD;
    const uint16_t *cV = sV + (it & 1) * BNK * LD;

    /* S = Q K^T and dZ = dO V^T: element (n8, e) is row (e < 2 ? r0 : r1),
     * column n0 + 8 n8 + 2 t4 + (e & 1) */
    float s[BNK / 8][4], dp[BNK / 8][4];
#pragma unroll
    for (int n = 0; n < BNK / 8; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) s[n][e] = dp[n][e] = 0;
#pragma unroll
    for (int kk = 0; kk < DP / 16; kk++) {
      uint32_t qa[4], oa[4];
      ldsm4(qa, sQ + (warp * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
      ldsm4(oa, sO + (warp * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
#pragma unroll
      for (int nn = 0; nn < BNK / 16; nn++) {
        uint32_t bk[4], bv[4];
        const int off = (nn * 16 + (lane & 7) + ((lane >> 4) << 3)) * LD +
                        kk * 16 + ((lane >> 3) & 1) * 8;
        ldsm4(bk, cK + off);
        ldsm4(bv, cV + off);
        mma16816<DT>(s[2 * nn], qa, bk[0], bk[1]);
        mma16816<DT>(s[2 * nn + 1], qa, bk[2], bk[3]);
        mma16816<DT>(dp[2 * nn], oa, bv[0], bv[1]);
        mma16816<DT>(dp[2 * nn + 1], oa, bv[2], bv[3]);
      }
    }
    /* dS = P (dZ mask / (1 - p) - D) */
#pragma unroll
    for (int n = 0; n < BNK / 8; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int col = n0 + n * 8 + 2 * t4 + (e & 1), row = e < 2 ? r0 : r1;
        float p = exp2f(s[n][e] * a.scale_log2 - L[e >> 1]);
        if (col >= a.T || (a.causal && col > row)) p = 0;
        float dz = dp[n][e] * a.keep;
        if (a.drop && !attn_kept(a, step, (e < 2 ? e0 : e1) + col)) dz = 0;
        s[n][e] = p * (dz - D[e >> 1]);
      }
    /* dQ += dS K: K [j][d] is B = [k = j][n = d]: ldmatrix.trans */
#pragma unroll
    for (int kk = 0; kk < BNK / 16; kk++) {
      uint32_t da[4];
      da[0] = pack2<DT>(s[2 * kk][0], s[2 * kk][1]);
      da[1] = pack2<DT>(s[2 * kk][2], s[2 * kk][3]);
      da[2] = pack2<DT>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      da[3] = pack2<DT>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int dd = 0; dd < DP / 16; dd++) {
        uint32_t bk[4];
        ldsm4t(bk, cK + (kk * 16 + (lane & 15)) * LD + dd * 16 + (lane >> 4) * 8);
        mma16816<DT>(dq[2 * dd], da, bk[0], bk[1]);
        mma16816<DT>(dq[2 * dd + 1], da, bk[2], bk[3]);
      }
    }
    __syncthreads();
  }

#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int row = r ? r1 : r0;
    if (row >= a.S) continue;
#pragma unroll
    for (int d = 0; d < DP / 8; d++) {
      const int col = d * 8 + 2 * t4;
      if (col >= a.Dh) continue;
#pragma unroll
      for (int u = 0; u < 2; u++)
        st_el<DT>(a.dq, b * a.dqs[0] + h * a.dqs[1] + row * a.dqs[2] +
                            (col + u) * a.dqs[3],
                  dq[d][2 * r + u] * a.scale, a.aq);
    }
  }
}

/* ---- f32: SIMT -------------------------------------------------------------
 * 4 warps; blocks of 32 rows (8 a warp), tiles of 32 rows in shared memory
 * with a pitch of Dh | 1 floats (odd: a lane's row falls in its own bank).
 * A lane owns one column of the score tile and output columns
 * d = lane + 32 c (Dh <= 128). expf, not exp2f: the f32 path is the
 * accurate one. */
enum { F32_BLK = 32, F32_RW = 8, F32_DC = 4 };
static_assert(F32_BLK == 32 && F32_RW * 4 == F32_BLK && F32_DC * 32 == 128,
              "the f32 kernels: a lane per row or column of a tile");

/* rows [r0, r0 + 32) of an [n, Dh] f32 matrix into s[32][ld], zeros past n */
__device__ __forceinline__ void tile_load32(float *s, const float *g, int64_t rs,
                                            int r0, int n, int Dh, int ld) {
  for (int c = threadIdx.x; c < F32_BLK * Dh; c += blockDim.x) {
    const int r = c / Dh, d = c % Dh;
    s[r * ld + d] = r0 + r < n ? g[(int64_t)(r0 + r) * rs + d] : 0.0f;
  }
}

__device__ __forceinline__ float dot32(const float *x, const float *y, int n) {
  float s = 0;
  for (int d = 0; d < n; d++) s += x[d] * y[d];
  return s;
}

/* grid (H, B, ceil(S / 32)). q, k, v -> o, lse. */
__global__ void __launch_bounds__(128) k_sdpa_fwd32(SdpaArgs a) {
  const int ld = a.Dh | 1;
  ATTN_SMEM(smem);
  float *sQ = (float *)smem, *sK = sQ + F32_BLK * ld, *sV = sK + F32_BLK * ld;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int h = blockIdx.x, b = blockIdx.y;
  const int mb = a.causal ? (int)(gridDim.z - 1 - blockIdx.z) : (int)blockIdx.z;
  const int m0 = mb * F32_BLK, hk = h / (a.H / a.Hkv);
  const float *q = (const float *)a.q + b * a.qs[0] + h * a.qs[1];
  const float *k = (const float *)a.k + b * a.ks[0] + hk * a.ks[1];
  const float *v = (const float *)a.v + b * a.vs[0] + hk * a.vs[1];
  const int nend = a.causal ? imin(a.T, m0 + F32_BLK) : a.T;
  const uint64_t step = a.drop ? *a.step : 0;
  tile_load32(sQ, q, a.qs[2], m0, a.S, a.Dh, ld);
  float o[F32_RW][F32_DC], mx[F32_RW], l[F32_RW];
#pragma unroll
  for (int r = 0; r < F32_RW; r++) {
    mx[r] = -INFINITY, l[r] = 0;
#pragma unroll
    for (int c = 0; c < F32_DC; c++) o[r][c] = 0;
  }
  for (int n0 = 0; n0 < nend; n0 += F32_BLK) {
    __syncthreads();
    tile_load32(sK, k, a.ks[2], n0, a.T, a.Dh, ld);
    tile_load32(sV, v, a.vs[2], n0, a.T, a.Dh, ld);
    __syncthreads();
    const int j = n0 + lane;
#pragma unroll
    for (int r = 0; r < F32_RW; r++) {
      const int il = warp * F32_RW + r, i = m0 + il;
      const bool valid = j < a.T && !(a.causal && j > i);
      const float s = valid ? dot32(sQ + il * ld, sK + lane * ld, a.Dh) * a.scale
                            : -INFINITY;
      const float mnew = fmaxf(mx[r], warp_max(s));
      const float mref = mnew == -INFINITY ? 0.0f : mnew;
      const float alpha = expf(mx[r] - mref);
      float p = valid ? expf(s - mref) : 0.0f;
      l[r] = l[r] * alpha + warp_sum(p);
      mx[r] = mnew;
      if (a.drop && valid &&
          !attn_kept(a, step, (((uint64_t)b * a.H + h) * a.S + i) * a.T + j))
        p = 0;
#pragma unroll
      for (int c = 0; c < F32_DC; c++) o[r][c] *= alpha;
      for (int jj = 0; jj < F32_BLK; jj++) {
        const float pj = __shfl_sync(0xffffffffu, p, jj);
#pragma unroll
        for (int c = 0; c < F32_DC; c++) {
          const int d = lane + 32 * c;
          if (d < a.Dh) o[r][c] += pj * sV[jj * ld + d];
        }
      }
    }
  }
  float *op = (float *)a.o + b * a.os[0] + h * a.os[1];
#pragma unroll
  for (int r = 0; r < F32_RW; r++) {
    const int i = m0 + warp * F32_RW + r;
    if (i >= a.S) continue;
    if (a.lse && lane == 0)
      a.lse[b * a.ls[0] + h * a.ls[1] + i * a.ls[2]] = mx[r] + logf(l[r]);
    const float inv = a.keep / l[r];
#pragma unroll
    for (int c = 0; c < F32_DC; c++) {
      const int d = lane + 32 * c;
      if (d < a.Dh) op[i * a.os[2] + d * a.os[3]] = o[r][c] * inv;
    }
  }
}

/* grid (Hkv, B, ceil(T / 32)): dK, dV of 32 kv rows (8 a warp), looping
 * over the q tiles of every head of the group; a lane is a q row of the
 * tile. */
__global__ void __launch_bounds__(128) k_sdpa_bwd_kv32(SdpaArgs a) {
  const int ld = a.Dh | 1;
  ATTN_SMEM(smem);
  float *sK = (float *)smem, *sV = sK + F32_BLK * ld;
  float *sQ = sV + F32_BLK * ld, *sO = sQ + F32_BLK * ld; /* sO: dO */
  float *sL = sO + F32_BLK * ld, *sD = sL + F32_BLK;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int hk = blockIdx.x, b = blockIdx.y, n0 = blockIdx.z * F32_BLK;
  const int G = a.H / a.Hkv;
  const float *k = (const float *)a.k + b * a.ks[0] + hk * a.ks[1];
  const float *v = (const float *)a.v + b * a.vs[0] + hk * a.vs[1];
  const uint64_t step = a.drop ? *a.step : 0;
  tile_load32(sK, k, a.ks[2], n0, a.T, a.Dh, ld);
  tile_load32(sV, v, a.vs[2], n0, a.T, a.Dh, ld);
  float dk[F32_RW][F32_DC], dv[F32_RW][F32_DC];
#pragma unroll
  for (int r = 0; r < F32_RW; r++)
#pragma unroll
    for (int c = 0; c < F32_DC; c++) dk[r][c] = dv[r][c] = 0;
  const int mstart = a.causal ? (n0 / F32_BLK) * F32_BLK : 0;
  for (int hh = 0; hh < G; hh++) {
    const int h = hk * G + hh;
    const float *q = (const float *)a.q + b * a.qs[0] + h * a.qs[1];
    const float *dout = (const float *)a.dout + b * a.dos[0] + h * a.dos[1];
    for (int m0 = mstart; m0 < a.S; m0 += F32_BLK) {
      __syncthreads();
      tile_load32(sQ, q, a.qs[2], m0, a.S, a.Dh, ld);
      tile_load32(sO, dout, a.dos[2], m0, a.S, a.Dh, ld);
      if (threadIdx.x < F32_BLK) {
        const int row = m0 + threadIdx.x;
        sL[threadIdx.x] =
            row < a.S ? a.lse[b * a.ls[0] + h * a.ls[1] + row * a.ls[2]] : INFINITY;
        sD[threadIdx.x] =
            row < a.S ? a.dsum[((int64_t)b * a.H + h) * a.S + row] : 0.0f;
      }
      __syncthreads();
      const int i = m0 + lane;
#pragma unroll
      for (int r = 0; r < F32_RW; r++) {
        const int jl = warp * F32_RW + r, j = n0 + jl;
        float p = expf(dot32(sK + jl * ld, sQ + lane * ld, a.Dh) * a.scale -
                       sL[lane]);
        if (a.causal && j > i) p = 0;
        const float dz = dot32(sV + jl * ld, sO + lane * ld, a.Dh);
        const bool kept =
            !a.drop ||
            attn_kept(a, step, (((uint64_t)b * a.H + h) * a.S + i) * a.T + j);
        const float z = kept ? p * a.keep : 0.0f;
        const float ds = p * ((kept ? dz * a.keep : 0.0f) - sD[lane]);
        for (int ii = 0; ii < F32_BLK; ii++) {
          const float zi = __shfl_sync(0xffffffffu, z, ii);
          const float dsi = __shfl_sync(0xffffffffu, ds, ii);
#pragma unroll
          for (int c = 0; c < F32_DC; c++) {
            const int d = lane + 32 * c;
            if (d < a.Dh) {
              dv[r][c] += zi * sO[ii * ld + d];
              dk[r][c] += dsi * sQ[ii * ld + d];
            }
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < F32_RW; r++) {
    const int j = n0 + warp * F32_RW + r;
    if (j >= a.T) continue;
#pragma unroll
    for (int c = 0; c < F32_DC; c++) {
      const int d = lane + 32 * c;
      if (d >= a.Dh) continue;
      if (a.dk)
        st_el<MDLRT_F32>(a.dk, b * a.dks[0] + hk * a.dks[1] + j * a.dks[2] +
                                   d * a.dks[3], dk[r][c] * a.scale, a.ak);
      if (a.dv)
        st_el<MDLRT_F32>(a.dv, b * a.dvs[0] + hk * a.dvs[1] + j * a.dvs[2] +
                                   d * a.dvs[3], dv[r][c], a.av);
    }
  }
}

/* grid (H, B, ceil(S / 32)): dQ of 32 query rows (8 a warp); a lane is a
 * kv column of the tile. */
__global__ void __launch_bounds__(128) k_sdpa_bwd_q32(SdpaArgs a) {
  const int ld = a.Dh | 1;
  ATTN_SMEM(smem);
  float *sQ = (float *)smem, *sO = sQ + F32_BLK * ld; /* sO: dO */
  float *sK = sO + F32_BLK * ld, *sV = sK + F32_BLK * ld;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int h = blockIdx.x, b = blockIdx.y;
  const int mb = a.causal ? (int)(gridDim.z - 1 - blockIdx.z) : (int)blockIdx.z;
  const int m0 = mb * F32_BLK, hk = h / (a.H / a.Hkv);
  const float *q = (const float *)a.q + b * a.qs[0] + h * a.qs[1];
  const float *dout = (const float *)a.dout + b * a.dos[0] + h * a.dos[1];
  const float *k = (const float *)a.k + b * a.ks[0] + hk * a.ks[1];
  const float *v = (const float *)a.v + b * a.vs[0] + hk * a.vs[1];
  const int nend = a.causal ? imin(a.T, m0 + F32_BLK) : a.T;
  const uint64_t step = a.drop ? *a.step : 0;
  tile_load32(sQ, q, a.qs[2], m0, a.S, a.Dh, ld);
  tile_load32(sO, dout, a.dos[2], m0, a.S, a.Dh, ld);
  float L[F32_RW], D[F32_RW], dq[F32_RW][F32_DC];
#pragma unroll
  for (int r = 0; r < F32_RW; r++) {
    const int i = m0 + warp * F32_RW + r;
    L[r] = i < a.S ? a.lse[b * a.ls[0] + h * a.ls[1] + i * a.ls[2]] : INFINITY;
    D[r] = i < a.S ? a.dsum[((int64_t)b * a.H + h) * a.S + i] : 0.0f;
#pragma unroll
    for (int c = 0; c < F32_DC; c++) dq[r][c] = 0;
  }
  for (int n0 = 0; n0 < nend; n0 += F32_BLK) {
    __syncthreads();
    tile_load32(sK, k, a.ks[2], n0, a.T, a.Dh, ld);
    tile_load32(sV, v, a.vs[2], n0, a.T, a.Dh, ld);
    __syncthreads();
    const int j = n0 + lane;
#pragma unroll
    for (int r = 0; r < F32_RW; r++) {
      const int il = warp * F32_RW + r, i = m0 + il;
      float p = expf(dot32(sQ + il * ld, sK + lane * ld, a.Dh) * a.scale - L[r]);
      if (j >= a.T || (a.causal && j > i)) p = 0;
      float dz = dot32(sO + il * ld, sV + lane * ld, a.Dh) * a.keep;
      if (a.drop &&
          !attn_kept(a, step, (((uint64_t)b * a.H + h) * a.S + i) * a.T + j))
        dz = 0;
      const float ds = p * (dz - D[r]);
      for (int jj = 0; jj < F32_BLK; jj++) {
        const float dsj = __shfl_sync(0xffffffffu, ds, jj);
#pragma unroll
        for (int c = 0; c < F32_DC; c++) {
          const int d = lane + 32 * c;
          if (d < a.Dh) dq[r][c] += dsj * sK[jj * ld + d];
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < F32_RW; r++) {
    const int i = m0 + warp * F32_RW + r;
    if (i >= a.S) continue;
#pragma unroll
    for (int c = 0; c < F32_DC; c++) {
      const int d = lane + 32 * c;
      if (d < a.Dh)
        st_el<MDLRT_F32>(a.dq, b * a.dqs[0] + h * a.dqs[1] + i * a.dqs[2] +
                                   d * a.dqs[3], dq[r][c] * a.scale, a.aq);
    }
  }
}

/* ---- launch plans (shared with the host emulation) ----------------------
 * attn_launch(kernel, grid, threads, shared bytes, args) is the CUDA
 * launch here and the emulator's otherwise. */
#ifndef MDLRT_ATTN_EMU
template <typename K>
static void attn_launch(K kern, dim3 grid, int threads, int smem,
                        const SdpaArgs &a) {
  if (smem > 48 * 1024)
    CUDA_CHECK(cudaFuncSetAttribute(
        kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  kern<<<grid, threads, smem, mdlrt_rt.stream>>>(a);
  KERNEL_CHECK();
}
#endif

static int attn_cdiv(int a, int b) { return (a + b - 1) / b; }

/* shared bytes of each kernel */
static int fwd16_smem(int DP, int BM, int BN) { return (BM + 4 * BN) * (DP + 8) * 2; }
static int bwd_kv16_smem(int DP, int BMQ) {
  return (2 * 64 + 4 * BMQ) * (DP + 8) * 2 + 4 * BMQ * 4;
}
static int bwd_q16_smem(int DP, int BNK) { return (2 * 64 + 4 * BNK) * (DP + 8) * 2; }

/* The forward's block: NW warps (4, or 8 with MDLRT_SDPA_WARPS=8) of MT m16
 * tiles each. Up to Dh 64: MT = 2 (K and V fragments serve two products)
 * over kv tiles of 32 rows; above, MT = 1 over tiles of 64 (registers:
 * the accumulators of O and S fill them). */
template <int DT, int DP, int NW>
static void fwd16_nw(const SdpaArgs &a) {
  constexpr int MT = DP <= 64 ? 2 : 1, BN = DP <= 64 ? 32 : 64;
  constexpr int BM = 16 * MT * NW;
  attn_launch(k_sdpa_fwd16<DT, DP, NW, MT, BN>,
              dim3(a.H, a.B, attn_cdiv(a.S, BM)), NW * 32,
              fwd16_smem(DP, BM, BN), a);
}
template <int DT, int DP>
static void fwd16(const SdpaArgs &a, int nw) {
  if (nw == 8)
    fwd16_nw<DT, DP, 8>(a);
  else
    fwd16_nw<DT, DP, 4>(a);
}

/* kv tile of the backward: 64 rows up to Dh 64, 32 above (registers) */
template <int DT, int DP>
static void bwd16(const SdpaArgs &a) {
  constexpr int BT = DP <= 64 ? 64 : 32;
  if (a.dk || a.dv)
    attn_launch(k_sdpa_bwd_kv16<DT, DP, BT>, dim3(a.Hkv, a.B, attn_cdiv(a.T, 64)),
                128, bwd_kv16_smem(DP, BT), a);
  if (a.dq && a.S)
    attn_launch(k_sdpa_bwd_q16<DT, DP, BT>, dim3(a.H, a.B, attn_cdiv(a.S, 64)),
                128, bwd_q16_smem(DP, BT), a);
}

#define ATTN_DP_CASES(F, DT, ...)                                            \
  switch ((a.Dh + 15) / 16 * 16) {                                           \
  case 16: F<DT, 16>(__VA_ARGS__); break;                                    \
  case 32: F<DT, 32>(__VA_ARGS__); break;                                    \
  case 48: F<DT, 48>(__VA_ARGS__); break;                                    \
  case 64: F<DT, 64>(__VA_ARGS__); break;                                    \
  case 80: F<DT, 80>(__VA_ARGS__); break;                                    \
  case 96: F<DT, 96>(__VA_ARGS__); break;                                    \
  case 112: F<DT, 112>(__VA_ARGS__); break;                                  \
  default: F<DT, 128>(__VA_ARGS__); break;                                   \
  }

/* The forward: a validated SdpaArgs of dtype dt. nw: warps of the 16-bit
 * kernel (4 or 8). */
static void attn_fwd_plan(const SdpaArgs &a, int dt, int nw) {
  if (dt == MDLRT_F32)
    attn_launch(k_sdpa_fwd32, dim3(a.H, a.B, attn_cdiv(a.S, F32_BLK)), 128,
                3 * F32_BLK * (a.Dh | 1) * 4, a);
  else if (dt == MDLRT_F16)
    ATTN_DP_CASES(fwd16, MDLRT_F16, a, nw)
  else
    ATTN_DP_CASES(fwd16, MDLRT_BF16, a, nw)
}

/* The backward after D is in a.dsum. */
static void attn_bwd_plan(const SdpaArgs &a, int dt) {
  if (dt == MDLRT_F32) {
    const int ld = a.Dh | 1;
    if (a.dk || a.dv)
      attn_launch(k_sdpa_bwd_kv32, dim3(a.Hkv, a.B, attn_cdiv(a.T, F32_BLK)), 128,
                  (4 * F32_BLK * ld + 2 * F32_BLK) * 4, a);
    if (a.dq && a.S)
      attn_launch(k_sdpa_bwd_q32, dim3(a.H, a.B, attn_cdiv(a.S, F32_BLK)), 128,
                  4 * F32_BLK * ld * 4, a);
  } else if (dt == MDLRT_F16) {
    ATTN_DP_CASES(bwd16, MDLRT_F16, a)
  } else {
    ATTN_DP_CASES(bwd16, MDLRT_BF16, a)
  }
}

static void attn_rowdot_plan(const SdpaArgs &a, int dt) {
  const int64_t rows = (int64_t)a.B * a.H * a.S;
  const dim3 grid((unsigned)((rows + 3) / 4));
  if (dt == MDLRT_F32)
    attn_launch(k_sdpa_rowdot<MDLRT_F32>, grid, 128, 0, a);
  else if (dt == MDLRT_F16)
    attn_launch(k_sdpa_rowdot<MDLRT_F16>, grid, 128, 0, a);
  else
    attn_launch(k_sdpa_rowdot<MDLRT_BF16>, grid, 128, 0, a);
}

/* ---- the entry points ------------------------------------------------------ */
#ifndef MDLRT_ATTN_EMU

/* A use the kernels do not support: the op, what, exit 1. */
[[noreturn]] static void attn_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "mdlrt: sdpa (op %s): ", mdlrt_rt.op ? mdlrt_rt.op : "(none)");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  fflush(stderr);
  exit(1);
}

static const char *attn_dt_name(int dt) {
  static const char *n[] = {"f32", "f16", "bf16", "i32", "i64", "u8"};
  return dt >= 0 && dt <= MDLRT_U8 ? n[dt] : "?";
}

/* v must be [d0, d1, d2, d3] of dtype dt. */
static void attn_shape(const View &v, const char *name, int dt, int64_t d0,
                       int64_t d1, int64_t d2, int64_t d3) {
  if (!v.p) attn_fail("%s has no buffer", name);
  if (v.dt != dt)
    attn_fail("%s is %s, expected %s", name, attn_dt_name(v.dt), attn_dt_name(dt));
  int rank = d3 < 0 ? 3 : 4;
  if (v.rank != rank || v.dim[0] != d0 || v.dim[1] != d1 || v.dim[2] != d2 ||
      (rank == 4 && v.dim[3] != d3))
    attn_fail("%s has shape [%lld, %lld, %lld%s%lld], expected [%lld, %lld, "
              "%lld%s%lld]", name, (long long)v.dim[0], (long long)v.dim[1],
              (long long)v.dim[2], v.rank == 4 ? ", " : "] rank ",
              v.rank == 4 ? (long long)v.dim[3] : (long long)v.rank,
              (long long)d0, (long long)d1, (long long)d2,
              rank == 4 ? ", " : "", rank == 4 ? (long long)d3 : 0LL);
}

/* An input the tile loads read: head dim contiguous. */
static void attn_rows(const View &v, const char *name, int64_t st[3]) {
  if (v.dim[3] > 1 && v.st[3] != 1)
    attn_fail("%s's head dim has stride %lld: it must be contiguous (1)", name,
              (long long)v.st[3]);
  for (int d = 0; d < 3; d++) st[d] = v.st[d];
}

/* 16 bytes at a time: base 16-aligned, the [b, h, s] strides multiples of
 * 8 elements (16 bytes of a 16-bit dtype). */
static int attn_vec(const View &v) {
  return ((uintptr_t)v.p & 15) == 0 && v.st[0] % 8 == 0 && v.st[1] % 8 == 0 &&
         v.st[2] % 8 == 0;
}

/* Fills what forward and backward share; validates q, k, v. */
static SdpaArgs attn_args(const View &Q, const View &K, const View &V,
                          int causal, double dropout, double scale,
                          uint64_t node) {
  SdpaArgs a;
  memset(&a, 0, sizeof a);
  if (!Q.p || Q.rank != 4) attn_fail("q must be [B, H, S, Dh] (rank %d)", Q.rank);
  const int dt = Q.dt;
  if (dt != MDLRT_F32 && dt != MDLRT_F16 && dt != MDLRT_BF16)
    attn_fail("dtype %s: only f32, f16, bf16", attn_dt_name(dt));
  if (!K.p || K.rank != 4) attn_fail("k must be [B, Hkv, T, Dh] (rank %d)", K.rank);
  attn_shape(K, "k", dt, Q.dim[0], K.dim[1], K.dim[2], Q.dim[3]);
  attn_shape(V, "v", dt, Q.dim[0], K.dim[1], K.dim[2], Q.dim[3]);
  const int64_t B = Q.dim[0], H = Q.dim[1], S = Q.dim[2], Dh = Q.dim[3];
  const int64_t Hkv = K.dim[1], T = K.dim[2];
  if (Hkv < 1 || H % Hkv)
    attn_fail("%lld query heads are not a multiple of %lld kv heads",
              (long long)H, (long long)Hkv);
  if (Dh < 1 || Dh > 128 || (dt != MDLRT_F32 && Dh % 8))
    attn_fail("head dim %lld: supported are 1..128 (f32) and multiples of 8 up "
              "to 128 (f16, bf16)", (long long)Dh);
  if (T < 1) attn_fail("no keys (T = 0)");
  if (B > 65535 || S > (1 << 30) || T > (1 << 30) || B * H > (1LL << 31))
    attn_fail("shape [%lld, %lld, %lld, %lld] too large", (long long)B,
              (long long)H, (long long)S, (long long)Dh);
  if (!(scale > 0)) attn_fail("scale %g: must be positive", scale);
  if (!(dropout >= 0 && dropout <= 1)) attn_fail("dropout %g not in [0, 1]", dropout);
  a.q = Q.p, a.k = K.p, a.v = V.p;
  attn_rows(Q, "q", a.qs);
  attn_rows(K, "k", a.ks);
  attn_rows(V, "v", a.vs);
  a.vec = dt != MDLRT_F32 && attn_vec(Q) && attn_vec(K) && attn_vec(V);
  a.B = (int)B, a.H = (int)H, a.Hkv = (int)Hkv, a.S = (int)S, a.T = (int)T;
  a.Dh = (int)Dh;
  a.causal = causal != 0;
  a.scale = (float)scale;
  a.scale_log2 = (float)(scale * 1.4426950408889634);
  a.drop = dropout > 0;
  a.p = (float)dropout;
  a.keep = dropout >= 1.0 ? 0.0f : (float)(1.0 / (1.0 - dropout));
  a.seed = mdlrt_rt.seed;
  a.stream = MDLRT_STREAM_DROP + node;
  a.step = &mdlrt_rt.dstep->step;
  return a;
}

static void attn_out4(const View &v, int64_t st[4]) {
  for (int d = 0; d < 4; d++) st[d] = v.st[d];
}

/* Warps of the 16-bit forward: 4 (64 query rows a block), or 8 with
 * MDLRT_SDPA_WARPS=8 (a tuning knob for bench/attn.py). */
static int attn_fwd_warps(void) {
  static int nw = 0;
  if (!nw) {
    const char *s = getenv("MDLRT_SDPA_WARPS");
    nw = s && *s == '8' ? 8 : 4;
  }
  return nw;
}

void mdlrt_sdpa_fwd(mdlrt_ref o, mdlrt_ref lse, mdlrt_ref q, mdlrt_ref k,
                    mdlrt_ref v, int causal, double dropout, double scale,
                    uint64_t node) {
  View Q = mdlrt_view(q), K = mdlrt_view(k), V = mdlrt_view(v);
  View O = mdlrt_view(o), L = mdlrt_view(lse);
  SdpaArgs a = attn_args(Q, K, V, causal, dropout, scale, node);
  attn_shape(O, "o", Q.dt, a.B, a.H, a.S, a.Dh);
  a.o = O.p;
  attn_out4(O, a.os);
  a.ovec = O.st[3] == 1 && ((uintptr_t)O.p & 3) == 0 && O.st[0] % 2 == 0 &&
           O.st[1] % 2 == 0 && O.st[2] % 2 == 0;
  if (L.p) {
    attn_shape(L, "lse", MDLRT_F32, a.B, a.H, a.S, -1);
    a.lse = (float *)L.p;
    for (int d = 0; d < 3; d++) a.ls[d] = L.st[d];
  }
  if (!a.S || !a.B || !a.H) return;
  attn_fwd_plan(a, Q.dt, attn_fwd_warps());
}

int64_t mdlrt_sdpa_bwd_scratch(int64_t B, int64_t H, int64_t S, int64_t T,
                               int64_t Dh, int dt) {
  (void)T, (void)Dh, (void)dt;
  return B * H * S * 4; /* D = rowsum(dO * O), f32 [B, H, S] */
}

void mdlrt_sdpa_bwd(mdlrt_ref dq, int aq, mdlrt_ref dk, int ak, mdlrt_ref dv,
                    int av, mdlrt_ref dout, mdlrt_ref q, mdlrt_ref k,
                    mdlrt_ref v, mdlrt_ref o, mdlrt_ref lse, int causal,
                    double dropout, double scale, uint64_t node) {
  View Q = mdlrt_view(q), K = mdlrt_view(k), V = mdlrt_view(v);
  View O = mdlrt_view(o), L = mdlrt_view(lse), dO = mdlrt_view(dout);
  View dQ = mdlrt_view(dq), dK = mdlrt_view(dk), dV = mdlrt_view(dv);
  SdpaArgs a = attn_args(Q, K, V, causal, dropout, scale, node);
  const int dt = Q.dt;
  attn_shape(O, "o", dt, a.B, a.H, a.S, a.Dh);
  attn_shape(dO, "dout", dt, a.B, a.H, a.S, a.Dh);
  attn_shape(L, "lse", MDLRT_F32, a.B, a.H, a.S, -1);
  a.o = O.p, a.dout = dO.p, a.lse = (float *)L.p;
  attn_out4(O, a.os);
  attn_rows(dO, "dout", a.dos);
  for (int d = 0; d < 3; d++) a.ls[d] = L.st[d];
  a.vec = a.vec && attn_vec(dO);
  if (dQ.p) {
    attn_shape(dQ, "dq", dt, a.B, a.H, a.S, a.Dh);
    a.dq = dQ.p, a.aq = aq != 0;
    attn_out4(dQ, a.dqs);
  }
  if (dK.p) {
    attn_shape(dK, "dk", dt, a.B, a.Hkv, a.T, a.Dh);
    a.dk = dK.p, a.ak = ak != 0;
    attn_out4(dK, a.dks);
  }
  if (dV.p) {
    attn_shape(dV, "dv", dt, a.B, a.Hkv, a.T, a.Dh);
    a.dv = dV.p, a.av = av != 0;
    attn_out4(dV, a.dvs);
  }
  if (!a.dq && !a.dk && !a.dv) return;
  if (!a.B || !a.H) return;
  const int64_t need = mdlrt_sdpa_bwd_scratch(a.B, a.H, a.S, a.T, a.Dh, dt);
  if (need > mdlrt_rt.ws_bytes || (need && !mdlrt_rt.ws)) {
    fprintf(stderr,
            "mdlrt: sdpa backward (op %s) needs %lld B of workspace (row sums "
            "of dO*O, f32 [%d, %d, %d]); the workspace has %lld B\n",
            mdlrt_rt.op ? mdlrt_rt.op : "(none)", (long long)need, a.B, a.H,
            a.S, (long long)mdlrt_rt.ws_bytes);
    fflush(stderr);
    exit(1);
  }
  /* S = 0: no queries; the dK, dV kernel still runs (its q loop is
   * empty) and writes zeros */
  a.dsum = (float *)mdlrt_rt.ws;
  if (a.S) attn_rowdot_plan(a, dt);
  attn_bwd_plan(a, dt);
}

#endif /* !MDLRT_ATTN_EMU */
