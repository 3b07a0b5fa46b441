/* runtime/mdlrt.cu: the runtime's core: failures, the MDLRT_PROF profile,
 * views, life cycle, the measuring memory pool, timing and reading back,
 * initialisation from the shared counter-based RNG, the generic strided
 * copy (casts, transposes, concat's parts), and the step's variables with
 * its replay as a CUDA graph. The ops live in one file per family, as the
 * compiler's ops/ (mdlrt_linear.cu, mdlrt_conv.cu, mdlrt_pool.cu,
 * mdlrt_norm.cu, mdlrt_pointwise.cu, mdlrt_softmax.cu, mdlrt_layout.cu,
 * mdlrt_loss.cu, mdlrt_reduce.cu, mdlrt_optim.cu; helpers that several
 * share are declared in mdlrt_dev.cuh).
 *
 * Memory: every buffer comes from one dedicated pool (cudaMemPoolCreate,
 * release threshold at its maximum, so freed memory stays in the pool) with
 * cudaMallocFromPoolAsync / cudaFreeAsync on the one stream, and the peak
 * is the pool's own cudaMemPoolAttrUsedMemHigh (memory.md, last section).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdlrt_dev.cuh"
#include "mdlrt_rng.h"

Runtime mdlrt_rt;
/* The step's variables on the device (mdlrt_step_begin copies them);
 * kernels in other files reach them through mdlrt_rt.dstep. */
__device__ StepVars d_step;

/* ---- failures ------------------------------------------------------- */

void mdlrt_fail(const char *lib, const char *err, const char *call,
                const char *file, int line) {
  fprintf(stderr, "mdlrt: %s error %s in op %s\n  %s\n  at %s:%d\n", lib, err,
          mdlrt_rt.op ? mdlrt_rt.op : "(setup)", call, file, line);
  printf("mdlrt: error %s %s\n", err,
         mdlrt_rt.op ? mdlrt_rt.op : "(setup)");
  if (mdlrt_rt.capturing)
    fprintf(stderr, "mdlrt: (while capturing the step into a CUDA graph; "
            "the program's --eager runs every step without one)\n");
  fflush(stdout);
  exit(3);
}

void mdlrt_bad_code(const char *what, int code, const char *file, int line) {
  char msg[128];
  snprintf(msg, sizeof msg, "unknown %s code %d", what, code);
  mdlrt_fail("mdlrt", msg, what, file, line);
}

void mdlrt_after_launch(const char *file, int line) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    mdlrt_fail("CUDA", cudaGetErrorName(e), "kernel launch", file, line);
  if (mdlrt_rt.sync) {
    e = cudaStreamSynchronize(mdlrt_rt.stream);
    if (e != cudaSuccess)
      mdlrt_fail("CUDA", cudaGetErrorName(e), "kernel (MDLRT_SYNC)", file,
                 line);
  }
}

/* ---- MDLRT_PROF=1: time per kind of op ------------------------------
 * mdlrt_op records an event before each op; at the end of a timed step the
 * gaps between consecutive events are added to the op's kind (its name up
 * to the first quote: "backward of layernorm"). Steps after the first are
 * summed and printed to stderr at shutdown. Events cost a few microseconds
 * of host time each, so only for profiling. MDLRT_PROF=ins (`mdlc --run
 * --profile`) instead prints each instruction's mean time per step on
 * stdout, "mdlrt: prof INSTR MS" (the instruction index the emitted name
 * starts with, "[12] ..."), for mdlc to put beside its traffic. */
enum { PROF_EVENTS = 16384, PROF_KINDS = 256 };
static struct {
  cudaEvent_t ev[PROF_EVENTS];
  const char *name[PROF_EVENTS];
  int n;                     /* events recorded in this step */
  int steps;                 /* steps summed (the first is skipped) */
  int seen;                  /* steps seen */
  char kind[PROF_KINDS][64];
  double ms[PROF_KINDS];
  long calls[PROF_KINDS];
  int nkinds;
  int per_instr;             /* MDLRT_PROF=ins */
  double *ins_ms;            /* per instruction index, summed */
  int ins_cap;
} prof;

