/* backend/cuda/emit.c: the step as one readable CUDA translation unit.
 *
 * The schedule (g->ins) is unrolled in order into `step()`: before each
 * instruction a comment names it, its IR node, its source location and its
 * operands' shapes; then its allocations, the runtime call, its frees. Every
 * operand is a buffer plus a geometry (`mdlrt_tensor`, one `static const`
 * per value and dtype, or per derived view such as a transpose or a concat
 * slice), so views and a view's gradient need no code at all. The program
 * includes only "mdlrt.h" and prints a small block of `mdlrt:` lines that
 * cuda_run parses (context bytes, per step: loss, time, pool peak).
 *
 * Memory follows memory.md's last section: every Buf is allocated from the
 * runtime's pool at its point of the schedule (or, with --arena, placed at
 * its planned offset in one block), so the pool's high-water mark is the
 * measured peak.
 */
#include "mdlc.h"

#include <math.h>
#include <string.h>

struct Emit {
  const Graph *g;
  const RunOpts *o;
  StrBuf body;       /* setup() and step(), emitted before the geometry */
  StrBuf globals;    /* file-scope declarations of the hooks (conv plans) */
  StrBuf geo;        /* the geometry table */
  const char **geo_names; int ngeo, capgeo;  /* names defined so far */
  int errors;        /* unsupported constructs met */
};

#define P(...) sb_printf(&E->body, __VA_ARGS__)

/* The runtime's dtype codes (ir/ops.c asserts that they are DType's). */
static const char *const mdlrt_dt[DT_COUNT] = {
    [DT_F32] = "MDLRT_F32", [DT_F16] = "MDLRT_F16", [DT_BF16] = "MDLRT_BF16",
    [DT_I32] = "MDLRT_I32", [DT_I64] = "MDLRT_I64", [DT_U8] = "MDLRT_U8"};

const char *emit_dtype(DType t) { return mdlrt_dt[t]; }

/* A C string literal's contents. */
static const char *cstr(const char *s) {
  StrBuf b = {0};
  sb_putc(&b, 0), b.n = 0;
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') sb_putc(&b, '\\');
    if (*s == '\n') { sb_printf(&b, "\\n"); continue; }
    sb_putc(&b, *s);
  }
  return b.s ? b.s : "";
}

const char *emit_loc(Loc l) { return loc_str(l, "no location"); }

static const char *val_desc(const Graph *g, int v) {
  char sh[160];
  const Value *x = &g->vals[v];
  return xsprintf("%%%d %s %s%s", v, x->name, dtype_name(x->dtype),
                  shape_str(&x->shape, sh));
}

/* ---- geometry ------------------------------------------------------------ */

Geom emit_geom(const Graph *g, int v) {
  const Value *x = &g->vals[v];
  Geom m = {.rank = x->shape.rank, .off = x->view_offset};
  bool set = false;
  for (int d = 0; d < x->shape.rank; d++) set |= x->stride[d] != 0;
  int64_t s = 1;
  for (int d = x->shape.rank - 1; d >= 0; d--) {
    m.dim[d] = x->shape.dim[d];
    m.st[d] = set ? x->stride[d] : s;
    s *= x->shape.dim[d];
  }
  if (x->view_of < 0) m.off = 0;
  return m;
}

static bool geom_contig(const Geom *m) {
  int64_t s = 1;
  for (int d = m->rank - 1; d >= 0; d--) {
    if (m->dim[d] != 1 && m->st[d] != s) return false;
    s *= m->dim[d];
  }
  return true;
}

/* Defines geometry `name` (once) and returns the name. */
static const char *geom_def(Emit *E, const char *name, DType dt,
                            const Geom *m, const char *what) {
  for (int i = 0; i < E->ngeo; i++)
    if (strcmp(E->geo_names[i], name) == 0) return name;
  *VEC_PUSH(E->geo_names, E->ngeo, E->capgeo) = name;
  sb_printf(&E->geo, "static const mdlrt_tensor %s = {%s, %d, {", name,
            mdlrt_dt[dt], m->rank);
  for (int d = 0; d < m->rank; d++)
    sb_printf(&E->geo, "%s%lld", d ? ", " : "", (long long)m->dim[d]);
  sb_printf(&E->geo, "}, {");
  for (int d = 0; d < m->rank; d++)
    sb_printf(&E->geo, "%s%lld", d ? ", " : "", (long long)m->st[d]);
  sb_printf(&E->geo, "}, %lld};\n  /* %s */\n", (long long)m->off, what);
  return name;
}

