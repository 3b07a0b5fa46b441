/* runtime/mdlrt.h: the CUDA runtime of mdlc, the only header that emitted
 * code includes.
 *
 * The emitted program is the step, unrolled: allocate, run an op, free. This
 * library gives it the pieces: one memory pool that measures the peak, the
 * kernels of every op (forward and backward), the optimizers, and the
 * counter-based initialisation shared with the CPU reference.
 *
 * Ownership, stated once: the runtime owns the CUDA context, the one stream,
 * the cuBLAS and cuDNN handles, the memory pool and every cuDNN descriptor
 * (made at mdlrt_init or when a plan is made, destroyed at mdlrt_shutdown).
 * The caller owns every buffer it gets from mdlrt_alloc and gives it back
 * with mdlrt_free; mdlrt_tensor descriptors are the caller's and are only
 * read. Every call is asynchronous on the one stream unless it says it
 * synchronizes. Any CUDA, cuBLAS or cuDNN failure prints the call, the
 * error's name and the op that was running (mdlrt_op) and exits with 3.
 * MDLRT_SYNC=1 in the environment synchronizes after every op so a fault
 * points at its op.
 *
 * Tensors are described by geometry (dtype, shape, element strides, element
 * offset into a buffer), so a view (reshape, split, a view's gradient)
 * needs no memory of its own. Every kernel reads and writes floats through
 * that geometry and computes in f32; `accum` = 1 adds into the destination
 * instead of overwriting it (a gradient's second contribution).
 */
#ifndef MDLRT_H
#define MDLRT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The same order as mdlc's DType. */
enum { MDLRT_F32, MDLRT_F16, MDLRT_BF16, MDLRT_I32, MDLRT_I64, MDLRT_U8 };

enum { MDLRT_MAX_RANK = 8 };

/* Where a tensor lies in a buffer: dtype, shape, strides and offset in
 * elements. Emitted code declares one per IR value, `static const`. */
typedef struct {
  int dt;                          /* MDLRT_F32 ... */
  int rank;                        /* 0 for a scalar */
  int64_t dim[MDLRT_MAX_RANK];     /* extents, outermost first */
  int64_t st[MDLRT_MAX_RANK];      /* element strides */
  int64_t off;                     /* element offset in the buffer */
} mdlrt_tensor;

/* A tensor in a buffer: the buffer's base pointer and its geometry. */
typedef struct {
  void *base;               /* the buffer (not offset) */
  const mdlrt_tensor *t;    /* geometry, read only */
} mdlrt_ref;

static inline mdlrt_ref mdlrt_at(void *base, const mdlrt_tensor *t) {
  mdlrt_ref r = {base, t};
  return r;
}

/* ---- life cycle ------------------------------------------------------ */

typedef struct {
  const char *model;   /* for messages */
  uint64_t seed;       /* --seed */
  int arena;           /* 1: --alloc arena (buffers carved from one block) */
} mdlrt_config;

/* Creates the context, the stream, the handles and the memory pool. */
void mdlrt_init(const mdlrt_config *cfg);
/* Destroys what mdlrt_init and the plans made. */
void mdlrt_shutdown(void);
/* Device memory used (cudaMemGetInfo: total - free), synchronizes. */
int64_t mdlrt_device_used(void);

/* ---- memory ----------------------------------------------------------- */

/* A buffer of `bytes` from the pool, zero-filled if `zero`. */
void *mdlrt_alloc(int64_t bytes, int zero);
void mdlrt_free(void *p);
/* Arena mode: one block for everything not persistent. */
void *mdlrt_arena(int64_t bytes);
/* A buffer from the pool, or NULL (no error) if the pool cannot grow. */
void *mdlrt_try_alloc(int64_t bytes);
/* Zero-fills bytes at p (arena mode's zero_init). */
void mdlrt_zero(void *p, int64_t bytes);
/* The pool's high-water mark since the last reset (synchronizes). */
int64_t mdlrt_pool_peak(void);
int64_t mdlrt_pool_used(void);
void mdlrt_pool_reset_peak(void);
/* The one shared scratch buffer: cuBLAS gets it, cuDNN algorithms are
 * chosen among those whose workspace fits it. */