static void prof_record(const char *what) {
  if (prof.n >= PROF_EVENTS) return;
  if (!prof.ev[prof.n]) CUDA_CHECK(cudaEventCreate(&prof.ev[prof.n]));
  CUDA_CHECK(cudaEventRecord(prof.ev[prof.n], mdlrt_rt.stream));
  prof.name[prof.n++] = what;
}

static void prof_add_instr(const char *what, double ms) {
  if (what[0] != '[') return;
  int i = atoi(what + 1);
  if (i < 0) return;
  if (i >= prof.ins_cap) {
    int cap = prof.ins_cap ? prof.ins_cap : 1024;
    while (cap <= i) cap *= 2;
    double *p = (double *)realloc(prof.ins_ms, sizeof(double) * (size_t)cap);
    if (!p) return;
    memset(p + prof.ins_cap, 0, sizeof(double) * (size_t)(cap - prof.ins_cap));
    prof.ins_ms = p;
    prof.ins_cap = cap;
  }
  prof.ins_ms[i] += ms;
}

static void prof_add(const char *what, double ms) {
  if (prof.per_instr) {
    prof_add_instr(what, ms);
    return;
  }
  char k[64];
  const char *s = strstr(what, "] ");
  s = s ? s + 2 : what;
  int i = 0;
  while (s[i] && s[i] != '\'' && i < 63) k[i] = s[i], i++;
  while (i > 0 && k[i - 1] == ' ') i--;
  k[i] = 0;
  for (i = 0; i < prof.nkinds; i++)
    if (!strcmp(prof.kind[i], k)) break;
  if (i == prof.nkinds) {
    if (i == PROF_KINDS) return;
    strcpy(prof.kind[prof.nkinds++], k);
  }
  prof.ms[i] += ms;
  prof.calls[i]++;
}

static void prof_step_end(void) {
  if (prof.seen++ > 0) {
    prof.steps++;
    for (int i = 0; i + 1 < prof.n; i++) {
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, prof.ev[i], prof.ev[i + 1]));
      prof_add(prof.name[i], ms);
    }
  }
  prof.n = 0;
}

static void prof_print(void) {
  if (!prof.steps) return;
  if (prof.per_instr) {
    for (int i = 0; i < prof.ins_cap; i++)
      if (prof.ins_ms[i] > 0)
        printf("mdlrt: prof %d %.6f\n", i, prof.ins_ms[i] / prof.steps);
    fflush(stdout);
    free(prof.ins_ms);
    prof.ins_ms = NULL;
    return;
  }
  double total = 0;
  for (int i = 0; i < prof.nkinds; i++) total += prof.ms[i];
  fprintf(stderr, "mdlrt profile: ms per step (mean of %d), by kind of op\n",
          prof.steps);
  for (;;) { /* largest first, selection by repeated scans */
    int best = -1;
    for (int i = 0; i < prof.nkinds; i++)
      if (prof.calls[i] >= 0 && (best < 0 || prof.ms[i] > prof.ms[best]))
        best = i;
    if (best < 0) break;
    fprintf(stderr, "  %9.3f ms %5.1f%% %6ld x  %s\n", prof.ms[best] / prof.steps,
            100.0 * prof.ms[best] / total, prof.calls[best] / prof.steps,
            prof.kind[best]);
    prof.calls[best] = -1;
  }
}

void mdlrt_op(const char *what) {
  mdlrt_rt.op = what;
  if (mdlrt_rt.prof) prof_record(what);
}

void mdlrt_sync(void) { CUDA_CHECK(cudaStreamSynchronize(mdlrt_rt.stream)); }

/* ---- views ---------------------------------------------------------- */

int mdlrt_dt_size(int dt) {
  static const int size[] = {4, 2, 2, 4, 8, 1};
  if (dt < MDLRT_F32 || dt > MDLRT_U8)
    mdlrt_bad_code("dtype", dt, __FILE__, __LINE__);
  return size[dt];
}

static int is_contig(const View &v) {
  int64_t s = 1;
  for (int d = v.rank - 1; d >= 0; d--) {
    if (v.dim[d] != 1 && v.st[d] != s) return 0;
    s *= v.dim[d];
  }
  return 1;
}

