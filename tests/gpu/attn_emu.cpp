/* tests/gpu/attn_emu.cpp: runs the kernels of runtime/mdlrt_attn.cu on the
 * CPU, with no GPU, and checks them against a materialized attention in
 * double.
 *
 * Key idea: the kernels are plain CUDA C++ except for a few primitives
 * (ldmatrix, mma.sync, cp.async, the 16-bit conversions, shared memory,
 * shuffles, barriers). With MDLRT_ATTN_EMU defined, mdlrt_attn.cu leaves
 * those out and this file supplies them: every CUDA thread of a block is a
 * std::thread, __syncthreads a std::barrier of the block, a warp-level
 * primitive a barrier of its 32 threads around an exchange through shared
 * slots, and mma.sync computes each lane's accumulators from the fragment
 * layout of the PTX ISA (so a wrong fragment index gives wrong numbers
 * here as on the GPU). cp.async copies either at once (mode 0) or, with
 * its destination poisoned with NaN meanwhile, only when cp.async.wait_group
 * retires its group (mode 1): a read before the wait, or a buffer reused
 * too early, shows. Shared memory ends at a guard page and is NaN-filled
 * before each block. What this cannot show: speed, bank conflicts, and the
 * real hardware's rounding inside mma (f32 sums here).
 *
 * Build and run (about a minute; tests/sh/attn_emu.sh does this):
 *   g++ -std=c++20 -O1 -g -pthread -fsanitize=address -Iruntime \
 *     -o build/attn_emu tests/gpu/attn_emu.cpp && build/attn_emu [mode]
 */
#include <sys/mman.h>
#include <unistd.h>

#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <thread>
#include <vector>

#include "mdlrt.h"

/* ---- the CUDA execution model, on threads ------------------------------ */

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
thread_local dim3 threadIdx, blockIdx;
static dim3 gridDim, blockDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)

static struct {
  std::barrier<> *block;
  std::barrier<> *warp[32];
  float fslot[32][32];
  const uint16_t *addr[32][32];
  uint32_t afr[32][32][4], bfr[32][32][2];
  int cp_mode;          /* 0: copy at issue; 1: at the wait, NaN before */
  int errors;           /* emulation-level faults (pending copies) */
  unsigned char *smem;  /* ends at a guard page */
  size_t smem_cap;
} emu;

static inline int e_warp(void) { return (int)threadIdx.x >> 5; }
static inline int e_lane(void) { return (int)threadIdx.x & 31; }
static inline void wsync(void) { emu.warp[e_warp()]->arrive_and_wait(); }
static inline void __syncthreads(void) { emu.block->arrive_and_wait(); }

static inline float __shfl_xor_sync(unsigned, float v, int m) {
  emu.fslot[e_warp()][e_lane()] = v;
  wsync();
  float r = emu.fslot[e_warp()][e_lane() ^ m];
  wsync();
  return r;
}
static inline float __shfl_sync(unsigned, float v, int src) {
  emu.fslot[e_warp()][e_lane()] = v;
  wsync();
  float r = emu.fslot[e_warp()][src];
  wsync();
  return r;
}

#define ATTN_SMEM(p) unsigned char *p = emu.smem

/* 16-bit floats: f16 through _Float16, bf16 by rounding the top half. */
template <int DT> static inline float h2f(uint16_t x) {
  if (DT == MDLRT_F16) {
    _Float16 h;
    memcpy(&h, &x, 2);
    return (float)h;
  }
  uint32_t u = (uint32_t)x << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
template <int DT> static inline uint16_t f2h(float x) {
  uint16_t r;
  if (DT == MDLRT_F16) {
    _Float16 h = (_Float16)x;
    memcpy(&r, &h, 2);
    return r;
  }
  uint32_t u;
  memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1);
  return (uint16_t)(u >> 16);
}
template <int DT> static inline uint32_t pack2(float lo, float hi) {
  return (uint32_t)f2h<DT>(lo) | (uint32_t)f2h<DT>(hi) << 16;
}

