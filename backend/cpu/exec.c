/* backend/cpu/exec.c: the CPU reference executor (`--run --device cpu`).
 *
 * Runs the step's instruction list exactly as the GPU would: allocate what
 * an instruction lists, run it, free what died, counting live bytes on the
 * way; the measured peak must equal the planner's to the byte. Numerics are
 * docs/ops.md's (backend/cpu/); operands are gathered to f32
 * through their view geometry and scattered back with rounding to the
 * stored dtype, so f16/bf16 tensors round as they do on the device.
 *
 * Key idea: the plan is checked by construction, not trusted. Every
 * non-persistent buffer sits at its planned arena offset (`--alloc arena`)
 * or in its own allocation (`--alloc pool`, same results bit for bit); a
 * buffer is poisoned (NaN, or 0xA5 bytes for integers) when it is allocated
 * and again when it is freed, so a read of a dead or never-written tensor
 * shows up as NaN; an overlap check compares every allocation's planned
 * byte range with every live buffer's, and every operand must name a live
 * buffer and lie inside it. A violation stops the run naming the buffers.
 * MDLC_BREAK_PLAN=1 in the environment moves one buffer onto another live
 * one, to show that the check fires.
 */
#include <math.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mdlc.h"
#include "runtime/mdlrt_rng.h"

struct Exec {
  Graph *g;
  const RunOpts *o;
  uint8_t **ptr;       /* per Buf: its storage while live, else NULL */
  bool *live;          /* per Buf: allocated and not yet freed */
  uint8_t *arena;      /* --alloc arena: g->arena_bytes */
  int64_t live_bytes;  /* persistent + live non-persistent bytes */
  int64_t peak;        /* largest live_bytes after an instruction's allocs */
  int mismatch_at;     /* first instruction whose live bytes differ, -1 */
  int64_t mismatch_live;
  uint64_t step;       /* 0-based step */
  int cur;             /* instruction running, for messages */
  jmp_buf fail;        /* a failed check unwinds here (cpu_run_stats) */
  double *prof;        /* --profile: ms per instruction, all steps, or NULL */
  FILE *grads;         /* the first step's gradients go here, or NULL */
  void *tmp[16];       /* what a hook's cpu_saved and cpu_ints gathered */
  int ntmp;
  const CpuStats *st;  /* the test probes, or NULL */
};

/* ---- errors ------------------------------------------------------------- */

static _Noreturn void plan_error(Exec *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void *cpu_host_alloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) die_machine("out of host memory (%zu bytes)", n);
  return p;
}

/* Reports a violated plan and unwinds to cpu_run_stats, which frees
 * everything and returns 1. */
static _Noreturn void plan_error(Exec *e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "mdlc: error: plan check failed at instruction %d: ",
          e->cur);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  longjmp(e->fail, 1);
}

static const char *node_name(const Graph *g, const Instr *in) {
  if (in->kind == IK_OPT || in->kind == IK_SEED)
    return g->vals[in->node].name;
  return g->nodes[in->node].name;
}

/* ---- element access ----------------------------------------------------- */

static float load(const uint8_t *p, DType t, int64_t i) {
  switch (t) {
  case DT_F32: { float v; memcpy(&v, p + 4 * i, 4); return v; }
  case DT_F16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return cpu_f16_to_f32(h); }
  case DT_BF16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return cpu_bf16_to_f32(h); }
  case DT_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); return (float)v; }
  case DT_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); return (float)v; }
  case DT_U8: return p[i];
  case DT_COUNT: break;
  }
  ICE("load: dtype %d", (int)t);
}

static int64_t load_int(const uint8_t *p, DType t, int64_t i) {
  switch (t) {
  case DT_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
  case DT_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); return v; }
  case DT_U8: return p[i];
  case DT_F32: case DT_F16: case DT_BF16: case DT_COUNT:
    return (int64_t)load(p, t, i);
  }
  ICE("load_int: dtype %d", (int)t);
}