/* The geometry of value v stored as dtype dt: "v17", or "v17_bf16". */
static const char *geom_of(Emit *E, int v, DType dt) {
  const Graph *g = E->g;
  Geom m = emit_geom(g, v);
  const char *name = dt == g->vals[v].dtype
                         ? xsprintf("v%d", v)
                         : xsprintf("v%d_%s", v, dtype_name(dt));
  return geom_def(E, name, dt, &m, val_desc(g, v));
}

/* A reference: "AT(5, v17)", or "NONE". */
static const char *ref(Emit *E, Ref r) {
  if (r.buf < 0) return "NONE";
  int v = r.value >= 0 ? r.value : E->g->bufs[r.buf].value;
  return xsprintf("AT(%d, %s)", r.buf,
                  geom_of(E, v, E->g->bufs[r.buf].dtype));
}

/* A reference to a derived view of r (transposed, a concat slice). */
static const char *ref_geom(Emit *E, Ref r, const char *suffix,
                            const Geom *m, const char *what) {
  if (r.buf < 0) return "NONE";
  DType dt = E->g->bufs[r.buf].dtype;
  const char *name = xsprintf("v%d%s%s%s", r.value,
                              dt == E->g->vals[r.value].dtype ? "" : "_",
                              dt == E->g->vals[r.value].dtype ? ""
                                                              : dtype_name(dt),
                              suffix);
  return xsprintf("AT(%d, %s)", r.buf, geom_def(E, name, dt, m, what));
}

static void unsupported(Emit *E, Loc loc, const char *what) {
  diag_error(loc, "the CUDA backend does not support %s", what);
  E->errors++;
}

/* Operands that our row-wise kernels read as contiguous. */
static void need_contig(Emit *E, const Node *n, Ref r) {
  if (r.buf < 0 || r.value < 0) return;
  Geom m = emit_geom(E->g, r.value);
  if (!geom_contig(&m))
    unsupported(E, n->loc,
                xsprintf("a strided view as an operand of %s",
                         op_info[n->op].name));
}

/* ---- what the hooks use (mdlc.h, "backend/cuda/emit.c") ------------------- */

void emit_printf(EmitOp *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sb_vprintf(&c->E->body, fmt, ap);
  va_end(ap);
}

void emit_global(EmitOp *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sb_vprintf(&c->E->globals, fmt, ap);
  va_end(ap);
}

const char *emit_ref(EmitOp *c, Ref r) { return ref(c->E, r); }

const char *emit_ref_geom(EmitOp *c, Ref r, const char *suffix,
                          const Geom *m, const char *what) {
  return ref_geom(c->E, r, suffix, m, what);
}

void emit_unsupported(EmitOp *c, const char *what) {
  unsupported(c->E, c->n->loc, what);
}

void emit_need_contig(EmitOp *c, Ref r) { need_contig(c->E, c->n, r); }

bool emit_none(const char *r) { return strcmp(r, "NONE") == 0; }

/* ---- one instruction ------------------------------------------------------ */

static EmitOp emit_op(Emit *E, int ni, const Instr *in) {
  EmitOp c = {.E = E, .g = E->g, .n = &E->g->nodes[ni], .node = ni,
              .in = in, .DY = "NONE"};
  for (int k = 0; k < 8; k++) c.X[k] = c.Y[k] = c.DX[k] = "NONE";
  for (int k = 0; k < 16; k++) c.I[k] = "NONE";
  return c;
}

/* The forward call of node n (IK_FWD and IK_RECOMPUTE). Operands are
 * named in a fixed order, so the geometry table reads the same every
 * time: input 0, output 0, inputs 1 and 2, outputs 1 and 2, the rest. */
static void emit_fwd(Emit *E, int ni, const Instr *in) {
  EmitOp c = emit_op(E, ni, in);
  static const int order[][2] = {{0, 0}, {1, 0}, {0, 1}, {0, 2}, {1, 1},
                                 {1, 2}};
  for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
    int out = order[i][0], k = order[i][1];
    if (out && k < in->nout) c.Y[k] = ref(E, in->out[k]);
    if (!out && k < in->nin) c.X[k] = ref(E, in->in[k]);
  }
  for (int k = 3; k < in->nin && k < 8; k++) c.X[k] = ref(E, in->in[k]);
  for (int k = 3; k < in->nout && k < 8; k++) c.Y[k] = ref(E, in->out[k]);
  op_def[c.n->op]->cuda_fwd(&c);
}

