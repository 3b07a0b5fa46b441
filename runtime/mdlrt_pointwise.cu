/* runtime/mdlrt_pointwise.cu: the maps over elements: the unary ops
 * (activations, exp, softplus, scale), add and mul with NumPy broadcasting
 * and the reductions of their backward, dropout (masks drawn from the
 * shared counter-based RNG at the step on the device, so graph replays
 * redraw) and rope (rotary position embedding). The maps have a contiguous
 * path eight elements at a time and a strided one.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdlrt_dev.cuh"
#include "mdlrt_rng.h"

__device__ __forceinline__ float unary_f(int op, float x, float c) {
  switch (op) {
  case MDLRT_RELU: return x > 0.0f ? x : 0.0f;
  case MDLRT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
  case MDLRT_SILU: return x / (1.0f + expf(-x));
  case MDLRT_TANH: return tanhf(x);
  case MDLRT_SIGMOID: return 1.0f / (1.0f + expf(-x));
  case MDLRT_SCALE: return c * x;
  case MDLRT_COPY: return x;
  case MDLRT_EXP: return expf(x);
  case MDLRT_SOFTPLUS: return x > 20.0f ? x : log1pf(expf(x));
  default: __trap(); return 0.0f; /* mdlrt_unary_* reject unknown codes */
  }
}

/* f'(x) * dy, with s the saved tensor (input or output, see mdlrt.h). */
__device__ __forceinline__ float unary_df(int op, float dy, float s,
                                          float c) {
  switch (op) {
  case MDLRT_RELU: return s > 0.0f ? dy : 0.0f;
  case MDLRT_GELU: {
    float cdf = 0.5f * (1.0f + erff(s * 0.70710678118654752f));
    float pdf = 0.39894228040143268f * expf(-0.5f * s * s);
    return dy * (cdf + s * pdf);
  }
  case MDLRT_SILU: {
    float sg = 1.0f / (1.0f + expf(-s));
    return dy * sg * (1.0f + s * (1.0f - sg));
  }
  case MDLRT_TANH: return dy * (1.0f - s * s);
  case MDLRT_SIGMOID: return dy * s * (1.0f - s);
  case MDLRT_SCALE: return c * dy;
  case MDLRT_COPY: return dy;
  case MDLRT_EXP: return dy * s;
  case MDLRT_SOFTPLUS: return s > 20.0f ? dy : dy / (1.0f + expf(-s));
  default: __trap(); return 0.0f; /* mdlrt_unary_* reject unknown codes */
  }
}

__global__ void k_unary_fwd(int op, View y, View x, float c) {
  GRID_LOOP(i, y.n) stf(y, vofs(y, i), unary_f(op, ldf(x, vofs(x, i)), c), 0);
}

__global__ void k_unary_bwd(int op, View dx, int accum, View dy, View s,
                            float c) {
  GRID_LOOP(i, dx.n) {
    float sv = s.p ? ldf(s, vofs(s, i)) : 0.0f;
    stf(dx, vofs(dx, i), unary_df(op, ldf(dy, vofs(dy, i)), sv, c), accum);
  }
}

__global__ void k_unary_fwd_vec(int op, View y, View x, float c) {
  float f[8];
  VEC_LOOP(i, y.n) {
    ld8(x, i, f);
    for (int k = 0; k < 8; k++) f[k] = unary_f(op, f[k], c);
    st8(y, i, f, 0);
  }
  TAIL_LOOP(i, y.n) stf(y, i, unary_f(op, ldf(x, i), c), 0);
}