static void store(uint8_t *p, DType t, int64_t i, float v) {
  switch (t) {
  case DT_F32: memcpy(p + 4 * i, &v, 4); break;
  case DT_F16: { uint16_t h = cpu_f32_to_f16(v); memcpy(p + 2 * i, &h, 2); break; }
  case DT_BF16: { uint16_t h = cpu_f32_to_bf16(v); memcpy(p + 2 * i, &h, 2); break; }
  case DT_I32: { int32_t x = (int32_t)v; memcpy(p + 4 * i, &x, 4); break; }
  case DT_I64: { int64_t x = (int64_t)v; memcpy(p + 8 * i, &x, 8); break; }
  case DT_U8: p[i] = (uint8_t)v; break;
  case DT_COUNT: ICE("store: dtype %d", (int)t);
  }
}

static void store_int(uint8_t *p, DType t, int64_t i, int64_t v) {
  switch (t) {
  case DT_I32: { int32_t x = (int32_t)v; memcpy(p + 4 * i, &x, 4); break; }
  case DT_I64: memcpy(p + 8 * i, &v, 8); break;
  case DT_U8: p[i] = (uint8_t)v; break;
  case DT_F32: case DT_F16: case DT_BF16: case DT_COUNT:
    store(p, t, i, (float)v);
  }
}

/* Fills a buffer with a pattern that reads as NaN (floats) or 0xA5... */
static void poison(uint8_t *p, DType t, int64_t numel) {
  if (t == DT_F32 || t == DT_F16 || t == DT_BF16) {
    for (int64_t i = 0; i < numel; i++) store(p, t, i, NAN);
  } else {
    memset(p, 0xA5, (size_t)(numel * dtype_size(t)));
  }
}

/* ---- operands: geometry, gather, scatter -------------------------------- */

typedef struct {
  const Value *v;   /* shape */
  int64_t st[MAX_RANK];
  int64_t off;
  int64_t numel;
  uint8_t *p;       /* buffer storage */
  DType t;          /* buffer dtype */
} Opnd;

/* Resolves a Ref: checks that its buffer is live and that every element
 * of its geometry lies inside the buffer. */
static Opnd opnd(Exec *e, Ref r) {
  const Graph *g = e->g;
  ASSERT(r.buf >= 0 && r.buf < g->nbufs && r.value >= 0);
  const Buf *b = &g->bufs[r.buf];
  if (!e->live[r.buf])
    plan_error(e, "'%s' reads or writes buffer '%s', which is not live",
               node_name(g, &g->ins[e->cur]), b->name);
  Opnd o = {.v = &g->vals[r.value], .p = e->ptr[r.buf], .t = b->dtype};
  o.numel = 1;
  for (int d = 0; d < o.v->shape.rank; d++) o.numel *= o.v->shape.dim[d];
  o.off = o.v->view_offset;
  bool zero = true;
  for (int d = 0; d < o.v->shape.rank; d++) zero &= o.v->stride[d] == 0;
  int64_t acc = 1;
  for (int d = o.v->shape.rank - 1; d >= 0; d--) {
    o.st[d] = zero ? acc : o.v->stride[d];
    acc *= o.v->shape.dim[d];
  }
  int64_t hi = o.off;
  for (int d = 0; d < o.v->shape.rank; d++)
    if (o.v->shape.dim[d] > 0) hi += (o.v->shape.dim[d] - 1) * o.st[d];
  if (o.numel > 0 && (o.off < 0 || hi >= b->numel))
    plan_error(e, "operand '%s' (elements %lld..%lld) lies outside buffer "
               "'%s' (%lld elements)", o.v->name, (long long)o.off,
               (long long)hi, b->name, (long long)b->numel);
  return o;
}

/* Element offset (in the buffer) of the j-th element in row-major order. */
static int64_t at(const Opnd *o, int64_t j) {
  int64_t off = o->off;
  for (int d = o->v->shape.rank - 1; d >= 0; d--) {
    off += (j % o->v->shape.dim[d]) * o->st[d];
    j /= o->v->shape.dim[d];
  }
  return off;
}

static float *gather(Exec *e, Ref r) {
  if (r.buf < 0) return NULL;
  Opnd o = opnd(e, r);
  float *x = cpu_host_alloc((size_t)o.numel * sizeof *x);
  for (int64_t j = 0; j < o.numel; j++) x[j] = load(o.p, o.t, at(&o, j));
  return x;
}

static int64_t *gather_int(Exec *e, Ref r) {
  if (r.buf < 0) return NULL;
  Opnd o = opnd(e, r);
  int64_t *x = cpu_host_alloc((size_t)o.numel * sizeof *x);
  for (int64_t j = 0; j < o.numel; j++) x[j] = load_int(o.p, o.t, at(&o, j));
  return x;
}