/* The backward call of node n; operand layout in mdlc.h (IK_BWD). */
static void emit_bwd(Emit *E, int ni, const Instr *in) {
  const Graph *g = E->g;
  const Node *n = &g->nodes[ni];
  int nin = n->nin, nout = n->nout;
  EmitOp c = emit_op(E, ni, in);
  for (int k = 0; k < nin && k < 8; k++) c.I[k] = ref(E, in->in[k]);
  if (nout > 1) c.I[nin + 1] = ref(E, in->in[nin + 1]);
  if (nout > 2) c.I[nin + 2] = ref(E, in->in[nin + 2]);
  c.I[nin] = ref(E, in->in[nin]);
  for (int k = 3; k < nout && nin + k < 16; k++)
    c.I[nin + k] = ref(E, in->in[nin + k]);
  Ref dyr = in->in[nin + nout];
  c.DY = ref(E, dyr);
  for (int k = 0; k < nin && k < 8; k++) {
    Ref r = in->out[k];
    c.A[k] = in->accum[k];
    /* add's hand-off: the output gradient already is this gradient */
    if (r.buf >= 0 && r.buf == dyr.buf && !in->accum[k]) {
      P("  /* d%%%d: the output gradient, handed on (no copy) */\n",
        n->in[k]);
      continue;
    }
    c.DX[k] = ref(E, r);
  }
  if (dyr.buf < 0) {
    P("  /* no gradient reached the output: nothing to do */\n");
    return;
  }
  op_def[n->op]->cuda_bwd(&c);
}

/* The comment above an instruction: what, where, operand shapes. */
static void emit_header(Emit *E, int i, const Instr *in) {
  const Graph *g = E->g;
  P("\n  /* [%d] %s", i, instr_describe(g, i));
  for (int k = 0; k < in->nin; k++)
    if (in->in[k].buf >= 0 && in->in[k].value >= 0)
      P("\n   *   in  %s", val_desc(g, in->in[k].value));
  for (int k = 0; k < in->nout; k++)
    if (in->out[k].buf >= 0 && in->out[k].value >= 0)
      P("\n   *   out %s%s", in->kind == IK_BWD || in->kind == IK_SEED ? "d "
                                                                      : "",
        val_desc(g, in->out[k].value));
  P(" */\n");
}

static void emit_buf_comment(Emit *E, int b) {
  const Buf *x = &E->g->bufs[b];
  P(" /* %s: %s %s, %lld B */\n", x->name, category_name[x->cat],
    dtype_name(x->dtype), (long long)x->bytes);
}

static void emit_instr(Emit *E, int i) {
  const Graph *g = E->g;
  const Instr *in = &g->ins[i];
  emit_header(E, i, in);
  for (int k = 0; k < in->nalloc; k++) {
    P("  buf_alloc(%d);", in->alloc[k]);
    emit_buf_comment(E, in->alloc[k]);
  }
  P("  mdlrt_op(\"[%d] %s\");\n", i, cstr(instr_describe(g, i)));
  switch (in->kind) {
  case IK_FWD:
  case IK_RECOMPUTE:
    emit_fwd(E, in->node, in);
    break;
  case IK_SEED:
    P("  mdlrt_fill(%s, 1.0);\n", ref(E, in->out[0]));
    break;
  case IK_BWD:
    emit_bwd(E, in->node, in);
    break;
  case IK_OPT: {
    const char *R[5];
    for (int k = 0; k < 5; k++) R[k] = k < in->nin ? ref(E, in->in[k]) : "NONE";
    const Buf *gb = &g->bufs[in->in[1].buf];
    P("  if (grad_dump && s == 0) /* --check: the gradient, eager step only */\n"
      "    mdlrt_dump(grad_dump, \"%s\", \"%s\", %lld, B[%d], %lld);\n",
      cstr(gb->name), dtype_name(gb->dtype), (long long)gb->numel,
      in->in[1].buf, (long long)gb->bytes);
    P("  mdlrt_optim_step(&OPT, %s, %s, %s, %s, %s);\n", R[0], R[1],
      R[2], R[3], R[4]);
    break;
  }
  case IK_REDUCE:
    unsupported(E, NOLOC, "ZeRO's communication (--gpus > 1)");
    break;
  case IK_COUNT:
    ICE("IK_COUNT");
  }
  if (E->o->profile) P("  mdlrt_sync();\n");
  for (int k = 0; k < in->nfree; k++) {
    P("  buf_free(%d);", in->free[k]);
    emit_buf_comment(E, in->free[k]);
  }
}