View mdlrt_view(mdlrt_ref r) {
  View v;
  memset(&v, 0, sizeof v);
  if (!r.base || !r.t) return v;
  const mdlrt_tensor *t = r.t;
  v.dt = t->dt;
  v.rank = t->rank;
  v.p = (char *)r.base + t->off * mdlrt_dt_size(t->dt);
  v.n = 1;
  for (int d = 0; d < t->rank; d++) {
    v.dim[d] = t->dim[d];
    v.st[d] = t->st[d];
    v.n *= t->dim[d];
  }
  v.contig = is_contig(v);
  return v;
}

View mdlrt_view_bcast(mdlrt_ref r, const mdlrt_tensor *shape) {
  View s = mdlrt_view(r), v = s;
  v.rank = shape->rank;
  v.n = 1;
  for (int d = shape->rank - 1, e = s.rank - 1; d >= 0; d--, e--) {
    v.dim[d] = shape->dim[d];
    v.st[d] = (e >= 0 && s.dim[e] == shape->dim[d]) ? s.st[e] : 0;
    v.n *= v.dim[d];
  }
  v.contig = is_contig(v);
  return v;
}

/* ---- life cycle ------------------------------------------------------ */

void mdlrt_init(const mdlrt_config *cfg) {
  memset(&mdlrt_rt, 0, sizeof mdlrt_rt);
  mdlrt_rt.seed = cfg->seed;
  mdlrt_rt.arena = cfg->arena;
  const char *s = getenv("MDLRT_SYNC");
  mdlrt_rt.sync = s && *s == '1';
  s = getenv("MDLRT_PROF");
  prof.per_instr = s && strcmp(s, "ins") == 0;
  mdlrt_rt.prof = s && (*s == '1' || prof.per_instr);
  CUDA_CHECK(cudaSetDevice(0));
  CUDA_CHECK(cudaFree(0)); /* the context, now */
  CUDA_CHECK(cudaStreamCreateWithFlags(&mdlrt_rt.stream,
                                       cudaStreamNonBlocking));
  CUBLAS_CHECK(cublasCreate(&mdlrt_rt.blas));
  CUBLAS_CHECK(cublasSetStream(mdlrt_rt.blas, mdlrt_rt.stream));
  CUDNN_CHECK(cudnnCreate(&mdlrt_rt.dnn));
  CUDNN_CHECK(cudnnSetStream(mdlrt_rt.dnn, mdlrt_rt.stream));

  cudaMemPoolProps props;
  memset(&props, 0, sizeof props);
  props.allocType = cudaMemAllocationTypePinned;
  props.handleTypes = cudaMemHandleTypeNone;
  props.location.type = cudaMemLocationTypeDevice;
  props.location.id = 0;
  CUDA_CHECK(cudaMemPoolCreate(&mdlrt_rt.pool, &props));
  uint64_t keep = UINT64_MAX;
  CUDA_CHECK(cudaMemPoolSetAttribute(mdlrt_rt.pool,
                                     cudaMemPoolAttrReleaseThreshold, &keep));
  CUDA_CHECK(cudaMallocHost((void **)&mdlrt_rt.hstep, sizeof(StepVars)));
  memset(mdlrt_rt.hstep, 0, sizeof(StepVars));
  CUDA_CHECK(cudaGetSymbolAddress((void **)&mdlrt_rt.dstep, d_step));
  mdlrt_sync();
}

void mdlrt_shutdown(void) {
  mdlrt_sync();
  prof_print();
  cudnnDestroy(mdlrt_rt.dnn);
  cublasDestroy(mdlrt_rt.blas);
  if (mdlrt_rt.graph) cudaGraphExecDestroy(mdlrt_rt.graph);
  cudaFreeHost(mdlrt_rt.hstep);
  cudaMemPoolDestroy(mdlrt_rt.pool);
  cudaStreamDestroy(mdlrt_rt.stream);
}

int64_t mdlrt_device_used(void) {
  size_t fr = 0, total = 0;
  mdlrt_sync();
  CUDA_CHECK(cudaMemGetInfo(&fr, &total));
  return (int64_t)(total - fr);
}