/* Writes src (row-major over r's shape), adding to what is there when
 * accum: old + new in f32, rounded once. */
static void scatter(Exec *e, Ref r, const float *src, bool accum) {
  if (r.buf < 0) return;
  Opnd o = opnd(e, r);
  for (int64_t j = 0; j < o.numel; j++) {
    int64_t k = at(&o, j);
    store(o.p, o.t, k, accum ? load(o.p, o.t, k) + src[j] : src[j]);
  }
}

static int64_t numel_v(const Graph *g, int v) {
  return shape_numel_ok(&g->vals[v].shape);
}

static float *fzero(int64_t n) {
  float *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
  if (!p) die_machine("out of host memory");
  return p;
}

/* ---- what the hooks use (mdlc.h, "backend/cpu/exec.c") ------------------ */

int64_t cpu_last_dim(const Shape *s) {
  return s->rank ? s->dim[s->rank - 1] : 1;
}

static void *keep_tmp(Exec *e, void *p) {
  ASSERT(e->ntmp < (int)(sizeof e->tmp / sizeof e->tmp[0]));
  return e->tmp[e->ntmp++] = p;
}

float *cpu_saved(CpuOp *c, int k, const char *what) {
  Exec *e = c->e;
  if (c->in->in[k].buf < 0)
    plan_error(e, "backward of '%s' needs %s, which was neither saved nor "
               "resident", node_name(e->g, c->in), what);
  return keep_tmp(e, gather(e, c->in->in[k]));
}

int64_t *cpu_ints(CpuOp *c, int k, bool bwd, const char *what) {
  if (bwd) {
    Exec *e = c->e;
    if (c->in->in[k].buf < 0)
      plan_error(e, "backward of '%s' needs %s, which was neither saved nor "
                 "resident", node_name(e->g, c->in), what);
  }
  return keep_tmp(c->e, gather_int(c->e, c->in->in[k]));
}

void cpu_write_input(CpuOp *c, int k, const float *src) {
  scatter(c->e, c->in->in[k], src, false);
}

_Noreturn void cpu_data_error(CpuOp *c, const char *what, int64_t bad,
                              int64_t limit) {
  fprintf(stderr, "mdlc: error: %s: %s %lld is outside [0, %lld) at step %llu\n",
          c->n->name, what, (long long)bad, (long long)limit,
          (unsigned long long)c->step + 1);
  longjmp(c->e->fail, 3);
}

static CpuOp cpu_op(Exec *e, const Instr *in) {
  const Graph *g = e->g;
  CpuOp c = {.e = e, .g = g, .n = &g->nodes[in->node], .in = in,
             .node = in->node, .seed = e->o->seed, .step = e->step,
             .train = !g->cfg.infer, .first = in->kind == IK_FWD};
  return c;
}

static void free_tmp(Exec *e) {
  for (int i = 0; i < e->ntmp; i++) free(e->tmp[i]);
  e->ntmp = 0;
}

/* ---- forward ------------------------------------------------------------ */

static void run_forward(Exec *e, const Instr *in) {
  Graph *g = e->g;
  const Node *n = &g->nodes[in->node];
  CpuOp c = cpu_op(e, in);
  ASSERT(n->nin <= 8 && n->nout <= 8);
  for (int k = 0; k < n->nin; k++) {
    DType t = g->vals[n->in[k]].dtype;
    if (dtype_is_float(t) || t == DT_U8) c.x[k] = gather(e, in->in[k]);
  }
  for (int o = 0; o < n->nout; o++) c.y[o] = fzero(numel_v(g, n->out[o]));
  op_def[n->op]->cpu_fwd(&c);
  free_tmp(e);
  for (int o = 0; o < n->nout; o++) {
    scatter(e, in->out[o], c.y[o], false);
    free(c.y[o]);
  }
  for (int k = 0; k < n->nin; k++) free(c.x[k]);
}

/* ---- backward ----------------------------------------------------------- */

/* Whether backward operand k of n (inputs, then outputs) is declared by
 * the op's save rule, or resident anyway. */
static bool declared(const Exec *e, const Node *n, int k) {
  int ni = n->nin;
  if (k < ni && e->g->vals[n->in[k]].kind != VK_ACT) return true;
  if (e->st->narrow && n->op == e->st->narrow_op) return false;
  return k < ni ? op_saves_input(n, k) : op_saves_output(e->g, n, k - ni);
}