void mdlrt_set_workspace(void *p, int64_t bytes);

/* ---- diagnostics and timing ------------------------------------------ */

/* Names the op about to run (kept for error messages). */
void mdlrt_op(const char *what);
/* Synchronizes; checks for a pending error. */
void mdlrt_sync(void);
void mdlrt_timer_start(void);
/* Milliseconds since mdlrt_timer_start (synchronizes). */
double mdlrt_timer_stop(void);
/* Copies one element of a tensor to the host as a double (synchronizes). */
double mdlrt_read(mdlrt_ref x, int64_t i);
/* Copies a whole tensor (contiguous order) to host doubles (synchronizes). */
void mdlrt_read_all(mdlrt_ref x, double *out);
/* Copies host doubles into a tensor (used by tests). */
void mdlrt_write_all(mdlrt_ref x, const double *in);
/* Appends a buffer to `path` (opened for appending) as the CPU reference's
 * `-o` does: a line "NAME DTYPE NUMEL", then its bytes in hex, 32 to a
 * line (synchronizes). For `--check`'s element-wise comparison. */
void mdlrt_dump(const char *path, const char *name, const char *dtype,
                int64_t numel, const void *p, int64_t bytes);

/* ---- initialisation (runtime/mdlrt_rng.h streams; see mdlc.h RunOpts) -- */

/* Uniform in [-bound, bound) from stream PARAM + value. */
void mdlrt_init_uniform(mdlrt_ref x, uint64_t value, double bound);
/* Normal(0, 1), Box-Muller, from stream PARAM + value. */
void mdlrt_init_normal(mdlrt_ref x, uint64_t value);
/* Every element = c. */
void mdlrt_fill(mdlrt_ref x, double c);
/* Inputs: floats uniform in [-1, 1), integers in [0, classes), from
 * stream INPUT + value at `step` (0 unless --data fresh). */
void mdlrt_init_input(mdlrt_ref x, uint64_t value, int64_t classes,
                      uint64_t step);
/* y = x converted (cast; also copies a master weight to its parameter). */
void mdlrt_copy(mdlrt_ref y, mdlrt_ref x, int accum);

/* ---- ops: forward (y written) and backward (d* written or added) ------ */

/* linear: x[M,K] w[N,K] b[N] -> y[M,N]; contiguous. */
void mdlrt_linear_fwd(mdlrt_ref y, mdlrt_ref x, mdlrt_ref w, mdlrt_ref b,
                      int64_t M, int64_t K, int64_t N);
/* dx[M,K] = dy w; dw[N,K] = dy^T x; db[N] = sum dy. A NULL base skips. */
void mdlrt_linear_bwd(mdlrt_ref dx, int ax, mdlrt_ref dw, int aw,
                      mdlrt_ref db, int ab, mdlrt_ref dy, mdlrt_ref x,
                      mdlrt_ref w, int64_t M, int64_t K, int64_t N);

/* matmul: a[batch?,m,k] (ta: [k,m]) x b[batch?,k,n] (tb: [n,k]) -> y[batch,m,n];
 * sa, sb: batch strides in elements (0: broadcast). */
void mdlrt_matmul_fwd(mdlrt_ref y, mdlrt_ref a, mdlrt_ref b, int ta, int tb,
                      int64_t batch, int64_t m, int64_t k, int64_t n,
                      int64_t sa, int64_t sb);
void mdlrt_matmul_bwd(mdlrt_ref da, int aa, mdlrt_ref db, int ab,
                      mdlrt_ref dy, mdlrt_ref a, mdlrt_ref b, int ta, int tb,
                      int64_t batch, int64_t m, int64_t k, int64_t n,
                      int64_t sa, int64_t sb);

/* conv2d through cuDNN: a plan made once (descriptors, algorithms whose
 * workspace fits the workspace set by then; cuDNN graph execution plans,
 * chosen by cuDNN's heuristics, never by timing, made at each direction's
 * first use and kept). */
typedef struct mdlrt_conv mdlrt_conv;
mdlrt_conv *mdlrt_conv_plan(int dt, int64_t N, int64_t C, int64_t H,
                            int64_t W, int64_t K, int64_t R, int64_t stride,
                            int64_t pad, int64_t dil, int64_t groups,
                            int64_t P, int64_t Q);