/* ---- memory ----------------------------------------------------------- */

void *mdlrt_alloc(int64_t bytes, int zero) {
  void *p = NULL;
  if (bytes == 0) return NULL; /* nothing to hold, nothing counted */
  if (mdlrt_rt.arena) {
    CUDA_CHECK(cudaMalloc(&p, (size_t)bytes));
  } else {
    CUDA_CHECK(cudaMallocFromPoolAsync(&p, (size_t)bytes, mdlrt_rt.pool,
                                       mdlrt_rt.stream));
  }
  if (zero && bytes)
    CUDA_CHECK(cudaMemsetAsync(p, 0, (size_t)bytes, mdlrt_rt.stream));
  return p;
}

void mdlrt_free(void *p) {
  if (!p) return;
  if (mdlrt_rt.arena)
    CUDA_CHECK(cudaFree(p));
  else
    CUDA_CHECK(cudaFreeAsync(p, mdlrt_rt.stream));
}

void *mdlrt_arena(int64_t bytes) {
  void *p = NULL;
  CUDA_CHECK(cudaMalloc(&p, (size_t)(bytes ? bytes : 1)));
  return p;
}

void *mdlrt_try_alloc(int64_t bytes) {
  void *p = NULL;
  if (cudaMallocFromPoolAsync(&p, (size_t)bytes, mdlrt_rt.pool,
                              mdlrt_rt.stream) != cudaSuccess) {
    (void)cudaGetLastError(); /* out of memory is not sticky: clear it */
    return NULL;
  }
  return p;
}

void mdlrt_zero(void *p, int64_t bytes) {
  if (bytes) CUDA_CHECK(cudaMemsetAsync(p, 0, (size_t)bytes, mdlrt_rt.stream));
}

int64_t mdlrt_pool_peak(void) {
  uint64_t v = 0;
  mdlrt_sync();
  CUDA_CHECK(cudaMemPoolGetAttribute(mdlrt_rt.pool,
                                     cudaMemPoolAttrUsedMemHigh, &v));
  return (int64_t)v;
}

int64_t mdlrt_pool_used(void) {
  uint64_t v = 0;
  mdlrt_sync();
  CUDA_CHECK(cudaMemPoolGetAttribute(mdlrt_rt.pool,
                                     cudaMemPoolAttrUsedMemCurrent, &v));
  return (int64_t)v;
}

void mdlrt_pool_reset_peak(void) {
  uint64_t zero = 0;
  mdlrt_sync();
  CUDA_CHECK(cudaMemPoolSetAttribute(mdlrt_rt.pool,
                                     cudaMemPoolAttrUsedMemHigh, &zero));
}

void mdlrt_set_workspace(void *p, int64_t bytes) {
  mdlrt_rt.ws = p;
  mdlrt_rt.ws_bytes = bytes;
  CUBLAS_CHECK(cublasSetWorkspace(mdlrt_rt.blas, p, (size_t)bytes));
}

/* ---- timing and reading back ----------------------------------------- */

static cudaEvent_t ev_start, ev_stop;

void mdlrt_timer_start(void) {
  if (!ev_start) {
    CUDA_CHECK(cudaEventCreate(&ev_start));
    CUDA_CHECK(cudaEventCreate(&ev_stop));
  }
  CUDA_CHECK(cudaEventRecord(ev_start, mdlrt_rt.stream));
}

double mdlrt_timer_stop(void) {
  float ms = 0;
  if (mdlrt_rt.prof) prof_record("] (end of step)");
  CUDA_CHECK(cudaEventRecord(ev_stop, mdlrt_rt.stream));
  CUDA_CHECK(cudaEventSynchronize(ev_stop));
  CUDA_CHECK(cudaEventElapsedTime(&ms, ev_start, ev_stop));
  if (mdlrt_rt.prof) prof_step_end();
  return ms;
}

/* Gathers a view into a contiguous f64 array on the device. */
__global__ void k_gather(double *out, View x) {
  GRID_LOOP(i, x.n) {
    int64_t o = vofs(x, i);
    out[i] = (x.dt >= MDLRT_I32) ? (double)ldi(x, o) : (double)ldf(x, o);
  }
}