/* ---- the whole program ----------------------------------------------------- */

static const char *optim_kind[OPTIM_COUNT] = {"MDLRT_SGD", "MDLRT_MOMENTUM",
                                              "MDLRT_ADAM", "MDLRT_ADAMW"};

static void emit_setup(Emit *E) {
  const Graph *g = E->g;
  InitKind *kind = xalloc(sizeof(InitKind) * (size_t)(g->nvals + 1));
  int64_t *fan = xalloc(sizeof(int64_t) * (size_t)(g->nvals + 1));
  int64_t *limit = xalloc(sizeof(int64_t) * (size_t)(g->nvals + 1));
  graph_init_plan(g, kind, fan, limit);

  P("/* Persistent buffers, allocated once and initialised (docs/ops.md):\n"
    " * parameters, optimizer state, master weights, inputs, workspace. */\n"
    "static void setup(void) {\n");
  if (g->workspace_buf >= 0) {
    int b = g->workspace_buf;
    P("  B[%d] = mdlrt_alloc(%lld, 0);", b, (long long)g->bufs[b].bytes);
    emit_buf_comment(E, b);
    P("  mdlrt_set_workspace(B[%d], %lld);\n", b,
      (long long)g->bufs[b].bytes);
  } else {
    P("  mdlrt_set_workspace(0, 0);\n");
  }
  for (int b = 0; b < g->nbufs; b++) {
    const Buf *x = &g->bufs[b];
    if (!x->persistent || b == g->workspace_buf) continue;
    P("  B[%d] = mdlrt_alloc(%lld, 1);", b, (long long)x->bytes);
    emit_buf_comment(E, b);
    int v = x->cat == CAT_MASTER || x->cat == CAT_OPT_STATE ? x->param
                                                            : x->value;
    if (v < 0 || (x->cat != CAT_PARAM && x->cat != CAT_MASTER)) continue;
    const char *r = xsprintf("AT(%d, %s)", b, geom_of(E, v, x->dtype));
    switch (kind[v]) {
    case INIT_KAIMING:
      P("  mdlrt_init_uniform(%s, %d, %.17g);\n", r, v,
        (double)(float)(1.0 / sqrt((double)fan[v])));
      break;
    case INIT_NORMAL: P("  mdlrt_init_normal(%s, %d);\n", r, v); break;
    case INIT_ONE: P("  mdlrt_fill(%s, 1);\n", r); break;
    case INIT_ZERO: break; /* allocated zero-filled */
    case INIT_S4D: {      /* log(s + 1) along the state dim */
      int64_t n = x->numel, S = fan[v];
      P("  {\n    static const double tab[%lld] = {", (long long)S);
      for (int64_t j = 0; j < S; j++)
        P("%s%.9g", j == 0 ? "\n      " : j % 6 ? ", " : ",\n      ",
          (double)(float)log((double)(j + 1)));
      P("};\n    static double a[%lld];\n    for (int64_t i = 0; i < %lld; i++) "
        "a[i] = tab[i %% %lld];\n    mdlrt_write_all(%s, a);\n  }\n",
        (long long)n, (long long)n, (long long)S, r);
      break;
    }
    }
  }
  for (int i = 0; i < g->nnodes; i++) {
    if (!op_def[g->nodes[i].op]->cuda_setup) continue;
    EmitOp c = emit_op(E, i, NULL);
    op_def[g->nodes[i].op]->cuda_setup(&c);
  }
  P("}\n\n");

  P("/* --dump FILE: parameters, master weights and optimizer state after "
    "the\n * last step, in the CPU reference's -o format (--check). */\n"
    "static void dump_state(const char *path) {\n"
    "  FILE *f = fopen(path, \"w\");\n  if (f) fclose(f);\n");
  for (int b = 0; b < g->nbufs; b++) {
    const Buf *x = &g->bufs[b];
    if (x->cat != CAT_PARAM && x->cat != CAT_MASTER &&
        x->cat != CAT_OPT_STATE)
      continue;
    P("  mdlrt_dump(path, \"%s\", \"%s\", %lld, B[%d], %lld);\n",
      cstr(x->name), dtype_name(x->dtype), (long long)x->numel, b,
      (long long)x->bytes);
  }
  P("}\n\n");

  P("/* The batch: drawn at step 0, or every step with --fresh. */\n"
    "static void load_inputs(int64_t s) {\n");
  for (int b = 0; b < g->nbufs; b++) {
    const Buf *x = &g->bufs[b];
    if (x->cat != CAT_INPUT || x->value < 0) continue;
    P("  mdlrt_init_input(AT(%d, %s), %d, %lld, (uint64_t)s);\n", b,
      geom_of(E, x->value, x->dtype), x->value, (long long)limit[x->value]);
  }
  P("}\n\n");
}