/* ldmatrix .x4: lane l gives row l % 8 of matrix l / 8 */
static inline void ldsm_emu(uint32_t r[4], const uint16_t *p, bool trans) {
  const int w = e_warp(), l = e_lane();
  emu.addr[w][l] = p;
  wsync();
  for (int i = 0; i < 4; i++) {
    uint16_t lo, hi;
    if (!trans) {
      const uint16_t *row = emu.addr[w][8 * i + l / 4];
      lo = row[2 * (l % 4)], hi = row[2 * (l % 4) + 1];
    } else {
      lo = emu.addr[w][8 * i + 2 * (l % 4)][l / 4];
      hi = emu.addr[w][8 * i + 2 * (l % 4) + 1][l / 4];
    }
    r[i] = (uint32_t)lo | (uint32_t)hi << 16;
  }
  wsync();
}
static inline void ldsm4(uint32_t r[4], const uint16_t *p) { ldsm_emu(r, p, false); }
static inline void ldsm4t(uint32_t r[4], const uint16_t *p) { ldsm_emu(r, p, true); }

/* mma.sync m16n8k16 .row.col, f32 accumulators; fragments per the PTX ISA:
 * A a0..a7 = (g, 2t+{0,1}), (g+8, 2t+{0,1}), (g, 2t+8+{0,1}), (g+8, ...);
 * B b0..b3 = (k 2t+{0,1}, n g), (k 2t+8+{0,1}, n g); C (g, 2t+{0,1}),
 * (g+8, 2t+{0,1}); g = lane / 4, t = lane % 4. */
template <int DT>
static inline void mma16816(float c[4], const uint32_t a[4], uint32_t b0,
                            uint32_t b1) {
  const int w = e_warp(), l = e_lane();
  memcpy(emu.afr[w][l], a, 16);
  emu.bfr[w][l][0] = b0, emu.bfr[w][l][1] = b1;
  wsync();
  auto half = [](uint32_t x, int k) {
    return (uint16_t)((k & 1) ? x >> 16 : x & 0xffff);
  };
  auto A = [&](int r, int k) {
    uint32_t x = emu.afr[w][(r % 8) * 4 + (k % 8) / 2][(r >= 8) + 2 * (k >= 8)];
    return h2f<DT>(half(x, k));
  };
  auto B = [&](int k, int n) {
    uint32_t x = emu.bfr[w][n * 4 + (k % 8) / 2][k >= 8];
    return h2f<DT>(half(x, k));
  };
  const int g = l / 4, t = l % 4;
  float out[4];
  for (int e = 0; e < 4; e++) {
    const int row = g + (e >= 2 ? 8 : 0), col = 2 * t + (e & 1);
    float s = 0;
    for (int k = 0; k < 16; k++) s += A(row, k) * B(k, col);
    out[e] = c[e] + s;
  }
  wsync();
  memcpy(c, out, sizeof out);
}

struct CpCopy {
  uint16_t *dst;
  const uint16_t *src;
  bool ok;
};
thread_local std::vector<CpCopy> cp_open;
thread_local std::deque<std::vector<CpCopy>> cp_groups;

static inline void cp_do(const CpCopy &c) {
  for (int e = 0; e < 8; e++) c.dst[e] = c.ok ? c.src[e] : (uint16_t)0;
}
static inline void cp16(uint16_t *dst, const uint16_t *src, bool ok) {
  CpCopy c = {dst, src, ok};
  if (emu.cp_mode == 0) {
    cp_do(c);
    return;
  }
  for (int e = 0; e < 8; e++) dst[e] = 0xffff; /* NaN until the wait */
  cp_open.push_back(c);
}
static inline void cp_commit(void) {
  cp_groups.push_back(cp_open);
  cp_open.clear();
}
template <int N> static inline void cp_wait(void) {
  while (cp_groups.size() > (size_t)N) {
    for (const CpCopy &c : cp_groups.front()) cp_do(c);
    cp_groups.pop_front();
  }
}

template <typename K, typename A>
static void attn_launch(K kern, dim3 grid, int threads, int smem, const A &a);