__global__ void k_scatter(View x, const double *in) {
  GRID_LOOP(i, x.n) stf(x, vofs(x, i), (float)in[i], 0);
}

void mdlrt_read_all(mdlrt_ref r, double *out) {
  View x = mdlrt_view(r);
  double *d = NULL;
  CUDA_CHECK(cudaMalloc(&d, (size_t)x.n * sizeof(double)));
  k_gather<<<grid_for(x.n), 256, 0, mdlrt_rt.stream>>>(d, x);
  KERNEL_CHECK();
  CUDA_CHECK(cudaMemcpyAsync(out, d, (size_t)x.n * sizeof(double),
                             cudaMemcpyDeviceToHost, mdlrt_rt.stream));
  mdlrt_sync();
  CUDA_CHECK(cudaFree(d));
}

void mdlrt_write_all(mdlrt_ref r, const double *in) {
  View x = mdlrt_view(r);
  double *d = NULL;
  CUDA_CHECK(cudaMalloc(&d, (size_t)x.n * sizeof(double)));
  CUDA_CHECK(cudaMemcpyAsync(d, in, (size_t)x.n * sizeof(double),
                             cudaMemcpyHostToDevice, mdlrt_rt.stream));
  k_scatter<<<grid_for(x.n), 256, 0, mdlrt_rt.stream>>>(x, d);
  KERNEL_CHECK();
  mdlrt_sync();
  CUDA_CHECK(cudaFree(d));
}

void mdlrt_dump(const char *path, const char *name, const char *dtype,
                int64_t numel, const void *p, int64_t bytes) {
  unsigned char *h = (unsigned char *)malloc((size_t)(bytes ? bytes : 1));
  if (!h) mdlrt_fail("host", "out of memory", "malloc", __FILE__, __LINE__);
  if (bytes)
    CUDA_CHECK(cudaMemcpyAsync(h, p, (size_t)bytes, cudaMemcpyDeviceToHost,
                               mdlrt_rt.stream));
  mdlrt_sync();
  FILE *f = fopen(path, "a");
  if (!f) mdlrt_fail("host", "cannot open the dump file", path, __FILE__,
                     __LINE__);
  fprintf(f, "%s %s %lld\n", name, dtype, (long long)numel);
  for (int64_t i = 0; i < bytes; i++)
    fprintf(f, "%02x%s", h[i], (i + 1) % 32 && i + 1 < bytes ? "" : "\n");
  fclose(f);
  free(h);
}

/* One element, through a host copy of its bytes (no allocation, so the
 * pool's figures are not disturbed). */
double mdlrt_read(mdlrt_ref r, int64_t i) {
  View x = mdlrt_view(r);
  int64_t o = 0, j = i;
  for (int d = x.rank - 1; d >= 0; d--) {
    o += (j % x.dim[d]) * x.st[d];
    j /= x.dim[d];
  }
  unsigned char b[8] = {0};
  int sz = mdlrt_dt_size(x.dt);
  CUDA_CHECK(cudaMemcpyAsync(b, x.p + o * sz, (size_t)sz,
                             cudaMemcpyDeviceToHost, mdlrt_rt.stream));
  mdlrt_sync();
  switch (x.dt) {
  case MDLRT_F32: { float f; memcpy(&f, b, 4); return f; }
  case MDLRT_F16: { __half h; memcpy(&h, b, 2); return __half2float(h); }
  case MDLRT_BF16: {
    __nv_bfloat16 h; memcpy(&h, b, 2); return __bfloat162float(h);
  }
  case MDLRT_I32: { int32_t v; memcpy(&v, b, 4); return v; }
  case MDLRT_I64: { int64_t v; memcpy(&v, b, 8); return (double)v; }
  case MDLRT_U8: return b[0];
  default: mdlrt_bad_code("dtype", x.dt, __FILE__, __LINE__);
  }
}

/* ---- initialisation ----------------------------------------------------- */

enum { INIT_UNIFORM, INIT_NORMAL, INIT_FILL, INIT_INPUT };

