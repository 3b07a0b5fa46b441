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

typedef struct {
  const Graph *g;
  const RunOpts *o;
  StrBuf body;       /* setup() and step(), emitted before the geometry */
  StrBuf geo;        /* the geometry table */
  const char **geo_names; int ngeo, capgeo;  /* names defined so far */
  int errors;        /* unsupported constructs met */
} Emit;

#define P(...) sb_printf(&E->body, __VA_ARGS__)

static const char *const mdlrt_dt[DT_COUNT] = {
    "MDLRT_F32", "MDLRT_F16", "MDLRT_BF16", "MDLRT_I32", "MDLRT_I64",
    "MDLRT_U8"};

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

/* "file.mdl:5:7", or "no location". */
static const char *loc_str(Loc l) {
  if (l.file < 0) return "no location";
  int line, col;
  src_linecol(l.file, l.begin, &line, &col);
  return xsprintf("%s:%d:%d", src_path(l.file), line, col);
}

static const char *val_desc(const Graph *g, int v) {
  char sh[160];
  const Value *x = &g->vals[v];
  return xsprintf("%%%d %s %s%s", v, x->name, dtype_name(x->dtype),
                  shape_str(&x->shape, sh));
}

/* ---- geometry ------------------------------------------------------------ */

typedef struct {
  int rank;
  int64_t dim[MAX_RANK], st[MAX_RANK], off;
} Geom;

static Geom value_geom(const Graph *g, int v) {
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
  Geom m = value_geom(g, v);
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
  Geom m = value_geom(E->g, r.value);
  if (!geom_contig(&m))
    unsupported(E, n->loc,
                xsprintf("a strided view as an operand of %s",
                         op_info[n->op].name));
}

static int64_t numel_of(const Graph *g, int v) {
  return shape_numel_ok(&g->vals[v].shape);
}

static int64_t last_dim(const Shape *s) {
  return s->rank ? s->dim[s->rank - 1] : 1;
}

/* ---- parameter initialisation (docs/ops.md, as backend/cpu/exec.c does) --------- */


/* ---- one instruction ------------------------------------------------------ */