static void run_backward(Exec *e, const Instr *in) {
  Graph *g = e->g;
  const Node *n = &g->nodes[in->node];
  int ni = n->nin, no = n->nout;
  ASSERT(in->nin == ni + no + n->nreal && in->nout == ni && ni <= 8);
  Instr strict;
  if (e->st && e->st->strict_saves) {
    strict = *in;
    strict.in = keep_tmp(e, cpu_host_alloc(sizeof(Ref) * (size_t)in->nin));
    memcpy(strict.in, in->in, sizeof(Ref) * (size_t)in->nin);
    for (int k = 0; k < ni + no; k++)
      if (!declared(e, n, k)) strict.in[k].buf = -1;
    in = &strict;
  }
  CpuOp c = cpu_op(e, in);
  /* dy of each real output (zeros where none arrived) */
  for (int o = 0; o < n->nreal; o++) {
    Ref r = in->in[ni + no + o];
    c.dy[o] = r.buf >= 0 ? gather(e, r) : fzero(numel_v(g, n->out[o]));
  }
  /* which input gradients to compute: wanted, and not handed off (an
   * overwrite of dy's own buffer; `x + x` also adds into it) */
  for (int k = 0; k < ni; k++) {
    Ref r = in->out[k];
    if (r.buf < 0) continue;
    bool handed = false;
    for (int o = 0; o < n->nreal; o++)
      handed |= in->in[ni + no + o].buf == r.buf && !in->accum[k];
    if (!handed) c.dx[k] = fzero(numel_v(g, n->in[k]));
  }
  op_def[n->op]->cpu_bwd(&c);
  free_tmp(e);
  for (int k = 0; k < ni; k++) {
    if (c.dx[k]) scatter(e, in->out[k], c.dx[k], in->accum[k]);
    free(c.dx[k]);
  }
  for (int o = 0; o < n->nreal; o++) free(c.dy[o]);
}

/* One buffer in the `-o` format: "NAME DTYPE NUMEL", then its bytes in
 * hex, 32 to a line. */
static void write_buf(Exec *e, FILE *f, int b) {
  const Buf *x = &e->g->bufs[b];
  fprintf(f, "%s %s %lld\n", x->name, dtype_name(x->dtype),
          (long long)x->numel);
  for (int64_t i = 0; i < x->bytes; i++)
    fprintf(f, "%02x%s", e->ptr[b][i], (i + 1) % 32 && i + 1 < x->bytes
                                           ? "" : "\n");
}

/* ---- optimizer ---------------------------------------------------------- */

static void run_opt(Exec *e, const Instr *in) {
  Graph *g = e->g;
  ASSERT(in->nin == 5);
  int64_t n = numel_v(g, in->node);
  Ref pr = in->in[0], gr = in->in[1], mr = in->in[2];
  if (e->grads && e->step == 0) write_buf(e, e->grads, gr.buf);
  float *p = gather(e, mr.buf >= 0 ? mr : pr), *gd = gather(e, gr);
  float *s0 = gather(e, in->in[3]), *s1 = gather(e, in->in[4]);
  Optimizer k = g->cfg.optimizer;
  if ((k != OPTIM_SGD && !s0) || ((k == OPTIM_ADAM || k == OPTIM_ADAMW) && !s1))
    plan_error(e, "the update of '%s' has no optimizer state",
               g->vals[in->node].name);
  CpuOptim o = {.kind = k,
                .lr = e->o->lr > 0 ? e->o->lr : cpu_default_lr(k),
                .t = (int64_t)e->step + 1};
  cpu_optim_step(&o, p, gd, s0, s1, n);
  if (mr.buf >= 0) scatter(e, mr, p, false);
  scatter(e, pr, p, false);  /* the parameter: the master rounded */
  scatter(e, in->in[3], s0, false);
  scatter(e, in->in[4], s1, false);
  free(p);
  free(gd);
  free(s0);
  free(s1);
}

/* ---- parameters and data (mdlc.h's RunOpts comment, docs/ops.md) ------- */