/* x[i] from (seed, stream, i): see mdlc.h's RunOpts comment. */
__global__ void k_init(View x, int how, uint64_t seed, uint64_t stream,
                       double a, int64_t classes, uint64_t step) {
  GRID_LOOP(i, x.n) {
    float v;
    switch (how) {
    case INIT_UNIFORM:
      v = (float)a * (2.0f * mdlrt_uniform(seed, stream, i) - 1.0f);
      break;
    case INIT_NORMAL: {
      double u1 = mdlrt_uniform(seed, stream, 2 * (uint64_t)i);
      double u2 = mdlrt_uniform(seed, stream, 2 * (uint64_t)i + 1);
      v = (float)(sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2));
      break;
    }
    case INIT_FILL: v = (float)a; break;
    case INIT_INPUT: { /* integers bits % classes, floats 2u - 1 */
      uint64_t j = mdlrt_dropout_index(step, i);
      if (x.dt >= MDLRT_I32) {
        int64_t c = (int64_t)(mdlrt_bits(seed, stream, j) % (uint64_t)classes);
        if (x.dt == MDLRT_I64) ((int64_t *)x.p)[vofs(x, i)] = c;
        else if (x.dt == MDLRT_I32) ((int32_t *)x.p)[vofs(x, i)] = (int32_t)c;
        else ((uint8_t *)x.p)[vofs(x, i)] = (uint8_t)c;
        continue;
      }
      v = 2.0f * mdlrt_uniform(seed, stream, j) - 1.0f;
      break;
    }
    default: __trap(); v = 0.0f; /* init_launch checks `how` */
    }
    stf(x, vofs(x, i), v, 0);
  }
}

static void init_launch(mdlrt_ref r, int how, uint64_t stream, double a,
                        int64_t classes, uint64_t step) {
  if (how < INIT_UNIFORM || how > INIT_INPUT)
    mdlrt_bad_code("initialisation", how, __FILE__, __LINE__);
  View x = mdlrt_view(r);
  if (!x.n) return;
  k_init<<<grid_for(x.n), 256, 0, mdlrt_rt.stream>>>(
      x, how, mdlrt_rt.seed, stream, a, classes, step);
  KERNEL_CHECK();
}

void mdlrt_init_uniform(mdlrt_ref x, uint64_t value, double bound) {
  init_launch(x, INIT_UNIFORM, MDLRT_STREAM_PARAM + value, bound, 0, 0);
}
void mdlrt_init_normal(mdlrt_ref x, uint64_t value) {
  init_launch(x, INIT_NORMAL, MDLRT_STREAM_PARAM + value, 0, 0, 0);
}
void mdlrt_fill(mdlrt_ref x, double c) {
  init_launch(x, INIT_FILL, 0, c, 0, 0);
}
void mdlrt_init_input(mdlrt_ref x, uint64_t value, int64_t classes,
                      uint64_t step) {
  init_launch(x, INIT_INPUT, MDLRT_STREAM_INPUT + value, 0, classes, step);
}

/* ---- the generic strided copy ------------------------------------------ */

/* y = x through any strides and dtypes (casts, transpose, concat's parts). */
__global__ void k_copy(View y, View x, int accum) {
  GRID_LOOP(i, y.n) stf(y, vofs(y, i), ldf(x, vofs(x, i)), accum);
}

__global__ void k_copy_vec(View y, View x, int accum) {
  float f[8];
  VEC_LOOP(i, y.n) {
    ld8(x, i, f);
    st8(y, i, f, accum);
  }
  TAIL_LOOP(i, y.n) stf(y, i, ldf(x, i), accum);
}

/* Rows of L contiguous elements (L % 8 == 0) at any row strides, eight at
 * a time: a transpose that keeps the last dim, a concat's part. yr, xr:
 * the views of the rows (rank - 1 dims, not contiguous). */