/* The forward call of node n (IK_FWD and IK_RECOMPUTE). */
static void emit_fwd(Emit *E, int ni, const Instr *in) {
  const Graph *g = E->g;
  const Node *n = &g->nodes[ni];
  const char *X = in->nin > 0 ? ref(E, in->in[0]) : "NONE";
  const char *Y = in->nout > 0 ? ref(E, in->out[0]) : "NONE";
  const char *I1 = in->nin > 1 ? ref(E, in->in[1]) : "NONE";
  const char *I2 = in->nin > 2 ? ref(E, in->in[2]) : "NONE";
  const char *O1 = in->nout > 1 ? ref(E, in->out[1]) : "NONE";
  const char *O2 = in->nout > 2 ? ref(E, in->out[2]) : "NONE";
  const Shape *xs = in->nin > 0 ? &g->vals[n->in[0]].shape : NULL;
  const Shape *ys = &g->vals[n->out[0]].shape;
  switch (n->op) {
  case OP_LINEAR: {
    need_contig(E, n, in->in[0]);
    int64_t K = last_dim(xs), N = n->a.linear.out;
    P("  mdlrt_linear_fwd(%s, %s, %s, %s, %lld, %lld, %lld);\n", Y, X, I1, I2,
      (long long)(numel_of(g, n->in[0]) / K), (long long)K, (long long)N);
    break;
  }
  case OP_MATMUL: {
    const Shape *bs = &g->vals[n->in[1]].shape;
    need_contig(E, n, in->in[0]), need_contig(E, n, in->in[1]);
    bool ta = n->a.matmul.ta, tb = n->a.matmul.tb;
    int64_t m = ys->dim[ys->rank - 2], nn = ys->dim[ys->rank - 1];
    int64_t k = ta ? xs->dim[xs->rank - 2] : xs->dim[xs->rank - 1];
    int64_t batch = shape_numel_ok(ys) / (m * nn);
    int64_t na = shape_numel_ok(xs), nb = shape_numel_ok(bs);
    int64_t sa = na == m * k ? 0 : m * k, sb = nb == k * nn ? 0 : k * nn;
    if ((sa && na != batch * m * k) || (sb && nb != batch * k * nn))
      unsupported(E, n->loc, "matmul with partly broadcast batch dims");
    P("  mdlrt_matmul_fwd(%s, %s, %s, %d, %d, %lld, %lld, %lld, %lld, %lld, "
      "%lld);\n", Y, X, I1, ta, tb, (long long)batch, (long long)m,
      (long long)k, (long long)nn, (long long)sa, (long long)sb);
    break;
  }
  case OP_CONV2D:
    P("  mdlrt_conv_fwd(conv_%d, %s, %s, %s, %s);\n", ni, Y, X, I1, I2);
    break;
  case OP_MAXPOOL2D:
  case OP_AVGPOOL2D:
    P("  mdlrt_pool_fwd(%d, %s, %s, %lld, %lld, %lld);\n",
      n->op == OP_AVGPOOL2D, Y, X, (long long)n->a.pool.kernel,
      (long long)n->a.pool.stride, (long long)n->a.pool.pad);
    break;
  case OP_GLOBAL_AVGPOOL:
    P("  mdlrt_global_avgpool_fwd(%s, %s);\n", Y, X);
    break;
  case OP_BATCHNORM:
    P("  mdlrt_batchnorm_fwd(%s, %s, %s, %s, %s, %s, %s, %s, %.17g, %d);\n", Y,
      O1, O2, X, I1, I2, ref(E, in->in[3]), ref(E, in->in[4]),
      n->a.norm.eps, !g->cfg.infer);
    break;
  case OP_LAYERNORM:
    need_contig(E, n, in->in[0]);
    P("  mdlrt_layernorm_fwd(%s, %s, %s, %s, %s, %s, %.17g);\n", Y, O1, O2, X,
      I1, I2, n->a.norm.eps);
    break;
  case OP_INSTANCENORM:
  case OP_GROUPNORM:
    need_contig(E, n, in->in[0]);
    P("  mdlrt_groupnorm_fwd(%s, %s, %s, %s, %s, %s, %lld, %.17g);\n", Y, O1,
      O2, X, I1, I2,
      (long long)(n->op == OP_INSTANCENORM ? xs->dim[1] : n->a.norm.groups),
      n->a.norm.eps);
    break;
  case OP_RELU: P("  mdlrt_unary_fwd(MDLRT_RELU, %s, %s, 0);\n", Y, X); break;
  case OP_GELU: P("  mdlrt_unary_fwd(MDLRT_GELU, %s, %s, 0);\n", Y, X); break;
  case OP_SILU: P("  mdlrt_unary_fwd(MDLRT_SILU, %s, %s, 0);\n", Y, X); break;
  case OP_TANH: P("  mdlrt_unary_fwd(MDLRT_TANH, %s, %s, 0);\n", Y, X); break;
  case OP_SIGMOID:
    P("  mdlrt_unary_fwd(MDLRT_SIGMOID, %s, %s, 0);\n", Y, X);
    break;
  case OP_SCALE:
    P("  mdlrt_unary_fwd(MDLRT_SCALE, %s, %s, %.17g);\n", Y, X, n->a.scale.c);
    break;
  case OP_CAST: P("  mdlrt_copy(%s, %s, 0);\n", Y, X); break;
  case OP_DROPOUT:
    P("  mdlrt_dropout_fwd(%s, %s, %s, %.17g, %d);\n", Y, O1, X,
      n->a.dropout.p, ni);
    break;
  case OP_ADD: P("  mdlrt_add_fwd(%s, %s, %s);\n", Y, X, I1); break;
  case OP_MUL: P("  mdlrt_mul_fwd(%s, %s, %s);\n", Y, X, I1); break;
  case OP_SOFTMAX:
    need_contig(E, n, in->in[0]);
    P("  mdlrt_softmax_fwd(%s, %s, %d);\n", Y, X, n->a.softmax.causal);
    break;
  case OP_EMBEDDING:
    P("  mdlrt_embedding_fwd(%s, %s, %s);\n", Y, X, I1);
    break;
  case OP_TRANSPOSE: {
    /* y = x read through swapped dims: a strided copy */
    Geom m = value_geom(g, n->in[0]);
    int a = n->a.transpose.a, b = n->a.transpose.b;
    int64_t t = m.dim[a]; m.dim[a] = m.dim[b]; m.dim[b] = t;
    t = m.st[a]; m.st[a] = m.st[b]; m.st[b] = t;
    P("  mdlrt_copy(%s, %s, 0);\n", Y,
      ref_geom(E, in->in[0], xsprintf("_T%d%d", a, b), &m,
               xsprintf("%%%d with dims %d and %d swapped", n->in[0], a, b)));
    break;
  }
  case OP_CONCAT: {
    Geom m = value_geom(g, n->out[0]);
    int ax = n->a.concat.axis;
    int64_t at = 0, off0 = m.off;
    for (int k = 0; k < n->nin; k++) {
      Geom part = m;
      part.dim[ax] = g->vals[n->in[k]].shape.dim[ax];
      part.off = off0 + at * m.st[ax];
      P("  mdlrt_copy(%s, %s, 0);\n",
        ref_geom(E, in->out[0], xsprintf("_at%lld", (long long)at), &part,
                 xsprintf("part %d of %%%d", k, n->out[0])),
        ref(E, in->in[k]));
      at += part.dim[ax];
    }
    break;
  }
  case OP_CROSS_ENTROPY:
    need_contig(E, n, in->in[0]);
    P("  mdlrt_cross_entropy_fwd(%s, %s, %s, %s);\n", Y, O1, X, I1);
    break;
  case OP_MSE: P("  mdlrt_mse_fwd(%s, %s, %s);\n", Y, X, I1); break;
  case OP_RESHAPE:
  case OP_SPLIT:
    P("  /* a view: nothing runs */\n");
    break;
  case OP_COUNT:
    ICE("bad op");
  }
}