void mdlrt_conv_fwd(mdlrt_conv *c, mdlrt_ref y, mdlrt_ref x, mdlrt_ref w,
                    mdlrt_ref b);
void mdlrt_conv_bwd(mdlrt_conv *c, mdlrt_ref dx, int ax, mdlrt_ref dw,
                    int aw, mdlrt_ref db, int ab, mdlrt_ref dy, mdlrt_ref x,
                    mdlrt_ref w);

/* pooling, NCHW contiguous; `op`: 0 max, 1 avg (count_include_pad). */
void mdlrt_pool_fwd(int op, mdlrt_ref y, mdlrt_ref x, int64_t kernel,
                    int64_t stride, int64_t pad);
void mdlrt_pool_bwd(int op, mdlrt_ref dx, int accum, mdlrt_ref dy,
                    mdlrt_ref x, mdlrt_ref y, int64_t kernel, int64_t stride,
                    int64_t pad);
void mdlrt_global_avgpool_fwd(mdlrt_ref y, mdlrt_ref x);
void mdlrt_global_avgpool_bwd(mdlrt_ref dx, int accum, mdlrt_ref dy);

/* Normalisation. layer: rows of the last dim D. group: x[N, C, ...] in G
 * groups (instancenorm: G = C); w, b may have a NULL base (no affine).
 * batch: statistics per channel of x[N, C, ...], running statistics
 * updated with momentum 0.1 (unbiased variance). mean/rstd: f32. */
void mdlrt_layernorm_fwd(mdlrt_ref y, mdlrt_ref mean, mdlrt_ref rstd,
                         mdlrt_ref x, mdlrt_ref w, mdlrt_ref b, double eps);
void mdlrt_layernorm_bwd(mdlrt_ref dx, int ax, mdlrt_ref dw, int aw,
                         mdlrt_ref db, int ab, mdlrt_ref dy, mdlrt_ref x,
                         mdlrt_ref mean, mdlrt_ref rstd, mdlrt_ref w);
void mdlrt_groupnorm_fwd(mdlrt_ref y, mdlrt_ref mean, mdlrt_ref rstd,
                         mdlrt_ref x, mdlrt_ref w, mdlrt_ref b, int64_t G,
                         double eps);
void mdlrt_groupnorm_bwd(mdlrt_ref dx, int ax, mdlrt_ref dw, int aw,
                         mdlrt_ref db, int ab, mdlrt_ref dy, mdlrt_ref x,
                         mdlrt_ref mean, mdlrt_ref rstd, mdlrt_ref w,
                         int64_t G);
/* train = 0: inference with the running statistics (mean/invstd unused). */
void mdlrt_batchnorm_fwd(mdlrt_ref y, mdlrt_ref mean, mdlrt_ref invstd,
                         mdlrt_ref x, mdlrt_ref w, mdlrt_ref b,
                         mdlrt_ref rmean, mdlrt_ref rvar, double eps,
                         int train);
void mdlrt_batchnorm_bwd(mdlrt_ref dx, int ax, mdlrt_ref dw, int aw,
                         mdlrt_ref db, int ab, mdlrt_ref dy, mdlrt_ref x,
                         mdlrt_ref mean, mdlrt_ref invstd, mdlrt_ref w);
/* batchnorm and groupnorm compute in x's dtype (x, y, dy, dx may be 16-bit)
 * and read w, b and the running statistics, and write dw, db, in theirs
 * (f32 under the mixed policies). */

/* rmsnorm over the last dim D: y = x rstd w, rstd = 1/sqrt(mean(x^2) +
 * eps) saved (f32, one per row); w[D] in x's dtype or f32; y, dy in any
 * float dtype; x any strides. dw (+)= sum over rows of dy x rstd (a fixed
 * order); dx (+)= rstd (g - x rstd mean(g x rstd)), g = dy w. */
void mdlrt_rmsnorm_fwd(mdlrt_ref y, mdlrt_ref rstd, mdlrt_ref x, mdlrt_ref w,
                       double eps);