#define MDLRT_ATTN_EMU 1
#include "../../runtime/mdlrt_attn.cu"

/* One block at a time, each CUDA thread a std::thread. */
template <typename K, typename A>
static void attn_launch(K kern, dim3 grid, int threads, int smem, const A &a) {
  if ((size_t)smem > emu.smem_cap) {
    printf("emu: %d bytes of shared memory asked, %zu emulated\n", smem,
           emu.smem_cap);
    exit(2);
  }
  gridDim = grid;
  blockDim = dim3((unsigned)threads);
  unsigned char *base = emu.smem;
  for (unsigned z = 0; z < grid.z; z++)
    for (unsigned y = 0; y < grid.y; y++)
      for (unsigned x = 0; x < grid.x; x++) {
        /* the block's shared memory ends at the guard page */
        emu.smem = base + emu.smem_cap - (((size_t)smem + 15) & ~(size_t)15);
        memset(emu.smem, 0xff, (size_t)smem);
        std::barrier<> bb(threads);
        std::vector<std::barrier<> *> wb;
        emu.block = &bb;
        for (int w = 0; w < threads / 32; w++) emu.warp[w] = new std::barrier<>(32);
        std::vector<std::thread> ts;
        for (int t = 0; t < threads; t++)
          ts.emplace_back([&, t, x, y, z] {
            threadIdx = dim3((unsigned)t);
            blockIdx = dim3(x, y, z);
            cp_open.clear();
            cp_groups.clear();
            kern(a);
            if (!cp_open.empty() || !cp_groups.empty()) {
              __atomic_add_fetch(&emu.errors, 1, __ATOMIC_RELAXED);
            }
          });
        for (auto &t : ts) t.join();
        for (int w = 0; w < threads / 32; w++) delete emu.warp[w];
        emu.smem = base;
      }
}

/* ---- test data ------------------------------------------------------------ */