static float init_value(InitKind k, int64_t fan, uint64_t seed, int v,
                        int64_t i) {
  uint64_t stream = MDLRT_STREAM_PARAM + (uint64_t)v;
  switch (k) {
  case INIT_ONE: return 1.0f;
  case INIT_ZERO: return 0.0f;
  case INIT_KAIMING: {
    float bound = (float)(1.0 / sqrt((double)fan));
    return (2.0f * mdlrt_uniform(seed, stream, (uint64_t)i) - 1.0f) * bound;
  }
  case INIT_S4D: return (float)log((double)(i % fan + 1));
  case INIT_NORMAL: {
    double u1 = mdlrt_uniform(seed, stream, 2 * (uint64_t)i);
    double u2 = mdlrt_uniform(seed, stream, 2 * (uint64_t)i + 1);
    return (float)(sqrt(-2.0 * log(1.0 - u1)) *
                   cos(6.283185307179586 * u2));
  }
  }
  return 0.0f;
}

static void fill_inputs(Exec *e, const int64_t *limit, uint64_t step) {
  Graph *g = e->g;
  for (int b = 0; b < g->nbufs; b++) {
    const Buf *x = &g->bufs[b];
    if (x->cat != CAT_INPUT || x->value < 0) continue;
    uint64_t stream = MDLRT_STREAM_INPUT + (uint64_t)x->value;
    for (int64_t i = 0; i < x->numel; i++) {
      uint64_t idx = mdlrt_dropout_index(step, (uint64_t)i);
      if (dtype_is_float(x->dtype))
        store(e->ptr[b], x->dtype, i,
              2.0f * mdlrt_uniform(e->o->seed, stream, idx) - 1.0f);
      else
        store_int(e->ptr[b], x->dtype, i,
                  (int64_t)(mdlrt_bits(e->o->seed, stream, idx) %
                            (uint64_t)limit[x->value]));
    }
  }
}

static void init_persistent(Exec *e, const InitKind *kind, const int64_t *fan) {
  Graph *g = e->g;
  for (int b = 0; b < g->nbufs; b++) {
    const Buf *x = &g->bufs[b];
    if (!x->persistent) continue;
    e->ptr[b] = calloc((size_t)(x->bytes ? x->bytes : 1), 1);
    if (!e->ptr[b]) die_machine("out of host memory for '%s'", x->name);
    e->live[b] = true;
    e->live_bytes += x->bytes;
    int v = x->cat == CAT_MASTER ? x->param : x->value;
    if ((x->cat == CAT_PARAM || x->cat == CAT_MASTER) && v >= 0)
      for (int64_t i = 0; i < x->numel; i++)
        store(e->ptr[b], x->dtype, i,
              init_value(kind[v], fan[v], e->o->seed, v, i));
  }
}

/* ---- allocation, the plan checks ---------------------------------------- */

static void alloc_buf(Exec *e, int b) {
  Graph *g = e->g;
  const Buf *x = &g->bufs[b];
  if (e->live[b]) plan_error(e, "buffer '%s' is allocated twice", x->name);
  /* the planned byte range must not meet any live buffer's */
  for (int o = 0; o < g->nbufs; o++) {
    const Buf *y = &g->bufs[o];
    if (!e->live[o] || y->persistent || x->bytes == 0 || y->bytes == 0)
      continue;
    if (x->offset < y->offset + y->bytes && y->offset < x->offset + x->bytes)
      plan_error(e, "buffer '%s' [%lld, %lld) overlaps live buffer '%s' "
                 "[%lld, %lld) in the arena", x->name, (long long)x->offset,
                 (long long)(x->offset + x->bytes), y->name,
                 (long long)y->offset, (long long)(y->offset + y->bytes));
  }
  if (x->offset < 0 || x->offset + x->bytes > g->arena_bytes)
    plan_error(e, "buffer '%s' [%lld, +%lld) lies outside the arena of %lld "
               "bytes", x->name, (long long)x->offset, (long long)x->bytes,
               (long long)g->arena_bytes);
  e->ptr[b] = e->arena ? e->arena + x->offset
                       : cpu_host_alloc((size_t)x->bytes);
  e->live[b] = true;
  e->live_bytes += x->bytes;
  if (x->zero_init) memset(e->ptr[b], 0, (size_t)x->bytes);
  else poison(e->ptr[b], x->dtype, x->numel);
}