static void emit_step(Emit *E) {
  const Graph *g = E->g;
  P("/* One training step: the schedule, unrolled. s: the 0-based step. */\n"
    "static void step(int64_t s) {\n"
    "  mdlrt_step_begin(s, &OPT); /* dropout's step, Adam's corrections */\n");
  for (int i = 0; i < g->nins; i++) emit_instr(E, i);
  P("}\n\n");
  P("/* After reading the results: the loss and the outputs go. */\n"
    "static void end_step(void) {\n");
  for (int b = 0; b < g->nbufs; b++) {
    const Buf *x = &g->bufs[b];
    if (x->persistent || x->free_at >= 0 || x->alloc_at < 0) continue;
    P("  buf_free(%d);", b);
    emit_buf_comment(E, b);
  }
  P("}\n\n");
}

/* The emitted start_replay; its own comment says what it does (and
 * docs/memory-notes.md why). */
static const char *const REPLAY_TEXT =
    "/* From the second step on, the step replays as a CUDA graph captured "
    "in\n * arena mode: nothing is allocated inside, every buffer lies at "
    "its planned\n * offset. In pool mode the arena comes from the pool, "
    "which then holds the\n * persistent bytes and the arena, nothing "
    "else. */\n"
    "static int start_replay(void) {\n"
    "  if (!arena_mode) {\n"
    "    arena = ARENA_BYTES ? (char *)mdlrt_try_alloc(ARENA_BYTES) : 0;\n"
    "    if (ARENA_BYTES && !arena) {\n"
    "      printf(\"mdlrt: replay off: no room for the arena\\n\");\n"
    "      return 0;\n"
    "    }\n"
    "    arena_mode = 1;\n"
    "  }\n"
    "  mdlrt_graph_capture(step, 1);\n"
    "  return 1;\n"
    "}\n\n";

static const char *const MAIN_TEXT =
    "int main(int argc, char **argv) {\n"
    "  int64_t steps = STEPS;\n"
    "  mdlrt_config cfg = {MODEL, SEED, 0};\n"
    "  int fresh = FRESH, eager = !GRAPH_OK;\n"
    "  const char *dump = 0;\n"
    "  for (int i = 1; i < argc; i++) {\n"
    "    if (!strcmp(argv[i], \"--steps\") && i + 1 < argc)\n"
    "      steps = atoll(argv[++i]);\n"
    "    else if (!strcmp(argv[i], \"--seed\") && i + 1 < argc)\n"
    "      cfg.seed = strtoull(argv[++i], 0, 10);\n"
    "    else if (!strcmp(argv[i], \"--lr\") && i + 1 < argc)\n"
    "      OPT.lr = atof(argv[++i]);\n"
    "    else if (!strcmp(argv[i], \"--arena\")) cfg.arena = 1;\n"
    "    else if (!strcmp(argv[i], \"--fresh\")) fresh = 1;\n"
    "    else if (!strcmp(argv[i], \"--eager\")) eager = 1;\n"
    "    else if (!strcmp(argv[i], \"--dump\") && i + 1 < argc)\n"
    "      dump = argv[++i];\n"
    "    else if (!strcmp(argv[i], \"--dump-grads\") && i + 1 < argc)\n"
    "      grad_dump = argv[++i];\n"
    "    else {\n"
    "      fprintf(stderr, \"usage: %s [--steps N] [--seed N] [--lr X] \"\n"
    "              \"[--arena] [--fresh] [--eager] [--dump FILE] \"\n"
    "              \"[--dump-grads FILE]\\n\", argv[0]);\n"
    "      return 2;\n"
    "    }\n"
    "  }\n"
    "  if (grad_dump) { /* emptied; step 1 appends */\n"
    "    FILE *f = fopen(grad_dump, \"w\");\n"
    "    if (f) fclose(f);\n"
    "  }\n"
    "  arena_mode = cfg.arena;\n"
    "  mdlrt_init(&cfg);\n"
    "  int64_t base = mdlrt_device_used();\n"
    "  printf(\"mdlrt: context %lld\\n\", (long long)base);\n"
    "  if (arena_mode) arena = (char *)mdlrt_arena(ARENA_BYTES);\n"
    "  setup();\n"
    "  load_inputs(0);\n"
    "  if (arena_mode)\n"
    "    printf(\"mdlrt: arena_used %lld\\n\",\n"
    "           (long long)(mdlrt_device_used() - base));\n"
    "  int pool = !arena_mode, replay = 0;\n"
    "  for (int64_t s = 0; s < steps; s++) {\n"
    "    if (fresh && s > 0) load_inputs(s);\n"
    "    if (s == 1 && !eager && mdlrt_graph_ok()) replay = start_replay();\n"
    "    if (pool) mdlrt_pool_reset_peak();\n"
    "    mdlrt_timer_start();\n"
    "    if (replay) mdlrt_graph_replay(s);\n"
    "    else step(s);\n"
    "    double ms = mdlrt_timer_stop();\n"
    "    long long peak = pool ? (long long)mdlrt_pool_peak() : -1;\n"
    "    printf(\"mdlrt: step %lld loss %.9g ms %.6f peak %lld%s\\n\",\n"
    "           (long long)s, LOSS_READ, ms, peak, replay ? \" replay\" : \"\");\n"
    "    fflush(stdout);\n"
    "    end_step();\n"
    "  }\n"
    "  if (dump) dump_state(dump);\n"
    "  mdlrt_shutdown();\n"
    "  printf(\"mdlrt: done\\n\");\n"
    "  return 0;\n"
    "}\n";