static uint64_t rs = 0x9e3779b97f4a7c15ull;
static double urand(void) {
  rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
  return (double)(rs >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static int es(int dt) { return dt == MDLRT_F32 ? 4 : 2; }
static float rnd_to(int dt, float x) {
  if (dt == MDLRT_F16) return h2f<MDLRT_F16>(f2h<MDLRT_F16>(x));
  if (dt == MDLRT_BF16) return h2f<MDLRT_BF16>(f2h<MDLRT_BF16>(x));
  return x;
}
static double getv(int dt, const void *p, int64_t i) {
  if (dt == MDLRT_F32) return ((const float *)p)[i];
  if (dt == MDLRT_F16) return h2f<MDLRT_F16>(((const uint16_t *)p)[i]);
  return h2f<MDLRT_BF16>(((const uint16_t *)p)[i]);
}
static void setv(int dt, void *p, int64_t i, float x) {
  if (dt == MDLRT_F32) ((float *)p)[i] = x;
  else if (dt == MDLRT_F16) ((uint16_t *)p)[i] = f2h<MDLRT_F16>(x);
  else ((uint16_t *)p)[i] = f2h<MDLRT_BF16>(x);
}

/* A [n0, n1, n2, n3] tensor in its own buffer. layout 0: contiguous;
 * 1: [n0, n2, n1, n3] memory (a transposed view, rows of n1*n3 + 8);
 * 2: the same with rows of n1*n3 + 3 and one element of offset (no 16-byte
 * loads). */
struct Ten {
  int dt;
  int64_t n[4], st[4];
  void *mem;  /* malloc'd */
  char *p;    /* element (0,0,0,0) */
  std::vector<double> val; /* contiguous copy of the values */
};
static Ten mkten(int dt, int64_t n0, int64_t n1, int64_t n2, int64_t n3,
                 int layout, bool fill) {
  Ten t;
  t.dt = dt;
  t.n[0] = n0, t.n[1] = n1, t.n[2] = n2, t.n[3] = n3;
  int64_t off = 0, total;
  if (layout == 0) {
    t.st[3] = 1, t.st[2] = n3, t.st[1] = n2 * n3, t.st[0] = n1 * n2 * n3;
    total = n0 * t.st[0];
  } else {
    int64_t w = n1 * n3 + (layout == 1 ? 8 : 3);
    t.st[3] = 1, t.st[1] = n3, t.st[2] = w, t.st[0] = n2 * w;
    off = layout == 2 ? 1 : 0;
    total = n0 * t.st[0] + off;
  }
  size_t bytes = ((size_t)total * es(dt) + 63) & ~(size_t)63;
  t.mem = aligned_alloc(64, bytes);
  memset(t.mem, 0xff, bytes); /* NaN outside the view */
  t.p = (char *)t.mem + off * es(dt);
  t.val.assign((size_t)(n0 * n1 * n2 * n3), 0.0);
  int64_t c = 0;
  for (int64_t a = 0; a < n0; a++)
    for (int64_t b = 0; b < n1; b++)
      for (int64_t s = 0; s < n2; s++)
        for (int64_t d = 0; d < n3; d++, c++) {
          float x = fill ? rnd_to(dt, (float)urand()) : 0.0f;
          setv(dt, t.p, a * t.st[0] + b * t.st[1] + s * t.st[2] + d * t.st[3], x);
          t.val[(size_t)c] = x;
        }
  return t;
}
static double tget(const Ten &t, int64_t a, int64_t b, int64_t s, int64_t d) {
  return getv(t.dt, t.p, a * t.st[0] + b * t.st[1] + s * t.st[2] + d * t.st[3]);
}

struct Case {
  const char *name;
  int dt, B, H, Hkv, S, T, Dh, causal;
  double p;
  int lin, lout; /* layouts of q/k/v/dO and of o/dq/dk/dv */
  int accum, nw;
};

static int failures;

static void compare(const Case &c, const char *what, const Ten &got,
                    const std::vector<double> &ref) {
  double at = c.dt == MDLRT_F32 ? 2e-5 : c.dt == MDLRT_F16 ? 4e-3 : 3e-2;
  double rt = c.dt == MDLRT_F32 ? 1e-4 : c.dt == MDLRT_F16 ? 4e-3 : 3e-2;
  double werr = 0;
  int64_t bad = 0, idx = 0;
  for (int64_t a = 0; a < got.n[0]; a++)
    for (int64_t b = 0; b < got.n[1]; b++)
      for (int64_t s = 0; s < got.n[2]; s++)
        for (int64_t d = 0; d < got.n[3]; d++, idx++) {
          double g = tget(got, a, b, s, d), r = ref[(size_t)idx];
          double err = fabs(g - r), lim = at + rt * fabs(r);
          if (!(err <= lim)) bad++;
          if (!(err <= werr)) werr = err; /* NaN sticks */
        }
  printf("  %-26s %-3s %s max|err| %.3g (%lld bad of %lld)\n", c.name, what,
         bad ? "FAIL" : "ok", werr, (long long)bad, (long long)idx);
  failures += bad != 0;
}

/* the materialized attention in double: o, lse and the gradients */
static void reference(const Case &c, const Ten &q, const Ten &k, const Ten &v,
                      const Ten &dO, double scale, uint64_t seed, uint64_t node,
                      uint64_t step, std::vector<double> &o,
                      std::vector<double> &lse, std::vector<double> &dq,
                      std::vector<double> &dk, std::vector<double> &dv) {
  const int B = c.B, H = c.H, S = c.S, T = c.T, Dh = c.Dh, G = c.H / c.Hkv;
  const double keep = c.p > 0 ? (double)(float)(1.0 / (1.0 - c.p)) : 1.0;
  o.assign((size_t)B * H * S * Dh, 0), lse.assign((size_t)B * H * S, 0);
  dq.assign((size_t)B * H * S * Dh, 0), dk.assign((size_t)B * c.Hkv * T * Dh, 0);
  dv.assign((size_t)B * c.Hkv * T * Dh, 0);
  std::vector<double> P(T), M(T), dP(T);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++) {
      const int hk = h / G;
      for (int i = 0; i < S; i++) {
        double mx = -INFINITY;
        for (int j = 0; j < T; j++) {
          double s = 0;
          for (int d = 0; d < Dh; d++) s += tget(q, b, h, i, d) * tget(k, b, hk, j, d);
          P[j] = (c.causal && j > i) ? -INFINITY : s * scale;
          mx = fmax(mx, P[j]);
          uint64_t e = (((uint64_t)b * H + h) * S + i) * T + j;
          M[j] = c.p > 0 ? (mdlrt_uniform(seed, MDLRT_STREAM_DROP + node,
                                          mdlrt_dropout_index(step, e)) >= (float)c.p)
                         : 1.0;
        }
        double sum = 0;
        for (int j = 0; j < T; j++) sum += exp(P[j] - mx);
        const double L = mx + log(sum);
        lse[((size_t)b * H + h) * S + i] = L;
        for (int j = 0; j < T; j++) P[j] = exp(P[j] - L);
        double Dsum = 0;
        for (int j = 0; j < T; j++) {
          double dz = 0;
          for (int d = 0; d < Dh; d++) dz += tget(dO, b, h, i, d) * tget(v, b, hk, j, d);
          dP[j] = dz * M[j] * keep;
          Dsum += P[j] * dP[j];
        }
        for (int j = 0; j < T; j++) {
          const double z = P[j] * M[j] * keep, ds = P[j] * (dP[j] - Dsum) * scale;
          for (int d = 0; d < Dh; d++) {
            const size_t oi = (((size_t)b * H + h) * S + i) * Dh + d;
            const size_t ki = (((size_t)b * c.Hkv + hk) * T + j) * Dh + d;
            o[oi] += z * tget(v, b, hk, j, d);
            dq[oi] += ds * tget(k, b, hk, j, d);
            dk[ki] += ds * tget(q, b, h, i, d);
            dv[ki] += z * tget(dO, b, h, i, d);
          }
        }
      }
    }
}

static void run_case(const Case &c) {
  const double scale = 1.0 / sqrt((double)c.Dh);
  const uint64_t seed = 1234, node = 5;
  uint64_t step = 3;
  Ten q = mkten(c.dt, c.B, c.H, c.S, c.Dh, c.lin, true);
  Ten k = mkten(c.dt, c.B, c.Hkv, c.T, c.Dh, c.lin, true);
  Ten v = mkten(c.dt, c.B, c.Hkv, c.T, c.Dh, c.lin, true);
  Ten dO = mkten(c.dt, c.B, c.H, c.S, c.Dh, c.lin, true);
  Ten o = mkten(c.dt, c.B, c.H, c.S, c.Dh, c.lout, false);
  Ten dq = mkten(c.dt, c.B, c.H, c.S, c.Dh, c.lout, c.accum);
  Ten dk = mkten(c.dt, c.B, c.Hkv, c.T, c.Dh, c.lout, c.accum);
  Ten dv = mkten(c.dt, c.B, c.Hkv, c.T, c.Dh, c.lout, c.accum);
  std::vector<float> lse((size_t)c.B * c.H * c.S, NAN), dsum(lse.size(), NAN);

  SdpaArgs a;
  memset(&a, 0, sizeof a);
  a.q = q.p, a.k = k.p, a.v = v.p, a.o = o.p, a.lse = lse.data();
  a.dout = dO.p, a.dsum = dsum.data();
  a.dq = dq.p, a.dk = dk.p, a.dv = dv.p;
  a.aq = a.ak = a.av = c.accum;
  for (int d = 0; d < 3; d++) {
    a.qs[d] = q.st[d], a.ks[d] = k.st[d], a.vs[d] = v.st[d], a.dos[d] = dO.st[d];
  }
  for (int d = 0; d < 4; d++) {
    a.os[d] = o.st[d], a.dqs[d] = dq.st[d], a.dks[d] = dk.st[d], a.dvs[d] = dv.st[d];
  }
  a.ls[0] = (int64_t)c.H * c.S, a.ls[1] = c.S, a.ls[2] = 1;
  a.B = c.B, a.H = c.H, a.Hkv = c.Hkv, a.S = c.S, a.T = c.T, a.Dh = c.Dh;
  a.causal = c.causal;
  auto al = [&](const Ten &t) {
    return ((uintptr_t)t.p & 15) == 0 && t.st[0] % 8 == 0 && t.st[1] % 8 == 0 &&
           t.st[2] % 8 == 0;
  };
  a.vec = c.dt != MDLRT_F32 && al(q) && al(k) && al(v) && al(dO);
  a.ovec = o.st[3] == 1 && ((uintptr_t)o.p & 3) == 0 && o.st[0] % 2 == 0 &&
           o.st[1] % 2 == 0 && o.st[2] % 2 == 0;
  a.scale = (float)scale;
  a.scale_log2 = (float)(scale * 1.4426950408889634);
  a.drop = c.p > 0, a.p = (float)c.p;
  a.keep = (float)(1.0 / (1.0 - c.p));
  a.seed = seed, a.stream = MDLRT_STREAM_DROP + node, a.step = &step;

  std::vector<double> ro, rl, rdq, rdk, rdv;
  reference(c, q, k, v, dO, scale, seed, node, step, ro, rl, rdq, rdk, rdv);
  if (c.accum) {
    for (size_t i = 0; i < rdq.size(); i++) rdq[i] += dq.val[i];
    for (size_t i = 0; i < rdk.size(); i++) rdk[i] += dk.val[i], rdv[i] += dv.val[i];
  }

  attn_fwd_plan(a, c.dt, c.nw);
  attn_rowdot_plan(a, c.dt);
  attn_bwd_plan(a, c.dt);

  printf("%s (vec %d, ovec %d)\n", c.name, a.vec, a.ovec);
  if (getenv("EMU_DUMP")) { /* attn_test's format, for attn_check.py */
    char path[512];
    snprintf(path, sizeof path, "%s/attn_%s.bin", getenv("EMU_DUMP"), c.name);
    for (char *s = path + strlen(getenv("EMU_DUMP")) + 1; *s; s++)
      if (*s == ' ') *s = '_';
    FILE *f = fopen(path, "wb");
    auto rec = [&](const char *name, int rank, const int64_t *dim,
                   const std::vector<double> &x) {
      unsigned len = (unsigned)strlen(name), r = (unsigned)rank;
      fwrite(&len, 4, 1, f), fwrite(name, 1, len, f), fwrite(&r, 4, 1, f);
      fwrite(dim, 8, r, f), fwrite(x.data(), 8, x.size(), f);
    };
    auto cur = [&](const Ten &t) {
      std::vector<double> x;
      for (int64_t i0 = 0; i0 < t.n[0]; i0++)
        for (int64_t i1 = 0; i1 < t.n[1]; i1++)
          for (int64_t i2 = 0; i2 < t.n[2]; i2++)
            for (int64_t i3 = 0; i3 < t.n[3]; i3++)
              x.push_back(tget(t, i0, i1, i2, i3));
      return x;
    };
    std::vector<double> pr = {(double)c.dt, (double)c.B, (double)c.H,
                              (double)c.Hkv, (double)c.S, (double)c.T,
                              (double)c.Dh, (double)c.causal, c.p, scale,
                              (double)seed, (double)step, (double)node,
                              (double)c.accum, 1, 1, 1};
    int64_t np = 17, lsd[3] = {c.B, c.H, c.S};
    rec("params", 1, &np, pr);
    rec("q", 4, q.n, q.val), rec("k", 4, k.n, k.val), rec("v", 4, v.n, v.val);
    rec("dout", 4, dO.n, dO.val);
    if (c.accum) rec("dq0", 4, dq.n, dq.val), rec("dk0", 4, dk.n, dk.val),
                 rec("dv0", 4, dv.n, dv.val);
    rec("o", 4, o.n, cur(o));
    rec("lse", 3, lsd, std::vector<double>(lse.begin(), lse.end()));
    rec("dq", 4, dq.n, cur(dq)), rec("dk", 4, dk.n, cur(dk));
    rec("dv", 4, dv.n, cur(dv));
    fclose(f);
  }
  compare(c, "o", o, ro);
  Ten lt;
  lt.dt = MDLRT_F32, lt.n[0] = c.B, lt.n[1] = c.H, lt.n[2] = c.S, lt.n[3] = 1;
  lt.st[0] = (int64_t)c.H * c.S, lt.st[1] = c.S, lt.st[2] = 1, lt.st[3] = 1;
  lt.p = (char *)lse.data();
  Case cl = c;
  cl.dt = c.dt == MDLRT_F32 ? MDLRT_F32 : MDLRT_F16; /* lse: f32, 16-bit inputs */
  compare(cl, "lse", lt, rl);
  compare(c, "dq", dq, rdq);
  compare(c, "dk", dk, rdk);
  compare(c, "dv", dv, rdv);
  for (Ten *t : {&q, &k, &v, &dO, &o, &dq, &dk, &dv}) free(t->mem);
}

int main(int argc, char **argv) {
  emu.cp_mode = argc > 1 ? atoi(argv[1]) : 1;
  /* shared memory with a guard page after it */
  const size_t cap = 256 * 1024, pg = (size_t)sysconf(_SC_PAGESIZE);
  unsigned char *m = (unsigned char *)mmap(NULL, cap + pg, PROT_READ | PROT_WRITE,
                                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED || mprotect(m + cap, pg, PROT_NONE)) {
    perror("mmap");
    return 2;
  }
  emu.smem = m, emu.smem_cap = cap;
  const int F = MDLRT_F32, H16 = MDLRT_F16, BF = MDLRT_BF16;
  static const Case cases[] = {
      /* name                     dt  B  H Hkv  S   T  Dh  c  p    lin lout acc nw */
      {"bf16 d64 causal",         BF, 1, 2, 2, 80, 80, 64, 1, 0.0, 1, 0, 0, 4},
      {"f16 d64 noncausal S!=T",  H16, 1, 2, 1, 70, 100, 64, 0, 0.0, 1, 0, 0, 4},
      {"bf16 d128 gqa causal",    BF, 1, 4, 2, 96, 96, 128, 1, 0.0, 0, 1, 0, 4},
      {"bf16 d80 drop",           BF, 1, 2, 1, 40, 72, 80, 0, 0.1, 1, 0, 0, 4},
      {"f16 d40 causal scalar",   H16, 2, 2, 1, 50, 50, 40, 1, 0.0, 2, 2, 1, 4},
      {"bf16 d32 causal nw8 drop", BF, 1, 2, 2, 150, 150, 32, 1, 0.2, 1, 1, 0, 8},
      {"f16 d8 S<T causal",       H16, 1, 1, 1, 20, 90, 8, 1, 0.0, 0, 0, 0, 4},
      {"f32 d64 causal gqa drop", F, 1, 4, 2, 70, 70, 64, 1, 0.1, 1, 0, 1, 4},
      {"f32 d37 noncausal",       F, 1, 2, 1, 33, 45, 37, 0, 0.0, 2, 2, 0, 4},
      {"f32 d128 causal S>T",     F, 1, 1, 1, 40, 30, 128, 1, 0.0, 0, 0, 0, 4},
      {"f16 d64 causal S300",     H16, 1, 1, 1, 300, 300, 64, 1, 0.1, 1, 0, 0, 4},
      {"bf16 d128 causal S200 gqa", BF, 1, 2, 1, 200, 200, 128, 1, 0.0, 1, 1, 1, 4},
      {"bf16 d16 noncausal S<T",  BF, 1, 1, 1, 130, 260, 16, 0, 0.0, 0, 0, 0, 8},
  };
  const char *only = getenv("EMU_ONLY");
  for (const Case &c : cases) {
    if (only && !strstr(c.name, only)) continue;
    run_case(c);
  }
  if (emu.errors) printf("emu: %d threads ended with cp.async pending\n", emu.errors);
  printf("attn_emu (cp mode %d): %d failed\n", emu.cp_mode, failures + (emu.errors > 0));
  return failures || emu.errors ? 1 : 0;
}