void mdlrt_rmsnorm_bwd(mdlrt_ref dx, int ax, mdlrt_ref dw, int aw,
                       mdlrt_ref dy, mdlrt_ref x, mdlrt_ref rstd,
                       mdlrt_ref w);

/* Elementwise, any strides; `op` (new codes are appended, so a code keeps
 * its value; softplus is PyTorch's: x > 20 ? x : log1p(exp(x))): */
enum {
  MDLRT_RELU, MDLRT_GELU, MDLRT_SILU, MDLRT_TANH, MDLRT_SIGMOID,
  MDLRT_SCALE, MDLRT_COPY, MDLRT_EXP, MDLRT_SOFTPLUS
};
void mdlrt_unary_fwd(int op, mdlrt_ref y, mdlrt_ref x, double c);
/* dx (+)= dy * f'(...) where `s` is what the op saved: the input for gelu,
 * silu and softplus, the output for relu, tanh, sigmoid and exp (ignored
 * by scale and copy). */
void mdlrt_unary_bwd(int op, mdlrt_ref dx, int accum, mdlrt_ref dy,
                     mdlrt_ref s, double c);

/* add and mul with NumPy broadcasting (y's shape). */
void mdlrt_add_fwd(mdlrt_ref y, mdlrt_ref a, mdlrt_ref b);
void mdlrt_mul_fwd(mdlrt_ref y, mdlrt_ref a, mdlrt_ref b);
/* dx (+)= sum over broadcast dims of dy (times `other`, for mul; NULL
 * base for add). */
void mdlrt_bcast_bwd(mdlrt_ref dx, int accum, mdlrt_ref dy, mdlrt_ref other);

/* dropout: mask[i] = 1 iff uniform(DROP stream + node, (step, i)) >= p;
 * y = x * mask / (1 - p); `step` is the one mdlrt_step_begin set. */
void mdlrt_dropout_fwd(mdlrt_ref y, mdlrt_ref mask, mdlrt_ref x, double p,
                       uint64_t node);
void mdlrt_dropout_bwd(mdlrt_ref dx, int accum, mdlrt_ref dy, mdlrt_ref mask,
                       double p);

/* rope, rotary position embedding ("rotate half", as Llama and GPT-NeoX):
 * x[..., S, Dh], Dh even, h = Dh/2, any strides; the position p of a row
 * is its index in dim -2; pair (i, i + h), i < h, turns by the angle
 * p * base^(-2i/Dh), computed in f32 as PyTorch's recipe does:
 *   y_i = x_i cos - x_{i+h} sin,  y_{i+h} = x_{i+h} cos + x_i sin.
 * The backward turns dy by the opposite angle. */
void mdlrt_rope_fwd(mdlrt_ref y, mdlrt_ref x, double base);
void mdlrt_rope_bwd(mdlrt_ref dx, int accum, mdlrt_ref dy, double base);

/* mean (mean = 1) or sum over one axis of x (0 <= axis < x's rank), any
 * strides; y has x's shape without that dim (or with it as 1). f32
 * accumulation in a fixed order. The backward broadcasts dy along the
 * axis (divided by its extent for mean) into dx, x's shape. */
void mdlrt_reduce_fwd(int mean, mdlrt_ref y, mdlrt_ref x, int axis);
void mdlrt_reduce_bwd(int mean, mdlrt_ref dx, int accum, mdlrt_ref dy,
                      int axis);

/* softmax over the last dim; causal masks column > row (row = index in
 * the second-to-last dim). */
void mdlrt_softmax_fwd(mdlrt_ref y, mdlrt_ref x, int causal);
void mdlrt_softmax_bwd(mdlrt_ref dx, int accum, mdlrt_ref dy, mdlrt_ref y);

/* embedding: ids (integers) -> y[..., D] = w[id]. */
void mdlrt_embedding_fwd(mdlrt_ref y, mdlrt_ref ids, mdlrt_ref w);
void mdlrt_embedding_bwd(mdlrt_ref dw, int accum, mdlrt_ref dy,
                         mdlrt_ref ids);

/* transpose and concat are strided copies (mdlrt_copy) of views built by
 * the emitter. */

/* cross_entropy: logits[rows, C], targets[rows] -> loss (scalar mean),
 * logprobs[rows, C]. */