__global__ void k_copy_rows(View y, View x, View yr, View xr, int64_t L,
                            int accum) {
  int64_t per = L / 8, chunks = (y.n / L) * per;
  float f[8];
  GRID_LOOP(c, chunks) {
    int64_t r = c / per, j = (c - r * per) * 8;
    View xa = x, ya = y;
    xa.p += (vofs(xr, r) + j) * mdlrt_dt_size_dev(x.dt);
    ya.p += (vofs(yr, r) + j) * mdlrt_dt_size_dev(y.dt);
    ld8(xa, 0, f);
    st8(ya, 0, f, accum);
  }
}

/* The view of v's rows (its dims but the last), never contiguous. */
static View rows_of(const View &v) {
  View r = v;
  r.rank = v.rank - 1;
  r.n = v.n / v.dim[v.rank - 1];
  r.contig = 0;
  return r;
}

/* Rows of at least 8 contiguous elements, every row starting 16-byte
 * aligned. */
static int rows_ok(const View &v, int64_t L) {
  if (v.rank < 2 || v.st[v.rank - 1] != 1 || L % 8) return 0;
  if (((uintptr_t)v.p & 15) != 0) return 0;
  for (int d = 0; d < v.rank - 1; d++)
    if (v.st[d] % 8) return 0;
  return 1;
}

void mdlrt_copy(mdlrt_ref yr, mdlrt_ref xr, int accum) {
  View y = mdlrt_view(yr), x = mdlrt_view(xr);
  if (!y.n) return;
  int64_t L = y.rank ? y.dim[y.rank - 1] : 1;
  if (y.contig && x.contig && vec_ok(y) && vec_ok(x)) {
    k_copy_vec<<<vec_grid(y.n), 256, 0, mdlrt_rt.stream>>>(y, x, accum);
  } else if (rows_ok(y, L) && rows_ok(x, L)) {
    k_copy_rows<<<grid_for(y.n / 8), 256, 0, mdlrt_rt.stream>>>(
        y, x, rows_of(y), rows_of(x), L, accum);
  } else {
    k_copy<<<grid_for(y.n), 256, 0, mdlrt_rt.stream>>>(y, x, accum);
  }
  KERNEL_CHECK();
}

/* ---- the step's variables, and its replay as a CUDA graph --------------- */

static void step_vars(StepVars *v, int64_t step, const mdlrt_optim *o) {
  double t = (double)(step + 1);
  v->step = (uint64_t)step;
  v->adam_step = o ? (float)(o->lr / (1.0 - pow(o->beta1, t))) : 0.0f;
  v->sqrt_bc2 = o ? (float)sqrt(1.0 - pow(o->beta2, t)) : 0.0f;
}

void mdlrt_step_begin(int64_t step, const mdlrt_optim *o) {
  mdlrt_rt.has_opt = o != NULL;
  if (o) mdlrt_rt.opt = *o;
  step_vars(mdlrt_rt.hstep, step, o);
  CUDA_CHECK(cudaMemcpyAsync(mdlrt_rt.dstep, mdlrt_rt.hstep, sizeof(StepVars),
                             cudaMemcpyHostToDevice, mdlrt_rt.stream));
}

int mdlrt_graph_ok(void) { return !mdlrt_rt.sync && !mdlrt_rt.prof; }

void mdlrt_graph_capture(void (*fn)(int64_t), int64_t step) {
  cudaGraph_t g = NULL;
  mdlrt_rt.capturing = 1;
  CUDA_CHECK(cudaStreamBeginCapture(mdlrt_rt.stream,
                                    cudaStreamCaptureModeThreadLocal));
  fn(step);
  CUDA_CHECK(cudaStreamEndCapture(mdlrt_rt.stream, &g));
  CUDA_CHECK(cudaGraphInstantiate(&mdlrt_rt.graph, g, 0));
  CUDA_CHECK(cudaGraphDestroy(g));
  mdlrt_rt.capturing = 0;
  mdlrt_rt.op = NULL;
}

void mdlrt_graph_replay(int64_t step) {
  step_vars(mdlrt_rt.hstep, step, mdlrt_rt.has_opt ? &mdlrt_rt.opt : NULL);
  mdlrt_rt.op = "(CUDA graph replay of the step)";
  CUDA_CHECK(cudaGraphLaunch(mdlrt_rt.graph, mdlrt_rt.stream));
}