static void free_buf(Exec *e, int b) {
  const Buf *x = &e->g->bufs[b];
  if (!e->live[b]) plan_error(e, "buffer '%s' is freed but not live", x->name);
  poison(e->ptr[b], x->dtype, x->numel);
  if (!e->arena) free(e->ptr[b]);
  e->ptr[b] = NULL;
  e->live[b] = false;
  e->live_bytes -= x->bytes;
}

/* MDLC_BREAK_PLAN=1: moves the first buffer allocated while another
 * non-persistent buffer is live onto that buffer's offset. */
static void break_plan(Graph *g) {
  for (int i = 0; i < g->nins; i++) {
    const Instr *in = &g->ins[i];
    for (int k = 0; k < in->nalloc; k++) {
      Buf *x = &g->bufs[in->alloc[k]];
      for (int o = 0; o < g->nbufs; o++) {
        const Buf *y = &g->bufs[o];
        if (o == in->alloc[k] || y->persistent || y->bytes == 0 ||
            y->alloc_at > i || (y->free_at >= 0 && y->free_at < i) ||
            (y->alloc_at == i && o > in->alloc[k]))
          continue;
        if (y->offset + x->bytes > g->arena_bytes) continue;
        fprintf(stderr, "mdlc: MDLC_BREAK_PLAN: moving '%s' onto '%s'\n",
                x->name, y->name);
        x->offset = y->offset;
        return;
      }
    }
  }
}

/* ---- the step ----------------------------------------------------------- */

static double now_ms(void);

/* --profile: each instruction's time per step beside its traffic
 * (backend/report/traffic.c), largest op first. */