void mdlrt_cross_entropy_fwd(mdlrt_ref loss, mdlrt_ref logprobs,
                             mdlrt_ref logits, mdlrt_ref targets);
void mdlrt_cross_entropy_bwd(mdlrt_ref dlogits, int accum, mdlrt_ref dloss,
                             mdlrt_ref logprobs, mdlrt_ref targets);
/* mse: loss = mean((a - b)^2). */
void mdlrt_mse_fwd(mdlrt_ref loss, mdlrt_ref a, mdlrt_ref b);
/* d (+)= sign * 2 (a - b) / n * dloss. */
void mdlrt_mse_bwd(mdlrt_ref d, int accum, double sign, mdlrt_ref dloss,
                   mdlrt_ref a, mdlrt_ref b);

/* ---- optimizers -------------------------------------------------------- */

enum { MDLRT_SGD, MDLRT_MOMENTUM, MDLRT_ADAM, MDLRT_ADAMW };
typedef struct {
  int kind;            /* MDLRT_SGD ... */
  double lr;           /* learning rate */
  double momentum;     /* MOMENTUM */
  double beta1, beta2; /* ADAM, ADAMW */
  double eps;          /* ADAM, ADAMW */
  double weight_decay; /* ADAMW decoupled, else L2 added to the gradient */
} mdlrt_optim;
/* One update of a parameter at the step mdlrt_step_begin set (Adam's
 * bias corrections are its, for the optimizer given there; `o` must be
 * that one). With a master (non-NULL base), the master is updated and
 * copied into the parameter. s0, s1: the state (NULL base if none). */
void mdlrt_optim_step(const mdlrt_optim *o, mdlrt_ref param, mdlrt_ref grad,
                      mdlrt_ref master, mdlrt_ref s0, mdlrt_ref s1);

/* ---- the step, and its replay as a CUDA graph ---------------------------
 * What changes from one step to the next lives on the device: the 0-based
 * step number (dropout's masks) and Adam's bias corrections for step + 1,
 * computed on the host in double and rounded to f32 once. mdlrt_step_begin
 * writes them to a pinned host block and enqueues one copy of it to the
 * device, so a step captured into a graph copies, at each replay, the
 * values the host wrote for the step it replays. The host writes the block
 * only between steps (the caller synchronizes after each, as the emitted
 * program does). */
void mdlrt_step_begin(int64_t step, const mdlrt_optim *o);

/* Captures fn(step) (which must begin with mdlrt_step_begin, allocate
 * nothing and never synchronize: arena mode) into an executable CUDA graph.
 * Exits 3 with the CUDA error if the capture fails. */
void mdlrt_graph_capture(void (*fn)(int64_t), int64_t step);
/* Runs the captured step as step `step` (asynchronous). */
void mdlrt_graph_replay(int64_t step);
/* Whether graphs may be used: not under MDLRT_SYNC=1 or MDLRT_PROF=1,
 * whose per-op synchronization and events a graph cannot hold. */
int mdlrt_graph_ok(void);

/* ---- fused attention (runtime/mdlrt_attn.cu) ----------------------------
 * sdpa: q [B, H, S, Dh], k and v [B, Hkv, T, Dh] (H % Hkv == 0; query head
 * h reads kv head h / (H / Hkv)) -> o [B, H, S, Dh] and lse f32 [B, H, S],
 * the natural log-sum-exp of each row of scale * q k^T (causal: columns >
 * row masked), saved for the backward (a NULL base on lse: not written).
 * The [S, T] scores never exist in memory. Dropout p on the probabilities:
 * element (b, h, i, j) kept iff mdlrt_uniform(seed, DROP + node,
 * mdlrt_dropout_index(step, ((b*H + h)*S + i)*T + j)) >= p, kept ones times
 * 1 / (1 - p); no mask is stored, the backward draws it again. q, k, v and
 * dout may be any views whose head dim is contiguous (stride 1); o, lse,
 * dq, dk, dv any views. Dtypes f32, f16, bf16 (q, k, v, o, dout, dq, dk, dv
 * all one; lse f32); Dh up to 128, a multiple of 8 in 16-bit. Results are
 * the same bit for bit from run to run. An unsupported use prints why and
 * exits 1. */