/* The separator before element i of an array printed `per` to a line. */
static const char *sep(int i, int per) {
  return i == 0 ? "\n  " : i % per ? ", " : ",\n  ";
}

int cuda_emit(const Graph *g, const RunOpts *o, FILE *f) {
  Emit e = {.g = g, .o = o}, *E = &e;
  if (g->cfg.gpus > 1) {
    diag_error(NOLOC, "the CUDA backend runs one GPU; --gpus %d is for "
               "--peak only", g->cfg.gpus);
    return 1;
  }
  sb_putc(&E->geo, 0), E->geo.n = 0;
  emit_setup(E);
  emit_step(E);
  if (E->errors) return 1;

  const char *src = g->nnodes && g->nodes[0].loc.file >= 0
                        ? src_path(g->nodes[0].loc.file)
                        : "?";
  const Config *c = &g->cfg;
  fprintf(f,
          "/* The training step of model '%s' (%s), generated by mdlc %s.\n"
          " * precision %s, optimizer %s, workspace %lld B%s%s\n"
          " * predicted peak %lld B (instruction %d), persistent %lld B, "
          "arena %lld B\n"
          " * Build: nvcc -arch=sm_90 -I<mdlc>/runtime this.cu libmdlrt.a "
          "-lcublas -lcublasLt -lcudnn\n"
          " * Run:   ./a.out [--steps N] [--seed N] [--lr X] [--arena] "
          "[--fresh] [--eager] [--dump FILE]\n"
          " *        [--dump-grads FILE]\n"
          " * Step 1 runs eagerly; steps 2.. replay it as a CUDA graph "
          "(--eager: not).\n"
          " * Every buffer B[i] is Buf i of the plan (mdlc --dump-after "
          "liveness). */\n",
          g->model_name ? g->model_name : "?", src, MDLC_VERSION,
          precision_name[c->precision], optimizer_name[c->optimizer],
          (long long)c->workspace, c->infer ? ", inference" : "",
          c->opt_in_backward ? ", optimizer in backward" : "",
          (long long)g->peak, g->peak_at, (long long)g->persistent_bytes,
          (long long)g->arena_bytes);
  fprintf(f, "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n"
             "\n#include \"mdlrt.h\"\n\n");
  fprintf(f, "#define MODEL \"%s\"\n", cstr(g->model_name ? g->model_name : "?"));
  fprintf(f, "#define STEPS %d\n#define SEED %lluull\n#define FRESH %d\n",
          o->steps > 0 ? o->steps : CUDA_DEFAULT_STEPS,
          (unsigned long long)o->seed, o->fresh_data);
  /* --profile synchronizes after every op: no graph can hold that */
  fprintf(f, "#define GRAPH_OK %d\n", o->profile ? 0 : 1);
  fprintf(f, "#define PREDICTED_PEAK %lldll\n#define ARENA_BYTES %lldll\n",
          (long long)g->peak, (long long)g->arena_bytes);
  if (g->loss >= 0 && g->val_buf[g->loss] >= 0)
    fprintf(f, "#define LOSS_READ mdlrt_read(AT(%d, v%d), 0)\n",
            g->val_buf[g->loss], g->loss);
  else
    fprintf(f, "#define LOSS_READ (0.0 / 0.0)\n");
  double lr = o->lr > 0 ? o->lr : cpu_default_lr(c->optimizer);
  fprintf(f,
          "\nstatic mdlrt_optim OPT = {%s, %.17g, 0.9, 0.9, 0.999, 1e-8, "
          "%s};\n",
          optim_kind[c->optimizer], lr,
          c->optimizer == OPTIM_ADAMW ? "0.01" : "0");

  /* buffers: sizes, arena offsets, zero-fill flags */
  fprintf(f, "\n/* Buf i: bytes, arena offset (-1: persistent), zero-filled "
             "at allocation. */\nenum { NBUF = %d };\n", g->nbufs ? g->nbufs : 1);
  fprintf(f, "static void *B[NBUF];\nstatic const long long BYTES[NBUF] = {");
  for (int b = 0; b < g->nbufs; b++)
    fprintf(f, "%s%lld", sep(b, 8), (long long)g->bufs[b].bytes);
  fprintf(f, "%s};\nstatic const long long OFFSET[NBUF] = {",
          g->nbufs ? "" : "0");
  for (int b = 0; b < g->nbufs; b++)
    fprintf(f, "%s%lld", sep(b, 8), (long long)g->bufs[b].offset);
  fprintf(f, "%s};\nstatic const char ZERO[NBUF] = {", g->nbufs ? "" : "0");
  for (int b = 0; b < g->nbufs; b++)
    fprintf(f, "%s%d", sep(b, 16), g->bufs[b].zero_init);
  fprintf(f, "%s};\n", g->nbufs ? "" : "0");
  fprintf(f,
          "static int arena_mode;  /* --arena: buffers at planned offsets */\n"
          "static const char *grad_dump; /* --dump-grads FILE */\n"
          "static char *arena;     /* the arena block */\n\n"
          "static void buf_alloc(int b) {\n"
          "  if (arena_mode) {\n"
          "    B[b] = arena + OFFSET[b];\n"
          "    if (ZERO[b]) mdlrt_zero(B[b], BYTES[b]);\n"
          "  } else {\n"
          "    B[b] = mdlrt_alloc(BYTES[b], ZERO[b]);\n"
          "  }\n"
          "}\n\n"
          "/* In arena mode a buffer keeps its place, so a replayed step's "
          "loss can be\n * read where the captured one wrote it. */\n"
          "static void buf_free(int b) {\n"
          "  if (arena_mode) return;\n"
          "  mdlrt_free(B[b]);\n"
          "  B[b] = 0;\n"
          "}\n\n"
          "#define AT(b, t) mdlrt_at(B[b], &(t))\n"
          "static const mdlrt_ref NONE = {0, 0};\n\n");
  fputs(E->globals.s ? E->globals.s : "", f);
  /* only the geometries that a call reads (a view's base may be unused) */
  fprintf(f, "\n/* Geometry: dtype, shape, element strides, element offset "
             "in its buffer. */\n");
  const char *loss_geo = g->loss >= 0 ? xsprintf("v%d", g->loss) : "";
  for (char *def = E->geo.s; def && *def;) {
    char *end = strstr(def, "*/\n");
    end = end ? end + 3 : def + strlen(def);
    char name[64];
    if (sscanf(def, "static const mdlrt_tensor %63s", name) == 1 &&
        (strstr(E->body.s ? E->body.s : "", xsprintf(", %s)", name)) ||
         strcmp(name, loss_geo) == 0))
      fwrite(def, 1, (size_t)(end - def), f);
    def = end;
  }
  fprintf(f, "\n");
  fputs(E->body.s ? E->body.s : "", f);
  fputs(REPLAY_TEXT, f);
  fputs(MAIN_TEXT, f);
  return ferror(f) ? 1 : 0;
}