__global__ void k_unary_bwd_vec(int op, View dx, int accum, View dy, View s,
                                float c) {
  float g[8], sv[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  VEC_LOOP(i, dx.n) {
    ld8(dy, i, g);
    if (s.p) ld8(s, i, sv);
    for (int k = 0; k < 8; k++) g[k] = unary_df(op, g[k], sv[k], c);
    st8(dx, i, g, accum);
  }
  TAIL_LOOP(i, dx.n) {
    float t = s.p ? ldf(s, i) : 0.0f;
    stf(dx, i, unary_df(op, ldf(dy, i), t, c), accum);
  }
}

/* The unary ops' codes (mdlrt.h), for the two entry points to check. */
static void unary_check(int op, int line) {
  if (op < MDLRT_RELU || op > MDLRT_SOFTPLUS)
    mdlrt_bad_code("unary op", op, __FILE__, line);
}

void mdlrt_unary_fwd(int op, mdlrt_ref yr, mdlrt_ref xr, double c) {
  unary_check(op, __LINE__);
  View y = mdlrt_view(yr), x = mdlrt_view(xr);
  if (!y.n) return;
  if (vec_ok(y) && vec_ok(x) && y.contig && x.contig)
    k_unary_fwd_vec<<<vec_grid(y.n), 256, 0, mdlrt_rt.stream>>>(op, y, x,
                                                                (float)c);
  else
    k_unary_fwd<<<grid_for(y.n), 256, 0, mdlrt_rt.stream>>>(op, y, x,
                                                            (float)c);
  KERNEL_CHECK();
}

void mdlrt_unary_bwd(int op, mdlrt_ref dxr, int accum, mdlrt_ref dyr,
                     mdlrt_ref sr, double c) {
  unary_check(op, __LINE__);
  View dx = mdlrt_view(dxr), dy = mdlrt_view(dyr), s = mdlrt_view(sr);
  if (!dx.n) return;
  if (vec_ok(dx) && vec_ok(dy) && vec_ok(s) && dx.contig && dy.contig &&
      (!s.p || s.contig))
    k_unary_bwd_vec<<<vec_grid(dx.n), 256, 0, mdlrt_rt.stream>>>(
        op, dx, accum, dy, s, (float)c);
  else
    k_unary_bwd<<<grid_for(dx.n), 256, 0, mdlrt_rt.stream>>>(op, dx, accum,
                                                             dy, s, (float)c);
  KERNEL_CHECK();
}

/* ---- add and mul with broadcasting ------------------------------------ */

__global__ void k_binary(int mul, View y, View a, View b) {
  GRID_LOOP(i, y.n) {
    float x = ldf(a, vofs(a, i)), z = ldf(b, vofs(b, i));
    stf(y, vofs(y, i), mul ? x * z : x + z, 0);
  }
}

__global__ void k_binary_vec(int mul, View y, View a, View b) {
  float x[8], z[8];
  VEC_LOOP(i, y.n) {
    ld8(a, i, x);
    ld8(b, i, z);
    for (int k = 0; k < 8; k++) x[k] = mul ? x[k] * z[k] : x[k] + z[k];
    st8(y, i, x, 0);
  }
  TAIL_LOOP(i, y.n) {
    float u = ldf(a, i), v = ldf(b, i);
    stf(y, i, mul ? u * v : u + v, 0);
  }
}

static void binary(int mul, mdlrt_ref yr, mdlrt_ref ar, mdlrt_ref br) {
  View y = mdlrt_view(yr);
  View a = mdlrt_view_bcast(ar, yr.t), b = mdlrt_view_bcast(br, yr.t);
  if (!y.n) return;
  if (y.contig && a.contig && b.contig && vec_ok(y) && vec_ok(a) &&
      vec_ok(b))
    k_binary_vec<<<vec_grid(y.n), 256, 0, mdlrt_rt.stream>>>(mul, y, a, b);
  else
    k_binary<<<grid_for(y.n), 256, 0, mdlrt_rt.stream>>>(mul, y, a, b);
  KERNEL_CHECK();
}

void mdlrt_add_fwd(mdlrt_ref y, mdlrt_ref a, mdlrt_ref b) { binary(0, y, a, b); }
void mdlrt_mul_fwd(mdlrt_ref y, mdlrt_ref a, mdlrt_ref b) { binary(1, y, a, b); }

/* dx[j] (+)= sum over the broadcast dims of dy (* other). The dims of dy
 * split into kept ones (dx has them) and reduced ones; thread j walks the
 * reduced ones. kd/rd: extents, kst/rst: dy's strides, kox/rox: other's. */
struct Reduce {
  int nk, nr;
  int64_t kd[MDLRT_MAX_RANK], rd[MDLRT_MAX_RANK];
  int64_t kst[MDLRT_MAX_RANK], rst[MDLRT_MAX_RANK];
  int64_t kot[MDLRT_MAX_RANK], rot[MDLRT_MAX_RANK];
  int64_t nred;
};

__global__ void k_bcast_bwd(View dx, int accum, View dy, View other,
                            Reduce r) {
  GRID_LOOP(j, dx.n) {
    int64_t base = 0, obase = 0, q = j;
    for (int d = r.nk - 1; d >= 0; d--) {
      int64_t idx = q % r.kd[d];
      q /= r.kd[d];
      base += idx * r.kst[d];
      obase += idx * r.kot[d];
    }
    float s = 0.0f;
    for (int64_t t = 0; t < r.nred; t++) {
      int64_t o = base, oo = obase, u = t;
      for (int d = r.nr - 1; d >= 0; d--) {
        int64_t idx = u % r.rd[d];
        u /= r.rd[d];
        o += idx * r.rst[d];
        oo += idx * r.rot[d];
      }
      float g = ldf(dy, o);
      if (other.p) g *= ldf(other, oo);
      s += g;
    }
    stf(dx, vofs(dx, j), s, accum);
  }
}

void mdlrt_bcast_bwd(mdlrt_ref dxr, int accum, mdlrt_ref dyr,
                     mdlrt_ref otherr) {
  View dx = mdlrt_view(dxr), dy = mdlrt_view(dyr), other;
  memset(&other, 0, sizeof other);
  if (otherr.base) other = mdlrt_view_bcast(otherr, dyr.t);
  Reduce r;
  memset(&r, 0, sizeof r);
  r.nred = 1;
  for (int d = 0; d < dy.rank; d++) {
    int e = d - (dy.rank - dx.rank);
    int kept = e >= 0 && dx.dim[e] == dy.dim[d];
    if (kept) {
      r.kd[r.nk] = dy.dim[d];
      r.kst[r.nk] = dy.st[d];
      r.kot[r.nk++] = other.p ? other.st[d] : 0;
    } else {
      r.rd[r.nr] = dy.dim[d];
      r.rst[r.nr] = dy.st[d];
      r.rot[r.nr++] = other.p ? other.st[d] : 0;
      r.nred *= dy.dim[d];
    }
  }
  if (!dx.n) return;
  k_bcast_bwd<<<grid_for(dx.n), 256, 0, mdlrt_rt.stream>>>(dx, accum, dy,
                                                           other, r);
  KERNEL_CHECK();
}

/* ---- dropout ------------------------------------------------------------- */

__global__ void k_dropout_fwd(View y, View mask, View x, float p, float keep,
                              uint64_t seed, uint64_t stream,
                              const StepVars *sv) {
  const uint64_t step = sv->step;
  GRID_LOOP(i, y.n) {
    int m = mdlrt_uniform(seed, stream, mdlrt_dropout_index(step, i)) >= p;
    ((uint8_t *)mask.p)[vofs(mask, i)] = (uint8_t)m;
    stf(y, vofs(y, i), m ? ldf(x, vofs(x, i)) * keep : 0.0f, 0);
  }
}

__global__ void k_dropout_bwd(View dx, int accum, View dy, View mask,
                              float keep) {
  GRID_LOOP(i, dx.n) {
    int m = ((const uint8_t *)mask.p)[vofs(mask, i)];
    stf(dx, vofs(dx, i), m ? ldf(dy, vofs(dy, i)) * keep : 0.0f, accum);
  }
}

__global__ void k_dropout_fwd_vec(View y, View mask, View x, float p,
                                  float keep, uint64_t seed, uint64_t stream,
                                  const StepVars *sv) {
  const uint64_t step = sv->step;
  float f[8], m[8];
  VEC_LOOP(i, y.n) {
    ld8(x, i, f);
    for (int k = 0; k < 8; k++) {
      m[k] = mdlrt_uniform(seed, stream, mdlrt_dropout_index(step, i + k)) >=
                     p ? 1.0f : 0.0f;
      f[k] = m[k] != 0.0f ? f[k] * keep : 0.0f;
    }
    st8(mask, i, m, 0);
    st8(y, i, f, 0);
  }
  TAIL_LOOP(i, y.n) {
    int mk = mdlrt_uniform(seed, stream, mdlrt_dropout_index(step, i)) >= p;
    ((uint8_t *)mask.p)[i] = (uint8_t)mk;
    stf(y, i, mk ? ldf(x, i) * keep : 0.0f, 0);
  }
}

__global__ void k_dropout_bwd_vec(View dx, int accum, View dy, View mask,
                                  float keep) {
  float g[8], m[8];
  VEC_LOOP(i, dx.n) {
    ld8(dy, i, g);
    ld8(mask, i, m);
    for (int k = 0; k < 8; k++) g[k] = m[k] != 0.0f ? g[k] * keep : 0.0f;
    st8(dx, i, g, accum);
  }
  TAIL_LOOP(i, dx.n) {
    int mk = ((const uint8_t *)mask.p)[i];
    stf(dx, i, mk ? ldf(dy, i) * keep : 0.0f, accum);
  }
}

void mdlrt_dropout_fwd(mdlrt_ref yr, mdlrt_ref maskr, mdlrt_ref xr, double p,
                       uint64_t node) {
  View y = mdlrt_view(yr), m = mdlrt_view(maskr), x = mdlrt_view(xr);
  if (!y.n) return;
  float keep = p >= 1.0 ? 0.0f : (float)(1.0 / (1.0 - p));
  if (y.contig && m.contig && x.contig && vec_ok(y) && vec_ok(m) &&
      vec_ok(x) && m.dt == MDLRT_U8)
    k_dropout_fwd_vec<<<vec_grid(y.n), 256, 0, mdlrt_rt.stream>>>(
        y, m, x, (float)p, keep, mdlrt_rt.seed, MDLRT_STREAM_DROP + node,
        mdlrt_rt.dstep);
  else
    k_dropout_fwd<<<grid_for(y.n), 256, 0, mdlrt_rt.stream>>>(
        y, m, x, (float)p, keep, mdlrt_rt.seed, MDLRT_STREAM_DROP + node,
        mdlrt_rt.dstep);
  KERNEL_CHECK();
}

void mdlrt_dropout_bwd(mdlrt_ref dxr, int accum, mdlrt_ref dyr,
                       mdlrt_ref maskr, double p) {
  View dx = mdlrt_view(dxr), dy = mdlrt_view(dyr), m = mdlrt_view(maskr);
  if (!dx.n) return;
  float keep = p >= 1.0 ? 0.0f : (float)(1.0 / (1.0 - p));
  if (dx.contig && dy.contig && m.contig && vec_ok(dx) && vec_ok(dy) &&
      vec_ok(m) && m.dt == MDLRT_U8)
    k_dropout_bwd_vec<<<vec_grid(dx.n), 256, 0, mdlrt_rt.stream>>>(
        dx, accum, dy, m, keep);
  else
    k_dropout_bwd<<<grid_for(dx.n), 256, 0, mdlrt_rt.stream>>>(dx, accum, dy,
                                                               m, keep);
  KERNEL_CHECK();
}

/* ---- rope: rotary position embedding ("rotate half") --------------------
 * x[..., S, Dh] is rows of Dh elements; row r sits at position p = r % S
 * (its index in dim -2). With h = Dh / 2, pair (i, i + h) turns by
 * a = p inv_freq[i]:
 *   y_i = x_i cos a - x_{i+h} sin a,   y_{i+h} = x_{i+h} cos a + x_i sin a
 * (sign = -1, the backward: dy turned by -a). inv_freq follows PyTorch's
 * f32 recipe, 1 / base^(arange(0, Dh, 2) / Dh): e = 2i / Dh rounded to f32,
 * base^e rounded to f32 (from a double pow: correctly rounded but for
 * ties), its reciprocal in f32; then a = p inv_freq[i] in f32 and cosf,
 * sinf. E.g. Dh = 4, base 10000: inv_freq = {1, 0.01}; the row at p = 3
 * turns (x0, x2) by 3 rad and (x1, x3) by 0.03 rad.
 * A block is 32 x 8 threads: x over i (pairs), y over rows; it computes
 * the h inverse frequencies once into shared memory, then walks rows. Any
 * strides: element j of row r is at the row's offset + j times the last
 * dim's stride. */
__global__ void __launch_bounds__(256)
    k_rope(View y, int accum, View x, int64_t rows, int64_t S, int64_t h,
           float base, float sign) {
  extern __shared__ float rope_inv[];
  int tid = threadIdx.y * blockDim.x + threadIdx.x;
  for (int64_t i = tid; i < h; i += blockDim.x * blockDim.y) {
    float e = (float)(2 * i) / (float)(2 * h);
    rope_inv[i] = 1.0f / (float)pow((double)base, (double)e);
  }
  __syncthreads();
  int64_t Dh = 2 * h;
  int64_t ys = y.contig ? 1 : y.st[y.rank - 1];
  int64_t xs = x.contig ? 1 : x.st[x.rank - 1];
  for (int64_t r = blockIdx.x * (int64_t)blockDim.y + threadIdx.y; r < rows;
       r += (int64_t)gridDim.x * blockDim.y) {
    int64_t yo = vofs(y, r * Dh), xo = vofs(x, r * Dh);
    float p = (float)(r % S);
    for (int64_t i = threadIdx.x; i < h; i += blockDim.x) {
      float sn, cs;
      sincosf(p * rope_inv[i], &sn, &cs);
      sn *= sign;
      float x0 = ldf(x, xo + i * xs), x1 = ldf(x, xo + (i + h) * xs);
      stf(y, yo + i * ys, x0 * cs - x1 * sn, accum);
      stf(y, yo + (i + h) * ys, x1 * cs + x0 * sn, accum);
    }
  }
}

static void rope(const char *fn, mdlrt_ref yr, int accum, mdlrt_ref xr,
                 double base, float sign) {
  View y = mdlrt_view(yr), x = mdlrt_view(xr);
  if (x.rank < 2 || x.dim[x.rank - 1] % 2 || y.n != x.n || y.rank < 1 ||
      y.dim[y.rank - 1] != x.dim[x.rank - 1])
    mdlrt_fail("mdlrt", "rope wants x[..., S, Dh] with Dh even and y (dx) "
               "of x's shape", fn, __FILE__, __LINE__);
  int64_t Dh = x.dim[x.rank - 1], h = Dh / 2, S = x.dim[x.rank - 2];
  if (!x.n) return;
  if (h * 4 > (48 << 10))
    mdlrt_fail("mdlrt", "rope: Dh above 24576 (the inverse frequencies "
               "exceed 48 KiB of shared memory)", fn, __FILE__, __LINE__);
  int64_t rows = x.n / Dh, blocks = (rows + 7) / 8;
  if (blocks > 2048) blocks = 2048; /* each block reuses its frequencies */
  k_rope<<<(unsigned)blocks, dim3(32, 8), (size_t)(h * 4), mdlrt_rt.stream>>>(
      y, accum, x, rows, S, h, (float)base, sign);
  KERNEL_CHECK();
}

void mdlrt_rope_fwd(mdlrt_ref y, mdlrt_ref x, double base) {
  rope("mdlrt_rope_fwd", y, 0, x, base, 1.0f);
}

void mdlrt_rope_bwd(mdlrt_ref dx, int accum, mdlrt_ref dy, double base) {
  rope("mdlrt_rope_bwd", dx, accum, dy, base, -1.0f);
}