/* The backward call of node n; operand layout in mdlc.h (IK_BWD). */
static void emit_bwd(Emit *E, int ni, const Instr *in) {
  const Graph *g = E->g;
  const Node *n = &g->nodes[ni];
  int nin = n->nin, nout = n->nout;
  const char *I[8], *DX[8];
  int A[8];
  for (int k = 0; k < 8; k++) I[k] = DX[k] = "NONE", A[k] = 0;
  for (int k = 0; k < nin && k < 8; k++) I[k] = ref(E, in->in[k]);
  const char *O1 = nout > 1 ? ref(E, in->in[nin + 1]) : "NONE";
  const char *O2 = nout > 2 ? ref(E, in->in[nin + 2]) : "NONE";
  const char *O0 = ref(E, in->in[nin]);
  Ref dyr = in->in[nin + nout];
  const char *DY = ref(E, dyr);
  for (int k = 0; k < nin && k < 8; k++) {
    Ref r = in->out[k];
    A[k] = in->accum[k];
    /* add's hand-off: the output gradient already is this gradient */
    if (r.buf >= 0 && r.buf == dyr.buf && !in->accum[k]) {
      P("  /* d%%%d: the output gradient, handed on (no copy) */\n",
        n->in[k]);
      continue;
    }
    DX[k] = ref(E, r);
  }
  if (dyr.buf < 0) {
    P("  /* no gradient reached the output: nothing to do */\n");
    return;
  }
  const Shape *xs = &g->vals[n->in[0]].shape;
  const Shape *ys = &g->vals[n->out[0]].shape;
  switch (n->op) {
  case OP_LINEAR: {
    int64_t K = last_dim(xs), N = n->a.linear.out;
    P("  mdlrt_linear_bwd(%s, %d, %s, %d, %s, %d, %s, %s, %s, %lld, %lld, "
      "%lld);\n", DX[0], A[0], DX[1], A[1], DX[2], A[2], DY, I[0], I[1],
      (long long)(numel_of(g, n->in[0]) / K), (long long)K, (long long)N);
    break;
  }
  case OP_MATMUL: {
    const Shape *bs = &g->vals[n->in[1]].shape;
    bool ta = n->a.matmul.ta, tb = n->a.matmul.tb;
    int64_t m = ys->dim[ys->rank - 2], nn = ys->dim[ys->rank - 1];
    int64_t k = ta ? xs->dim[xs->rank - 2] : xs->dim[xs->rank - 1];
    int64_t batch = shape_numel_ok(ys) / (m * nn);
    int64_t sa = shape_numel_ok(xs) == m * k ? 0 : m * k;
    int64_t sb = shape_numel_ok(bs) == k * nn ? 0 : k * nn;
    P("  mdlrt_matmul_bwd(%s, %d, %s, %d, %s, %s, %s, %d, %d, %lld, %lld, "
      "%lld, %lld, %lld, %lld);\n", DX[0], A[0], DX[1], A[1], DY, I[0], I[1],
      ta, tb, (long long)batch, (long long)m, (long long)k, (long long)nn,
      (long long)sa, (long long)sb);
    break;
  }
  case OP_CONV2D:
    P("  mdlrt_conv_bwd(conv_%d, %s, %d, %s, %d, %s, %d, %s, %s, %s);\n", ni,
      DX[0], A[0], DX[1], A[1], DX[2], A[2], DY, I[0], I[1]);
    break;
  case OP_MAXPOOL2D:
  case OP_AVGPOOL2D:
    P("  mdlrt_pool_bwd(%d, %s, %d, %s, %s, %s, %lld, %lld, %lld);\n",
      n->op == OP_AVGPOOL2D, DX[0], A[0], DY, I[0], O0,
      (long long)n->a.pool.kernel, (long long)n->a.pool.stride,
      (long long)n->a.pool.pad);
    break;
  case OP_GLOBAL_AVGPOOL:
    P("  mdlrt_global_avgpool_bwd(%s, %d, %s);\n", DX[0], A[0], DY);
    break;
  case OP_BATCHNORM:
    P("  mdlrt_batchnorm_bwd(%s, %d, %s, %d, %s, %d, %s, %s, %s, %s, %s);\n",
      DX[0], A[0], DX[1], A[1], DX[2], A[2], DY, I[0], O1, O2, I[1]);
    break;
  case OP_LAYERNORM:
    P("  mdlrt_layernorm_bwd(%s, %d, %s, %d, %s, %d, %s, %s, %s, %s, %s);\n",
      DX[0], A[0], DX[1], A[1], DX[2], A[2], DY, I[0], O1, O2, I[1]);
    break;
  case OP_INSTANCENORM:
  case OP_GROUPNORM:
    P("  mdlrt_groupnorm_bwd(%s, %d, %s, %d, %s, %d, %s, %s, %s, %s, %s, "
      "%lld);\n", DX[0], A[0], DX[1], A[1], DX[2], A[2], DY, I[0], O1, O2,
      I[1],
      (long long)(n->op == OP_INSTANCENORM ? xs->dim[1] : n->a.norm.groups));
    break;
  case OP_RELU:
  case OP_TANH:
  case OP_SIGMOID:
    P("  mdlrt_unary_bwd(%s, %s, %d, %s, %s, 0);\n",
      n->op == OP_RELU ? "MDLRT_RELU"
                       : n->op == OP_TANH ? "MDLRT_TANH" : "MDLRT_SIGMOID",
      DX[0], A[0], DY, O0);
    break;
  case OP_GELU:
  case OP_SILU:
    P("  mdlrt_unary_bwd(%s, %s, %d, %s, %s, 0);\n",
      n->op == OP_GELU ? "MDLRT_GELU" : "MDLRT_SILU", DX[0], A[0], DY, I[0]);
    break;
  case OP_SCALE:
    P("  mdlrt_unary_bwd(MDLRT_SCALE, %s, %d, %s, NONE, %.17g);\n", DX[0],
      A[0], DY, n->a.scale.c);
    break;
  case OP_CAST: P("  mdlrt_copy(%s, %s, %d);\n", DX[0], DY, A[0]); break;
  case OP_DROPOUT:
    P("  mdlrt_dropout_bwd(%s, %d, %s, %s, %.17g);\n", DX[0], A[0], DY, O1,
      n->a.dropout.p);
    break;
  case OP_ADD:
    for (int k = 0; k < 2; k++)
      if (strcmp(DX[k], "NONE") != 0)
        P("  mdlrt_bcast_bwd(%s, %d, %s, NONE);\n", DX[k], A[k], DY);
    break;
  case OP_MUL:
    for (int k = 0; k < 2; k++)
      if (strcmp(DX[k], "NONE") != 0)
        P("  mdlrt_bcast_bwd(%s, %d, %s, %s);\n", DX[k], A[k], DY, I[1 - k]);
    break;
  case OP_SOFTMAX:
    P("  mdlrt_softmax_bwd(%s, %d, %s, %s);\n", DX[0], A[0], DY, O0);
    break;
  case OP_EMBEDDING:
    P("  mdlrt_embedding_bwd(%s, %d, %s, %s);\n", DX[1], A[1], DY, I[0]);
    break;
  case OP_TRANSPOSE: {
    Ref r = in->out[0];
    if (r.buf < 0) break;
    Geom m = value_geom(g, r.value);
    int a = n->a.transpose.a, b = n->a.transpose.b;
    int64_t t = m.dim[a]; m.dim[a] = m.dim[b]; m.dim[b] = t;
    t = m.st[a]; m.st[a] = m.st[b]; m.st[b] = t;
    P("  mdlrt_copy(%s, %s, %d);\n",
      ref_geom(E, r, xsprintf("_T%d%d", a, b), &m,
               xsprintf("d%%%d with dims %d and %d swapped", r.value, a, b)),
      DY, A[0]);
    break;
  }
  case OP_CONCAT: {
    Geom m = value_geom(g, n->out[0]);
    int ax = n->a.concat.axis;
    int64_t at = 0, off0 = m.off;
    for (int k = 0; k < nin; k++) {
      Geom part = m;
      part.dim[ax] = g->vals[n->in[k]].shape.dim[ax];
      part.off = off0 + at * m.st[ax];
      if (in->out[k].buf >= 0)
        P("  mdlrt_copy(%s, %s, %d);\n", ref(E, in->out[k]),
          ref_geom(E, dyr, xsprintf("_at%lld", (long long)at), &part,
                   xsprintf("part %d of d%%%d", k, n->out[0])),
          in->accum[k]);
      at += part.dim[ax];
    }
    break;
  }
  case OP_CROSS_ENTROPY:
    P("  mdlrt_cross_entropy_bwd(%s, %d, %s, %s, %s);\n", DX[0], A[0], DY, O1,
      I[1]);
    break;
  case OP_MSE:
    if (strcmp(DX[0], "NONE") != 0)
      P("  mdlrt_mse_bwd(%s, %d, 1, %s, %s, %s);\n", DX[0], A[0], DY, I[0],
        I[1]);
    if (strcmp(DX[1], "NONE") != 0)
      P("  mdlrt_mse_bwd(%s, %d, -1, %s, %s, %s);\n", DX[1], A[1], DY, I[0],
        I[1]);
    break;
  case OP_RESHAPE:
  case OP_SPLIT:
    P("  /* a view: its gradient is its place in the base's gradient */\n");
    break;
  case OP_COUNT:
    ICE("bad op");
  }
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
  default:
    unsupported(E, NOLOC, "ZeRO's communication (--gpus > 1)");
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
    }
  }
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op != OP_CONV2D) continue;
    const Shape *xs = &g->vals[n->in[0]].shape;
    const Shape *ys = &g->vals[n->out[0]].shape;
    P("  /* conv2d '%s' (%s): descriptors and algorithms, once */\n", n->name,
      loc_str(n->loc));
    P("  conv_%d = mdlrt_conv_plan(%s, %lld, %lld, %lld, %lld, %lld, %lld, "
      "%lld, %lld, %lld, %lld, %lld, %lld);\n", i,
      mdlrt_dt[g->vals[n->out[0]].dtype], (long long)xs->dim[0],
      (long long)xs->dim[1], (long long)xs->dim[2], (long long)xs->dim[3],
      (long long)n->a.conv.out, (long long)n->a.conv.kernel,
      (long long)n->a.conv.stride, (long long)n->a.conv.pad,
      (long long)n->a.conv.dilation, (long long)n->a.conv.groups,
      (long long)ys->dim[2], (long long)ys->dim[3]);
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
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == OP_CONV2D)
      fprintf(f, "static mdlrt_conv *conv_%d; /* %s */\n", i,
              g->nodes[i].name);
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