static void print_profile(const Exec *e, int steps) {
  const Graph *g = e->g;
  double *ms = xalloc(sizeof(double) * (size_t)(g->nins ? g->nins : 1));
  for (int i = 0; i < g->nins; i++) ms[i] = e->prof[i] / steps;
  report_op_times(g, ms, stdout);
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static float run_step(Exec *e) {
  Graph *g = e->g;
  for (int i = 0; i < g->nins; i++) {
    const Instr *in = &g->ins[i];
    e->cur = i;
    for (int k = 0; k < in->nalloc; k++) alloc_buf(e, in->alloc[k]);
    if (e->live_bytes > e->peak) e->peak = e->live_bytes;
    if (e->live_bytes != in->live && e->mismatch_at < 0) {
      e->mismatch_at = i;
      e->mismatch_live = e->live_bytes;
    }
    /* every operand live and inside its buffer, before any work */
    for (int k = 0; k < in->nin; k++)
      if (in->in[k].buf >= 0) opnd(e, in->in[k]);
    for (int k = 0; k < in->nout; k++)
      if (in->out[k].buf >= 0) opnd(e, in->out[k]);
    double t0 = e->prof ? now_ms() : 0;
    switch (in->kind) {
    case IK_FWD:
    case IK_RECOMPUTE: run_forward(e, in); break;
    case IK_BWD: run_backward(e, in); break;
    case IK_OPT: run_opt(e, in); break;
    case IK_SEED: {
      float one = 1.0f;
      ASSERT(in->nout == 1 && numel_v(g, in->out[0].value) == 1);
      scatter(e, in->out[0], &one, in->accum[0]);
      break;
    }
    case IK_REDUCE:  /* ZeRO: accounting only, --run refuses --gpus > 1 */
    case IK_COUNT:
      ICE("cpu_run: instruction kind %d in a single-device step", in->kind);
    }
    if (e->prof) e->prof[i] += now_ms() - t0;
    for (int k = 0; k < in->nfree; k++) free_buf(e, in->free[k]);
  }
  e->cur = g->nins;
  float loss = NAN;
  if (g->loss >= 0 && g->val_buf[g->loss] >= 0 &&
      e->live[g->val_buf[g->loss]]) {
    float *l = gather(e, (Ref){g->val_buf[g->loss], g->loss});
    loss = l[0];
    free(l);
  }
  /* the loss and the outputs live to the end of the step */
  for (int b = 0; b < g->nbufs; b++)
    if (e->live[b] && !g->bufs[b].persistent) free_buf(e, b);
  return loss;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Every parameter, master copy, running statistic and optimizer state,
 * bit for bit, for comparing runs (-o FILE). */
static void dump_state(Exec *e, FILE *f) {
  const Graph *g = e->g;
  for (int b = 0; b < g->nbufs; b++) {
    const Buf *x = &g->bufs[b];
    if (x->cat == CAT_PARAM || x->cat == CAT_MASTER ||
        x->cat == CAT_OPT_STATE)
      write_buf(e, f, b);
  }
}

/* Frees every host allocation of the run. */
static void release_all(Exec *e) {
  for (int b = 0; b < e->g->nbufs; b++) {
    if (!e->live[b]) continue;
    if (e->g->bufs[b].persistent || !e->arena) free(e->ptr[b]);
    e->live[b] = false;
    e->ptr[b] = NULL;
  }
  free(e->arena);
  e->arena = NULL;
  free_tmp(e);
}

/* Test probes: copies parameter v (its master when there is one) into
 * out, or applies st's perturbation to it (and to its master). */
static void probe(Exec *e, int v, float *out, const CpuStats *st) {
  const Graph *g = e->g;
  for (int b = 0; b < g->nbufs; b++) {
    const Buf *x = &g->bufs[b];
    if (!x->persistent ||
        !((x->cat == CAT_PARAM && x->value == v) ||
          (x->cat == CAT_MASTER && x->param == v)))
      continue;
    Ref r = {b, v};
    float *p = gather(e, r);
    if (st) {
      p[st->perturb_index] += st->perturb_delta;
      scatter(e, r, p, false);
    } else if (x->cat == CAT_MASTER || x->dtype == DT_F32) {
      memcpy(out, p, sizeof *p * (size_t)x->numel);
    }
    free(p);
  }
}

/* Runs o->steps steps of g's schedule; prints the losses, the predicted
 * and measured peaks and the step time (or one JSON document). Returns 0 if
 * the measured peak, and the live bytes at every instruction, equal the
 * plan's; 1 otherwise. A plan violation (overlap, dead read) exits 1 with
 * a message; bad data (an id out of range) exits 3. */
int cpu_run_stats(Graph *g, const RunOpts *o, CpuStats *st) {
  Exec *e = xalloc(sizeof *e);  /* not a local: see setjmp below */
  e->st = st;
  e->g = g;
  e->o = o;
  e->mismatch_at = -1;
  int steps = o->steps > 0 ? o->steps : 1;
  e->ptr = xalloc(sizeof *e->ptr * (size_t)(g->nbufs ? g->nbufs : 1));
  e->live = xalloc(sizeof *e->live * (size_t)(g->nbufs ? g->nbufs : 1));
  InitKind *kind = xalloc(sizeof *kind * (size_t)(g->nvals ? g->nvals : 1));
  int64_t *fan = xalloc(sizeof *fan * (size_t)(g->nvals ? g->nvals : 1));
  int64_t *limit = xalloc(sizeof *limit * (size_t)(g->nvals ? g->nvals : 1));
  const char *brk = getenv("MDLC_BREAK_PLAN");
  if (brk && strcmp(brk, "1") == 0) break_plan(g);
  if (o->arena) {
    e->arena = cpu_host_alloc((size_t)g->arena_bytes);
    memset(e->arena, 0xA5, (size_t)g->arena_bytes);
  }
  graph_init_plan(g, kind, fan, limit);
  init_persistent(e, kind, fan);
  e->peak = e->live_bytes;
  fill_inputs(e, limit, 0);
  if (st && st->perturb_value >= 0) probe(e, st->perturb_value, NULL, st);
  if (st && st->probe_value >= 0 && st->probe_before)
    probe(e, st->probe_value, st->probe_before, NULL);

  int failed = setjmp(e->fail);
  if (failed) {
    if (e->grads) fclose(e->grads);
    release_all(e);
    return failed;
  }

  double *ms = xalloc(sizeof *ms * (size_t)steps);
  float *loss = xalloc(sizeof *loss * (size_t)steps);
  char b1[32], b2[32];
  if (!o->json && !o->quiet)
    printf("running '%s' on the CPU reference executor: %d step%s, "
           "--alloc %s, %s, %s\n", g->model_name ? g->model_name : "?",
           steps, steps == 1 ? "" : "s", o->arena ? "arena" : "pool",
           precision_name[g->cfg.precision],
           g->cfg.infer ? "inference" : optimizer_name[g->cfg.optimizer]);
  if (o->profile)
    e->prof = xalloc(sizeof *e->prof * (size_t)(g->nins ? g->nins : 1));
  if (st && st->grads_path && !(e->grads = fopen(st->grads_path, "w")))
    die_machine("cannot write '%s'", st->grads_path);
  for (int s = 0; s < steps; s++) {
    e->step = (uint64_t)s;
    if (o->fresh_data && s > 0) fill_inputs(e, limit, (uint64_t)s);
    int64_t before = e->peak;
    e->peak = e->live_bytes;
    double t0 = now_ms();
    loss[s] = run_step(e);
    ms[s] = now_ms() - t0;
    int64_t step_peak = e->peak;
    if (before > e->peak) e->peak = before;
    if (!o->json && !o->quiet)
      printf("step %4d  loss %-12.8g  peak predicted %lld B, measured %lld B"
             "  %.3f ms\n", s + 1, g->loss >= 0 ? (double)loss[s] : NAN,
             (long long)g->peak, (long long)step_peak, ms[s]);
  }
  double *sorted = xalloc(sizeof *sorted * (size_t)steps);
  memcpy(sorted, ms, sizeof *ms * (size_t)steps);
  qsort(sorted, (size_t)steps, sizeof *sorted, cmp_double);
  double median = steps % 2 ? sorted[steps / 2]
                            : 0.5 * (sorted[steps / 2 - 1] + sorted[steps / 2]);
  bool ok = e->peak == g->peak && e->mismatch_at < 0;
  if (o->json) {
    printf("{\n  \"device\": \"cpu\",\n  \"model\": \"%s\",\n  \"steps\": %d,"
           "\n  \"alloc\": \"%s\",\n  \"losses\": [", g->model_name,
           steps, o->arena ? "arena" : "pool");
    for (int s = 0; s < steps; s++) {
      if (isfinite(loss[s])) printf("%s%.9g", s ? ", " : "", (double)loss[s]);
      else printf("%snull", s ? ", " : "");
    }
    printf("],\n  \"predicted_peak\": %lld,\n  \"measured_peak\": %lld,\n"
           "  \"difference\": %lld,\n  \"arena_bytes\": %lld,\n"
           "  \"persistent_bytes\": %lld,\n  \"median_step_ms\": %.6f,\n"
           "  \"match\": %s\n}\n", (long long)g->peak, (long long)e->peak,
           (long long)(e->peak - g->peak), (long long)g->arena_bytes,
           (long long)g->persistent_bytes, median, ok ? "true" : "false");
  } else {
    printf("peak: predicted %lld B (%s), measured %lld B (%s), difference "
           "%lld B\n", (long long)g->peak, fmt_bytes(g->peak, b1),
           (long long)e->peak, fmt_bytes(e->peak, b2),
           (long long)(e->peak - g->peak));
    if (o->arena)
      printf("arena: %lld B planned + %lld B persistent\n",
             (long long)g->arena_bytes, (long long)g->persistent_bytes);
    printf("step time (median of %d): %.3f ms\n", steps, median);
    if (e->prof) print_profile(e, steps);
  }
  if (e->mismatch_at >= 0)
    fprintf(stderr, "mdlc: error: live bytes after the allocations of "
            "instruction %d ('%s'): measured %lld, planned %lld\n",
            e->mismatch_at, node_name(g, &g->ins[e->mismatch_at]),
            (long long)e->mismatch_live, (long long)g->ins[e->mismatch_at].live);
  if (e->peak != g->peak)
    fprintf(stderr, "mdlc: error: measured peak %lld B differs from the "
            "predicted %lld B\n", (long long)e->peak, (long long)g->peak);
  if (e->grads && fclose(e->grads) != 0)
    die_machine("writing '%s' failed", st->grads_path);
  e->grads = NULL;
  if (o->out_path) {
    FILE *f = fopen(o->out_path, "w");
    if (!f) die_usage("-o: cannot write '%s'", o->out_path);
    dump_state(e, f);
    if (fclose(f) != 0) die_usage("-o: writing '%s' failed", o->out_path);
  }
  if (st && st->probe_value >= 0 && st->probe_after)
    probe(e, st->probe_value, st->probe_after, NULL);
  if (st) {
    st->measured_peak = e->peak;
    if (st->losses) memcpy(st->losses, loss, sizeof *loss * (size_t)steps);
  }
  release_all(e);
  return ok ? 0 : 1;
}

/* --run --device cpu: cpu_run_stats without handing anything back. */
int cpu_run(Graph *g, const RunOpts *o) { return cpu_run_stats(g, o, NULL); }