void mdlrt_sdpa_fwd(mdlrt_ref o, mdlrt_ref lse, mdlrt_ref q, mdlrt_ref k,
                    mdlrt_ref v, int causal, double dropout, double scale,
                    uint64_t node);
/* dq, dk, dv written (or added into: aq, ak, av); a NULL base: not wanted.
 * Scratch from the workspace: mdlrt_sdpa_bwd_scratch bytes; if the
 * workspace is smaller, prints both sizes and exits 1. */
void mdlrt_sdpa_bwd(mdlrt_ref dq, int aq, mdlrt_ref dk, int ak, mdlrt_ref dv,
                    int av, mdlrt_ref dout, mdlrt_ref q, mdlrt_ref k,
                    mdlrt_ref v, mdlrt_ref o, mdlrt_ref lse, int causal,
                    double dropout, double scale, uint64_t node);
/* Workspace bytes mdlrt_sdpa_bwd needs: rowsum(dO * O), f32 [B, H, S]. */
int64_t mdlrt_sdpa_bwd_scratch(int64_t B, int64_t H, int64_t S, int64_t T,
                               int64_t Dh, int dt);

/* ---- state-space models (runtime/mdlrt_scan.cu) ----------------------
 * selective_scan (Mamba's S6): x, dt, y [N, D, L]; b, c [N, S, L] (any
 * element strides: views of one projection are read in place); A_log
 * [D, S] and Dskip [D] (f32), A = -exp(A_log); h [N, D, S] from 0:
 *   h_t = exp(dt_t A) h_{t-1} + dt_t b_t x_t,  y_t = c_t . h_t + Dskip x_t.
 * x, dt, b, c, y and their gradients share one float dtype; computed in
 * f32; S <= 256, D <= 16384. The backward recomputes the states from
 * checkpoints kept in the workspace; _scratch gives the bytes that lets it
 * run the whole batch at once (with less it runs the batch in slices; if
 * one sequence does not fit it exits 1 saying so). Every gradient is
 * optional (NULL base), each with its accumulate flag; all are
 * deterministic. */
void mdlrt_selective_scan_fwd(mdlrt_ref y, mdlrt_ref x, mdlrt_ref dt,
                              mdlrt_ref b, mdlrt_ref c, mdlrt_ref A_log,
                              mdlrt_ref Dskip);
void mdlrt_selective_scan_bwd(mdlrt_ref dx, int ax, mdlrt_ref ddt, int adt,
                              mdlrt_ref db, int ab, mdlrt_ref dc, int ac,
                              mdlrt_ref dA_log, int aA, mdlrt_ref dDskip,
                              int aD, mdlrt_ref dy, mdlrt_ref x, mdlrt_ref dt,
                              mdlrt_ref b, mdlrt_ref c, mdlrt_ref A_log,
                              mdlrt_ref Dskip);
/* Workspace bytes the backward needs (0 if none). */
int64_t mdlrt_selective_scan_bwd_scratch(int64_t N, int64_t D, int64_t S,
                                         int64_t L);

/* conv1d: x [N, C, L] -> y [N, O, L'], w [O, C/groups, k] and b [O] (NULL
 * base: no bias) in their own float dtypes, any strides; causal is
 * pad_left = dilation (k - 1), pad_right = 0. Direct kernels (the
 * depthwise stride-1 case, Mamba's, has its own); dw and db deterministic. */
void mdlrt_conv1d_fwd(mdlrt_ref y, mdlrt_ref x, mdlrt_ref w, mdlrt_ref b,
                      int64_t stride, int64_t pad_left, int64_t pad_right,
                      int64_t dilation, int64_t groups);
void mdlrt_conv1d_bwd(mdlrt_ref dx, int ax, mdlrt_ref dw, int aw,
                      mdlrt_ref db, int ab, mdlrt_ref dy, mdlrt_ref x,
                      mdlrt_ref w, int64_t stride, int64_t pad_left,
                      int64_t pad_right, int64_t dilation, int64_t groups);

#ifdef __cplusplus
}
#endif

#endif /* MDLRT_H */
