/* frontend/builtins.c: the operators of language.md, checked and lowered.
 *
 * Each operator has a signature (Spec rows: tensors first, then integers,
 * numbers and flags, each with its default and range), so binding a call's
 * arguments is one generic routine that reports unknown, duplicate,
 * missing, out-of-range and wrongly typed arguments with the signature as
 * a hint. Then one case per operator checks dtypes and shapes (NumPy
 * broadcasting, 64-bit element counts) and creates nodes, parameters and
 * extra outputs in the order ir/ops.def states. `attention`, `flatten` and
 * `param` are sugar: attention becomes the eleven primitives language.md
 * lists, flatten a reshape, param a parameter value with no node.
 *
 * Views (reshape, split, flatten) point at their input (view_of) and carry
 * their geometry: view_offset and strides in elements of the root
 * storage, so a reshape of a split view of qkv [B, S, 3D] into
 * [B, S, H, D/H] gets strides (S*3D, 3D, D/H, 1).
 */
#include "mdlc.h"

#include <math.h>
#include <string.h>

typedef enum {
  A_T,    /* a tensor (positional only) */
  A_TS,   /* the remaining positional tensors (concat) */
  A_I,    /* an integer in [lo, hi] */
  A_IS,   /* the remaining positional integers (reshape) */
  A_F,    /* a number; > 0 when lo == 1 (eps) */
  A_P,    /* a probability in [0, 1) */
  A_B,    /* true or false */
  A_TYPE, /* a tensor type, f32[4, 3] (param) */
} ArgType;

typedef struct {
  const char *name; /* as an option: name = value */
  ArgType t;        /* what it takes */
  bool req;         /* must be given */
  double def;       /* default */
  int64_t lo, hi;   /* A_I range (A_F: lo 1 means > 0) */
} Spec;

enum { BI_ATTENTION = OP_COUNT, BI_FLATTEN, BI_PARAM, MAX_SPEC = 8 };

typedef struct {
  const char *name; /* the .mdl spelling */
  int op;           /* an Op, or BI_* */
  const char *sig;  /* for hints */
  Spec a[MAX_SPEC];
} Builtin;

#define ANY INT64_MIN, INT64_MAX
#define POS 1, INT64_MAX
#define NNEG 0, INT64_MAX
#define T(n) {n, A_T, true, 0, ANY}
#define EPS {"eps", A_F, false, 1e-5, 1, 0}

static const Builtin builtins[] = {
    {"linear", OP_LINEAR, "linear(x, out, bias=true)",
     {T("x"), {"out", A_I, true, 0, POS}, {"bias", A_B, false, 1, ANY}}},
    {"matmul", OP_MATMUL, "matmul(a, b, transpose_a=false, transpose_b=false)",
     {T("a"), T("b"), {"transpose_a", A_B, false, 0, ANY},
      {"transpose_b", A_B, false, 0, ANY}}},
    {"conv2d", OP_CONV2D, "conv2d(x, out, kernel, stride=1, pad=0, "
     "dilation=1, groups=1, bias=true)",
     {T("x"), {"out", A_I, true, 0, POS}, {"kernel", A_I, true, 0, POS},
      {"stride", A_I, false, 1, POS}, {"pad", A_I, false, 0, NNEG},
      {"dilation", A_I, false, 1, POS}, {"groups", A_I, false, 1, POS},
      {"bias", A_B, false, 1, ANY}}},
    {"maxpool2d", OP_MAXPOOL2D, "maxpool2d(x, kernel, stride=kernel, pad=0)",
     {T("x"), {"kernel", A_I, true, 0, POS}, {"stride", A_I, false, 0, POS},
      {"pad", A_I, false, 0, NNEG}}},
    {"avgpool2d", OP_AVGPOOL2D, "avgpool2d(x, kernel, stride=kernel, pad=0)",
     {T("x"), {"kernel", A_I, true, 0, POS}, {"stride", A_I, false, 0, POS},
      {"pad", A_I, false, 0, NNEG}}},
    {"global_avgpool", OP_GLOBAL_AVGPOOL, "global_avgpool(x)", {T("x")}},
    {"batchnorm", OP_BATCHNORM, "batchnorm(x, eps=1e-5)", {T("x"), EPS}},
    {"layernorm", OP_LAYERNORM, "layernorm(x, eps=1e-5)", {T("x"), EPS}},
    {"instancenorm", OP_INSTANCENORM, "instancenorm(x, eps=1e-5, affine=true)",
     {T("x"), EPS, {"affine", A_B, false, 1, ANY}}},
    {"groupnorm", OP_GROUPNORM, "groupnorm(x, groups, eps=1e-5)",
     {T("x"), {"groups", A_I, true, 0, POS}, EPS}},
    {"relu", OP_RELU, "relu(x)", {T("x")}},
    {"gelu", OP_GELU, "gelu(x)", {T("x")}},
    {"silu", OP_SILU, "silu(x)", {T("x")}},
    {"tanh", OP_TANH, "tanh(x)", {T("x")}},
    {"sigmoid", OP_SIGMOID, "sigmoid(x)", {T("x")}},
    {"dropout", OP_DROPOUT, "dropout(x, p=0.1)",
     {T("x"), {"p", A_P, false, 0.1, ANY}}},
    {"add", OP_ADD, "add(a, b)", {T("a"), T("b")}},
    {"mul", OP_MUL, "mul(a, b)", {T("a"), T("b")}},
    {"scale", OP_SCALE, "scale(x, c)", {T("x"), {"c", A_F, true, 0, 0, 0}}},
    {"softmax", OP_SOFTMAX, "softmax(x, causal=false)",
     {T("x"), {"causal", A_B, false, 0, ANY}}},
    {"attention", BI_ATTENTION, "attention(x, heads, causal=false, dropout=0)",
     {T("x"), {"heads", A_I, true, 0, POS}, {"causal", A_B, false, 0, ANY},
      {"dropout", A_P, false, 0, ANY}}},
    {"embedding", OP_EMBEDDING, "embedding(ids, vocab, dim)",
     {T("ids"), {"vocab", A_I, true, 0, POS}, {"dim", A_I, true, 0, POS}}},
    {"param", BI_PARAM, "param(DTYPE[DIM, ...])",
     {{"type", A_TYPE, true, 0, ANY}}},
    {"reshape", OP_RESHAPE, "reshape(x, d0, d1, ...)",
     {T("x"), {"dims", A_IS, true, 0, ANY}}},
    {"flatten", BI_FLATTEN, "flatten(x)", {T("x")}},
    {"transpose", OP_TRANSPOSE, "transpose(x, a, b)",
     {T("x"), {"a", A_I, true, 0, ANY}, {"b", A_I, true, 0, ANY}}},
    {"concat", OP_CONCAT, "concat(a, b, ..., axis=0)",
     {{"tensors", A_TS, true, 0, ANY}, {"axis", A_I, false, 0, ANY}}},
    {"split", OP_SPLIT, "split(x, n, axis=-1)",
     {T("x"), {"n", A_I, true, 0, POS}, {"axis", A_I, false, -1, ANY}}},
    {"cross_entropy", OP_CROSS_ENTROPY, "cross_entropy(logits, targets)",
     {T("logits"), T("targets")}},
    {"mse", OP_MSE, "mse(a, b)", {T("a"), T("b")}},
};
enum { NBUILTINS = sizeof builtins / sizeof builtins[0] };

static const Builtin *find(const char *name) {
  for (int i = 0; i < NBUILTINS; i++)
    if (strcmp(builtins[i].name, name) == 0) return &builtins[i];
  return NULL;
}

bool builtin_exists(const char *name) { return find(name) != NULL; }

const char *const *builtin_names(void) {
  static const char *names[NBUILTINS + 1];
  for (int i = 0; i < NBUILTINS; i++) names[i] = builtins[i].name;
  return names;
}

/* ---- binding a call's arguments to the signature ---- */

typedef struct {
  Ev v[MAX_SPEC];    /* per Spec row: the value (EV_ERR if absent) */
  bool given[MAX_SPEC];
  Loc where[MAX_SPEC];
  Ev *many;          /* A_TS / A_IS: the values */
  int nmany;
  int dtype;         /* `dtype = ...`, or -1 */
} Args;

static int nspecs(const Builtin *b) {
  int n = 0;
  while (n < MAX_SPEC && b->a[n].name) n++;
  return n;
}

static const char *type_word(ArgType t) {
  switch (t) {
  case A_T: case A_TS: return "a tensor";
  case A_I: case A_IS: return "an integer";
  case A_F: case A_P: return "a number";
  case A_B: return "true or false";
  case A_TYPE: return "a tensor type such as f32[4, 3]";
  }
  return "?";
}

/* Checks one value against its row; false after an error. */
static bool check_arg(Lower *L, const Builtin *b, const Spec *s, Ev v,
                      Loc at) {
  bool ok;
  switch (s->t) {
  case A_T: case A_TS: ok = v.k == EV_TENSOR; break;
  case A_I: case A_IS: ok = v.k == EV_INT; break;
  case A_F: case A_P: ok = v.k == EV_INT || v.k == EV_FLOAT; break;
  case A_B: ok = v.k == EV_BOOL; break;
  case A_TYPE: ok = v.k == EV_TYPE; break;
  default: ok = false;
  }
  if (!ok) {
    diag_error(at, "'%s' of %s takes %s, got %s", s->name, b->name,
               type_word(s->t), ev_describe(L, v));
    diag_hint("%s", b->sig);
    return false;
  }
  double x = v.k == EV_FLOAT ? v.f : (double)v.i;
  if (s->t == A_I && (v.i < s->lo || v.i > s->hi)) {
    diag_error(at, "'%s' of %s must be %s, got %lld", s->name, b->name,
               s->lo == 1 ? "at least 1" : "at least 0", (long long)v.i);
    return false;
  }
  if (s->t == A_P && !(x >= 0 && x < 1)) {
    diag_error(at, "'%s' of %s must be in [0, 1), got %g", s->name, b->name,
               x);
    return false;
  }
  if (s->t == A_F && s->lo == 1 && !(x > 0)) {
    diag_error(at, "'%s' of %s must be positive, got %g", s->name, b->name, x);
    return false;
  }
  if ((s->t == A_F || s->t == A_P) && !isfinite(x)) {
    diag_error(at, "'%s' of %s must be finite", s->name, b->name);
    return false;
  }
  return true;
}

static bool bind_args(Lower *L, const Builtin *b, const Ast *call,
                      const char *ctx, Args *A) {
  int ns = nspecs(b), next = 0;
  bool ok = true, seen_opt = false;
  A->dtype = -1;
  A->many = xalloc(sizeof(Ev) * (size_t)(call->nkid + 1));
  for (int i = 0; i < ns; i++) A->v[i] = (Ev){.k = EV_ERR};
  for (int i = 0; i < call->nkid; i++) {
    const Ast *a = call->kid[i];
    if (a->kind == AST_OPTION) {
      seen_opt = true;
      continue;
    }
    if (seen_opt) {
      diag_error(a->loc, "positional argument after 'key = value' options");
      diag_hint("%s", b->sig);
      return false;
    }
    Ev v = lower_expr(L, a, ctx, NULL, false);
    if (v.k == EV_ERR) return false;
    v.ast = a;
    while (next < ns && b->a[next].t != A_TS && b->a[next].t != A_IS &&
           A->given[next])
      next++;
    if (next >= ns) {
      diag_error(a->loc, "too many arguments to %s", b->name);
      diag_hint("%s", b->sig);
      return false;
    }
    const Spec *s = &b->a[next];
    if (!check_arg(L, b, s, v, a->loc)) return false;
    if (s->t == A_TS || s->t == A_IS) A->many[A->nmany++] = v;
    else next++;
    A->v[s - b->a] = v;
    A->given[s - b->a] = true;
    A->where[s - b->a] = a->loc;
  }
  for (int i = 0; i < call->nkid; i++) {
    const Ast *a = call->kid[i];
    if (a->kind != AST_OPTION) continue;
    if (strcmp(a->str, "dtype") == 0 && b->op != BI_PARAM) {
      Ev v = lower_expr(L, a->kid[0], ctx, NULL, true);
      DType dt;
      if (v.k == EV_ERR) return false;
      if (A->dtype >= 0) {
        diag_error(a->name_loc, "option 'dtype' given twice");
        ok = false;
      } else if (v.k != EV_WORD || !dtype_parse(v.w, &dt) ||
                 !dtype_is_float(dt)) {
        diag_error(a->kid[0]->loc, "'dtype' takes f32, f16 or bf16, got %s",
                   ev_describe(L, v));
        ok = false;
      } else {
        A->dtype = (int)dt;
      }
      continue;
    }
    int k = -1;
    for (int j = 0; j < ns; j++)
      if (strcmp(b->a[j].name, a->str) == 0 && b->a[j].t != A_T &&
          b->a[j].t != A_TS && b->a[j].t != A_IS)
        k = j;
    if (k < 0) {
      diag_error(a->name_loc, "%s has no option '%s'", b->name,
                 strlen(a->str) > 48 ? "..." : a->str);
      const char *c[MAX_SPEC + 1];
      int nc = 0;
      for (int j = 0; j < ns; j++)
        if (b->a[j].t != A_T && b->a[j].t != A_TS) c[nc++] = b->a[j].name;
      if (b->op != BI_PARAM) c[nc++] = "dtype";
      const char *near = frontend_suggest(a->str, c, nc);
      if (near) diag_hint("did you mean '%s'?", near);
      else diag_hint("%s", b->sig);
      ok = false;
      continue;
    }
    if (A->given[k]) {
      diag_error(a->name_loc, "'%s' of %s given twice", a->str, b->name);
      diag_note(A->where[k], "first given here");
      ok = false;
      continue;
    }
    Ev v = lower_expr(L, a->kid[0], ctx, NULL, false);
    v.ast = a->kid[0];
    if (v.k == EV_ERR || !check_arg(L, b, &b->a[k], v, a->kid[0]->loc)) {
      ok = false;
      continue;
    }
    A->v[k] = v;
    A->given[k] = true;
    A->where[k] = a->name_loc;
  }
  for (int j = 0; j < ns && ok; j++) {
    const Spec *s = &b->a[j];
    if (A->given[j]) continue;
    if (s->req) {
      diag_error(call->loc, "%s needs '%s' (%s)", b->name, s->name,
                 type_word(s->t));
      diag_hint("%s", b->sig);
      return false;
    }
    A->v[j] = s->t == A_I ? (Ev){.k = EV_INT, .i = (int64_t)s->def}
              : s->t == A_B ? (Ev){.k = EV_BOOL, .i = (int64_t)s->def}
                            : (Ev){.k = EV_FLOAT, .f = s->def};
  }
  return ok;
}

/* ---- building nodes ---- */

/* The state of one operator call being lowered. */
typedef struct {
  Lower *L;
  Graph *g;
  const Builtin *b;
  Loc loc;          /* the call */
  const char *base; /* local name of the call's main node */
  int dtype;        /* dtype override, or -1 */
} Call;

static Value *val(const Call *c, Ev e) { return &c->g->vals[e.v]; }
static double fnum(Ev e) { return e.k == EV_FLOAT ? e.f : (double)e.i; }

static const char *tdesc(const Call *c, int v) {
  char b[160];
  return xsprintf("%s%s", dtype_name(c->g->vals[v].dtype),
                  shape_str(&c->g->vals[v].shape, b));
}

static bool need_float(const Call *c, Ev e, const char *what) {
  if (dtype_is_float(val(c, e)->dtype)) return true;
  diag_error(e.ast ? e.ast->loc : c->loc, "%s of %s must be a float tensor, "
             "got %s", what, c->b->name, tdesc(c, e.v));
  return false;
}

static bool need_rank(const Call *c, Ev e, int lo, int hi, const char *what) {
  int r = val(c, e)->shape.rank;
  if (r >= lo && r <= hi) return true;
  if (lo == hi)
    diag_error(e.ast ? e.ast->loc : c->loc, "%s expects a %d-D %s, got %d-D "
               "%s", c->b->name, lo, what, r, tdesc(c, e.v));
  else
    diag_error(e.ast ? e.ast->loc : c->loc, "%s expects %s with at least %d "
               "dimension%s, got %s", c->b->name, what, lo, lo == 1 ? "" : "s",
               tdesc(c, e.v));
  return false;
}

/* An axis in [-rank, rank) made non-negative; -1 after an error. */
static int axis_of(const Call *c, int64_t a, int rank, Loc at) {
  if (a < -rank || a >= rank) {
    diag_error(at, "axis %lld is out of range for a %d-D tensor (use %d to "
               "%d)", (long long)a, rank, -rank, rank - 1);
    return -1;
  }
  (void)c;
  return (int)(a < 0 ? a + rank : a);
}

/* A node named `local` (under the scope's prefix) with operands in. */
static int node(const Call *c, Op op, const char *local, const int *in,
                int nin) {
  return lower_node(c->L, op, lower_node_name(c->L, local), in, nin, c->loc,
                    c->dtype);
}

static int out(const Call *c, int n, const char *name, DType dt,
               const Shape *s, bool extra) {
  return graph_add_output(c->g, n, lower_value_name(c->L, name), dt, s,
                          extra);
}

/* One real output named like its node. */
static int out1(const Call *c, int n, DType dt, const Shape *s) {
  return out(c, n, c->g->nodes[n].name, dt, s, false);
}

/* A parameter (or state) of node name `full`: "full.suffix". */
static int param(const Call *c, const char *full, const char *suffix,
                 ValueKind k, const Shape *s) {
  return lower_param(c->L, xsprintf("%s.%s", full, suffix), k, DT_F32, s,
                     c->loc);
}

static Shape shape1(int64_t a) { return (Shape){1, {a}}; }
static Shape shape2(int64_t a, int64_t b) { return (Shape){2, {a, b}}; }

static Ev tensor(int v) { return (Ev){.k = EV_TENSOR, .v = v}; }

static bool shape_checked(const Call *c, const Shape *s) {
  return lower_shape_ok(c->L, s, c->loc, xsprintf("the result of %s",
                                                  c->b->name));
}

/* Takes the node name the scope gives `local` before the node exists, so
 * that parameters can be named after it. */
static const char *reserve(const Call *c, const char *local) {
  return lower_node_name(c->L, local);
}

/* Adds a node whose full name was reserved. */
static int node_named(const Call *c, Op op, const char *full, const int *in,
                      int nin) {
  return lower_node(c->L, op, full, in, nin, c->loc, c->dtype);
}

/* linear: x [..., in] -> [..., out]; weight [out, in], bias [out]. */
static int linear(const Call *c, int x, int64_t o, bool bias, const char *full,
                  const char *outname) {
  const Value *xv = &c->g->vals[x];
  int64_t in_f = xv->shape.dim[xv->shape.rank - 1];
  Shape w = shape2(o, in_f), bb = shape1(o), y = xv->shape;
  y.dim[y.rank - 1] = o;
  if (!lower_shape_ok(c->L, &w, c->loc, "the weight") ||
      !shape_checked(c, &y))
    return -1;
  int in[3] = {x, param(c, full, "weight", VK_PARAM, &w), 0};
  if (bias) in[2] = param(c, full, "bias", VK_PARAM, &bb);
  int n = node_named(c, OP_LINEAR, full, in, bias ? 3 : 2);
  c->g->nodes[n].a.linear.out = o;
  c->g->nodes[n].a.linear.bias = bias;
  return out(c, n, outname ? outname : full, DT_F32, &y, false);
}

/* Strides of a view of `x` reshaped to `s`: contiguous input gives
 * contiguous strides; otherwise each run of merged or split dims must be
 * contiguous within itself (PyTorch's rule). False if impossible. */
static bool view_strides(const Value *x, const Shape *s, int64_t *st) {
  const Shape *o = &x->shape;
  if (value_is_contiguous(x)) {
    int64_t k = 1;
    for (int i = s->rank - 1; i >= 0; i--) st[i] = k, k *= s->dim[i];
    return true;
  }
  int vd = s->rank - 1;
  int64_t base = o->rank ? x->stride[o->rank - 1] : 1, tn = 1, vn = 1;
  for (int td = o->rank - 1; td >= 0; td--) {
    tn *= o->dim[td];
    if (td == 0 ||
        (o->dim[td - 1] != 1 && x->stride[td - 1] != tn * base)) {
      while (vd >= 0 && (vn < tn || s->dim[vd] == 1)) {
        st[vd] = vn * base;
        vn *= s->dim[vd];
        vd--;
      }
      if (vn != tn) return false;
      if (td > 0) base = x->stride[td - 1], tn = 1, vn = 1;
    }
  }
  return vd == -1;
}

/* A reshape view of x to s, in node `local`. */
static int reshape_view(const Call *c, int x, const Shape *s,
                        const char *local) {
  int64_t st[MAX_RANK];
  if (!view_strides(&c->g->vals[x], s, st)) {
    char b1[160];
    diag_error(c->loc, "cannot reshape the strided view %s to %s without a "
               "copy", tdesc(c, x), shape_str(s, b1));
    diag_hint("transpose it first, which makes a contiguous copy");
    return -1;
  }
  int n = node(c, OP_RESHAPE, local, &x, 1);
  int v = out1(c, n, c->g->vals[x].dtype, s);
  Value *vv = &c->g->vals[v];
  vv->view_of = x;
  vv->view_offset = c->g->vals[x].view_of >= 0 ? c->g->vals[x].view_offset : 0;
  memcpy(vv->stride, st, sizeof st);
  return v;
}

/* split x into n views along axis, outputs named names[i]. */
static int split_views(const Call *c, int x, int n, int axis,
                       const char *local, const char *const *names,
                       int *outs) {
  const Value *xv = &c->g->vals[x];
  Shape s = xv->shape;
  if (s.dim[axis] % n) {
    diag_error(c->loc, "split: dimension %d of %s is not divisible by %d",
               axis, tdesc(c, x), n);
    return -1;
  }
  s.dim[axis] /= n;
  int nd = node(c, OP_SPLIT, local, &x, 1);
  c->g->nodes[nd].a.split.n = n;
  c->g->nodes[nd].a.split.axis = axis;
  for (int i = 0; i < n; i++) {
    outs[i] = out(c, nd, names[i], xv->dtype, &s, false);
    xv = &c->g->vals[x];
    Value *o = &c->g->vals[outs[i]];
    o->view_of = x;
    memcpy(o->stride, xv->stride, sizeof o->stride);
    o->view_offset = (xv->view_of >= 0 ? xv->view_offset : 0) +
                     (int64_t)i * s.dim[axis] * xv->stride[axis];
  }
  return nd;
}

static int transpose(const Call *c, int x, int a, int b, const char *local) {
  Shape s = c->g->vals[x].shape;
  int64_t t = s.dim[a];
  s.dim[a] = s.dim[b], s.dim[b] = t;
  int n = node(c, OP_TRANSPOSE, local, &x, 1);
  c->g->nodes[n].a.transpose.a = a;
  c->g->nodes[n].a.transpose.b = b;
  return out1(c, n, c->g->vals[x].dtype, &s);
}

/* matmul shapes: [..., m, k] x [..., k, n] -> [..., m, n]. */
static bool matmul_shape(const Call *c, int a, int b, bool ta, bool tb,
                         Shape *y) {
  const Shape *sa = &c->g->vals[a].shape, *sb = &c->g->vals[b].shape;
  int64_t m = sa->dim[sa->rank - (ta ? 1 : 2)];
  int64_t ka = sa->dim[sa->rank - (ta ? 2 : 1)];
  int64_t kb = sb->dim[sb->rank - (tb ? 1 : 2)];
  int64_t n = sb->dim[sb->rank - (tb ? 2 : 1)];
  if (ka != kb) {
    diag_error(c->loc, "matmul: inner dimensions differ: %s%s has %lld, "
               "%s%s has %lld", tdesc(c, a), ta ? " (transposed)" : "",
               (long long)ka, tdesc(c, b), tb ? " (transposed)" : "",
               (long long)kb);
    return false;
  }
  Shape ba = {sa->rank - 2, {0}}, bb = {sb->rank - 2, {0}};
  memcpy(ba.dim, sa->dim, sizeof(int64_t) * (size_t)ba.rank);
  memcpy(bb.dim, sb->dim, sizeof(int64_t) * (size_t)bb.rank);
  if (!shape_broadcast(&ba, &bb, y) || y->rank + 2 > MAX_RANK) {
    diag_error(c->loc, "matmul: batch dimensions of %s and %s do not "
               "broadcast", tdesc(c, a), tdesc(c, b));
    return false;
  }
  y->dim[y->rank++] = m;
  y->dim[y->rank++] = n;
  return shape_checked(c, y);
}

static int matmul(const Call *c, int a, int b, bool ta, bool tb,
                  const char *local) {
  Shape y;
  if (!matmul_shape(c, a, b, ta, tb, &y)) return -1;
  int in[2] = {a, b};
  int n = node(c, OP_MATMUL, local, in, 2);
  c->g->nodes[n].a.matmul.ta = ta;
  c->g->nodes[n].a.matmul.tb = tb;
  return out1(c, n, DT_F32, &y);
}

static int unary(const Call *c, Op op, int x, const char *local) {
  int n = node(c, op, local, &x, 1);
  return out1(c, n, DT_F32, &c->g->vals[x].shape);
}

static int dropout(const Call *c, int x, double p, const char *local) {
  int n = node(c, OP_DROPOUT, local, &x, 1);
  c->g->nodes[n].a.dropout.p = p;
  Shape s = c->g->vals[x].shape; /* a copy: out1 may move g->vals */
  int y = out1(c, n, DT_F32, &s);
  out(c, n, xsprintf("%s.mask", c->g->nodes[n].name), DT_U8, &s, true);
  return y;
}

static int scale(const Call *c, int x, double k, const char *local) {
  int n = node(c, OP_SCALE, local, &x, 1);
  c->g->nodes[n].a.scale.c = k;
  return out1(c, n, DT_F32, &c->g->vals[x].shape);
}

static int softmax(const Call *c, int x, bool causal, const char *local) {
  int n = node(c, OP_SOFTMAX, local, &x, 1);
  c->g->nodes[n].a.softmax.causal = causal;
  return out1(c, n, DT_F32, &c->g->vals[x].shape);
}

static const char *sub(const Call *c, const char *part) {
  return xsprintf("%s:%s", c->base, part);
}

/* attention, lowered exactly as language.md lists; returns the output. */
static int attention(const Call *c, int x, int64_t h, bool causal,
                     double p) {
  const Shape xs = c->g->vals[x].shape;
  int64_t B = xs.dim[0], S = xs.dim[1], D = xs.dim[2];
  if (D % h) {
    diag_error(c->loc, "attention: the model width %lld is not divisible by "
               "heads = %lld", (long long)D, (long long)h);
    return -1;
  }
  int64_t Dh = D / h, D3;
  if (!mul_ok(D, 3, &D3)) return -1;
  int qkv = linear(c, x, D3, true, reserve(c, sub(c, "qkv")), NULL);
  if (qkv < 0) return -1;
  static const char *const qn[] = {"q", "k", "v"};
  const char *names[3];
  for (int i = 0; i < 3; i++) names[i] = reserve(c, sub(c, qn[i]));
  int parts[3], t[3];
  if (split_views(c, qkv, 3, 2, sub(c, "split"), names, parts) < 0)
    return -1;
  Shape hs = {4, {B, S, h, Dh}};
  for (int i = 0; i < 3; i++) {
    int r = reshape_view(c, parts[i], &hs, sub(c, xsprintf("%s_heads", qn[i])));
    if (r < 0) return -1;
    t[i] = transpose(c, r, 1, 2, sub(c, xsprintf("%s_t", qn[i])));
  }
  int sc = matmul(c, t[0], t[1], false, true, sub(c, "scores"));
  if (sc < 0) return -1;
  int y = scale(c, sc, 1.0 / sqrt((double)Dh), sub(c, "scale"));
  y = softmax(c, y, causal, sub(c, "softmax"));
  if (p > 0) y = dropout(c, y, p, sub(c, "dropout"));
  y = matmul(c, y, t[2], false, false, sub(c, "context"));
  if (y < 0) return -1;
  y = transpose(c, y, 1, 2, sub(c, "context_t"));
  y = reshape_view(c, y, &xs, sub(c, "merge"));
  if (y < 0) return -1;
  const char *proj = reserve(c, sub(c, "proj"));
  return linear(c, y, D, true, proj, reserve(c, c->base));
}

/* Norms: x, weight/bias (per channel or last dim), stats as extras. */
static int norm(const Call *c, Op op, int x, double eps, int64_t groups,
                bool affine) {
  const Shape xs = c->g->vals[x].shape;
  const char *full = reserve(c, c->base);
  int64_t C = op == OP_LAYERNORM ? xs.dim[xs.rank - 1] : xs.dim[1];
  int64_t N = xs.dim[0], rows = 0;
  Shape cs = shape1(C), stat;
  int in[5] = {x}, nin = 1;
  if (affine) {
    in[nin++] = param(c, full, "weight", VK_PARAM, &cs);
    in[nin++] = param(c, full, "bias", VK_PARAM, &cs);
  }
  if (op == OP_BATCHNORM) {
    in[nin++] = param(c, full, "running_mean", VK_STATE, &cs);
    in[nin++] = param(c, full, "running_var", VK_STATE, &cs);
    stat = cs;
  } else if (op == OP_LAYERNORM) {
    shape_numel(&xs, &rows);
    stat = shape1(rows / C);
  } else {
    stat = shape1(N * groups);
  }
  int n = node_named(c, op, full, in, nin);
  Node *nd = &c->g->nodes[n];
  nd->a.norm.eps = eps;
  nd->a.norm.groups = op == OP_INSTANCENORM ? C : groups;
  nd->a.norm.affine = affine;
  int y = out1(c, n, DT_F32, &xs);
  out(c, n, xsprintf("%s.mean", full), DT_F32, &stat, true);
  out(c, n, xsprintf("%s.%s", full, op == OP_BATCHNORM ? "invstd" : "rstd"),
      DT_F32, &stat, true);
  return y;
}

/* H' = (H + 2p - d(k - 1) - 1) / s + 1, or -1 if the window does not fit. */
static int64_t out_extent(int64_t h, int64_t k, int64_t s, int64_t p,
                          int64_t d) {
  int64_t span, num;
  if (!mul_ok(d, k - 1, &span) || !add_ok(h, 2 * p, &num) ||
      num - span - 1 < 0)
    return -1;
  return (num - span - 1) / s + 1;
}

Ev builtin_binary(Lower *L, Op op, Ev a, Ev b, const char *name, Loc loc) {
  Call c = {L, lower_graph(L), find(op == OP_ADD ? "add" : "mul"), loc, name,
            -1};
  if (!need_float(&c, a, "the left operand") ||
      !need_float(&c, b, "the right operand"))
    return (Ev){.k = EV_ERR};
  Shape y;
  if (!shape_broadcast(&val(&c, a)->shape, &val(&c, b)->shape, &y)) {
    diag_error(loc, "%s: shapes %s and %s do not broadcast", c.b->name,
               tdesc(&c, a.v), tdesc(&c, b.v));
    return (Ev){.k = EV_ERR};
  }
  int in[2] = {a.v, b.v};
  int n = node(&c, op, name, in, 2);
  return tensor(out1(&c, n, DT_F32, &y));
}

Ev builtin_scale(Lower *L, Ev x, double k, const char *name, Loc loc) {
  Call c = {L, lower_graph(L), find("scale"), loc, name, -1};
  if (!need_float(&c, x, "the tensor")) return (Ev){.k = EV_ERR};
  return tensor(scale(&c, x.v, k, name));
}

/* The operator-specific part of lower_builtin; returns the output value,
 * or -1 after an error. */
static int lower_op(const Call *c, Args *A, const char *const *outnames,
                    int nout, Ev *tuple) {
  Graph *g = c->g;
  Ev x = A->v[0];
  int op = c->b->op;
  bool fl = op != OP_EMBEDDING && op != OP_RESHAPE && op != BI_FLATTEN &&
            op != OP_TRANSPOSE && op != OP_CONCAT && op != OP_SPLIT &&
            op != OP_CROSS_ENTROPY && op != BI_PARAM;
  if (fl && !need_float(c, x, "the input")) return -1;
  switch (op) {
  case OP_LINEAR:
    if (!need_rank(c, x, 1, MAX_RANK, "a tensor")) return -1;
    return linear(c, x.v, A->v[1].i, A->v[2].i, reserve(c, c->base), NULL);
  case OP_MATMUL: {
    Ev b = A->v[1];
    if (!need_float(c, b, "the second input") ||
        !need_rank(c, x, 2, MAX_RANK, "matrices") ||
        !need_rank(c, b, 2, MAX_RANK, "matrices"))
      return -1;
    return matmul(c, x.v, b.v, A->v[2].i, A->v[3].i, c->base);
  }
  case OP_CONV2D: {
    if (!need_rank(c, x, 4, 4, "NCHW input")) return -1;
    const Shape xs = val(c, x)->shape;
    int64_t o = A->v[1].i, k = A->v[2].i, s = A->v[3].i, p = A->v[4].i,
            d = A->v[5].i, gr = A->v[6].i;
    bool bias = A->v[7].i;
    if (xs.dim[1] % gr || o % gr) {
      diag_error(c->loc, "conv2d: groups = %lld must divide the input "
                 "channels (%lld) and out (%lld)", (long long)gr,
                 (long long)xs.dim[1], (long long)o);
      return -1;
    }
    int64_t h = out_extent(xs.dim[2], k, s, p, d);
    int64_t w = out_extent(xs.dim[3], k, s, p, d);
    if (h < 1 || w < 1) {
      diag_error(c->loc, "conv2d: a %lldx%lld kernel (dilation %lld, pad "
                 "%lld) does not fit the %lldx%lld input %s", (long long)k,
                 (long long)k, (long long)d, (long long)p,
                 (long long)xs.dim[2], (long long)xs.dim[3], tdesc(c, x.v));
      return -1;
    }
    Shape ws = {4, {o, xs.dim[1] / gr, k, k}}, bs = shape1(o);
    Shape y = {4, {xs.dim[0], o, h, w}};
    if (!lower_shape_ok(c->L, &ws, c->loc, "the weight") ||
        !shape_checked(c, &y))
      return -1;
    const char *full = reserve(c, c->base);
    int in[3] = {x.v, param(c, full, "weight", VK_PARAM, &ws), 0};
    if (bias) in[2] = param(c, full, "bias", VK_PARAM, &bs);
    int n = node_named(c, OP_CONV2D, full, in, bias ? 3 : 2);
    g->nodes[n].a.conv.out = o, g->nodes[n].a.conv.kernel = k;
    g->nodes[n].a.conv.stride = s, g->nodes[n].a.conv.pad = p;
    g->nodes[n].a.conv.dilation = d, g->nodes[n].a.conv.groups = gr;
    g->nodes[n].a.conv.bias = bias;
    return out1(c, n, DT_F32, &y);
  }
  case OP_MAXPOOL2D:
  case OP_AVGPOOL2D: {
    if (!need_rank(c, x, 4, 4, "NCHW input")) return -1;
    const Shape xs = val(c, x)->shape;
    int64_t k = A->v[1].i, s = A->given[2] ? A->v[2].i : k, p = A->v[3].i;
    if (2 * p > k) {
      diag_error(A->where[3], "%s: pad = %lld must be at most half the "
                 "kernel (%lld)", c->b->name, (long long)p, (long long)k);
      return -1;
    }
    int64_t h = out_extent(xs.dim[2], k, s, p, 1);
    int64_t w = out_extent(xs.dim[3], k, s, p, 1);
    if (h < 1 || w < 1) {
      diag_error(c->loc, "%s: a %lldx%lld window does not fit the input %s",
                 c->b->name, (long long)k, (long long)k, tdesc(c, x.v));
      return -1;
    }
    Shape y = {4, {xs.dim[0], xs.dim[1], h, w}};
    int n = node(c, (Op)op, c->base, &x.v, 1);
    g->nodes[n].a.pool.kernel = k, g->nodes[n].a.pool.stride = s;
    g->nodes[n].a.pool.pad = p;
    return out1(c, n, DT_F32, &y);
  }
  case OP_GLOBAL_AVGPOOL: {
    if (!need_rank(c, x, 4, 4, "NCHW input")) return -1;
    const Shape xs = val(c, x)->shape;
    Shape y = shape2(xs.dim[0], xs.dim[1]);
    int n = node(c, OP_GLOBAL_AVGPOOL, c->base, &x.v, 1);
    return out1(c, n, DT_F32, &y);
  }
  case OP_BATCHNORM:
    if (!need_rank(c, x, 2, MAX_RANK, "a tensor")) return -1;
    return norm(c, OP_BATCHNORM, x.v, fnum(A->v[1]), 0, true);
  case OP_LAYERNORM:
    if (!need_rank(c, x, 1, MAX_RANK, "a tensor")) return -1;
    return norm(c, OP_LAYERNORM, x.v, fnum(A->v[1]), 0, true);
  case OP_INSTANCENORM:
    if (!need_rank(c, x, 3, MAX_RANK, "a tensor")) return -1;
    return norm(c, OP_INSTANCENORM, x.v, fnum(A->v[1]),
                val(c, x)->shape.dim[1], A->v[2].i);
  case OP_GROUPNORM: {
    if (!need_rank(c, x, 2, MAX_RANK, "a tensor")) return -1;
    int64_t gr = A->v[1].i, C = val(c, x)->shape.dim[1];
    if (C % gr) {
      diag_error(A->where[1], "groupnorm: groups = %lld does not divide the "
                 "%lld channels of %s", (long long)gr, (long long)C,
                 tdesc(c, x.v));
      return -1;
    }
    return norm(c, OP_GROUPNORM, x.v, fnum(A->v[2]), gr, true);
  }
  case OP_RELU: case OP_GELU: case OP_SILU: case OP_TANH: case OP_SIGMOID:
    return unary(c, (Op)op, x.v, c->base);
  case OP_DROPOUT:
    return dropout(c, x.v, fnum(A->v[1]), c->base);
  case OP_ADD:
  case OP_MUL: {
    Ev r = builtin_binary(c->L, (Op)op, x, A->v[1], c->base, c->loc);
    if (r.k != EV_TENSOR) return -1;
    g->nodes[g->vals[r.v].node].dtype_override = c->dtype;
    return r.v;
  }
  case OP_SCALE:
    return scale(c, x.v, fnum(A->v[1]), c->base);
  case OP_SOFTMAX:
    if (A->v[1].i && !need_rank(c, x, 2, MAX_RANK, "scores")) return -1;
    return softmax(c, x.v, A->v[1].i, c->base);
  case BI_ATTENTION:
    if (!need_rank(c, x, 3, 3, "[batch, seq, dim] input")) return -1;
    return attention(c, x.v, A->v[1].i, A->v[2].i, fnum(A->v[3]));
  case OP_EMBEDDING: {
    if (dtype_is_float(val(c, x)->dtype)) {
      diag_error(x.ast->loc, "embedding takes integer ids, got %s",
                 tdesc(c, x.v));
      return -1;
    }
    Shape y = val(c, x)->shape, ws = shape2(A->v[1].i, A->v[2].i);
    if (y.rank >= MAX_RANK) {
      diag_error(c->loc, "embedding: the result would have more than %d "
                 "dimensions", MAX_RANK);
      return -1;
    }
    y.dim[y.rank++] = A->v[2].i;
    if (!lower_shape_ok(c->L, &ws, c->loc, "the weight") ||
        !shape_checked(c, &y))
      return -1;
    const char *full = reserve(c, c->base);
    int in[2] = {x.v, param(c, full, "weight", VK_PARAM, &ws)};
    int n = node_named(c, OP_EMBEDDING, full, in, 2);
    g->nodes[n].a.embedding.vocab = A->v[1].i;
    g->nodes[n].a.embedding.dim = A->v[2].i;
    return out1(c, n, DT_F32, &y);
  }
  case BI_PARAM: {
    const Ast *ty = A->v[0].ast;
    DType dt;
    if (!dtype_parse(ty->str, &dt) || !dtype_is_float(dt)) {
      diag_error(ty->name_loc, "a parameter's dtype must be f32, f16 or "
                 "bf16, got '%s'", strlen(ty->str) > 48 ? "..." : ty->str);
      return -1;
    }
    if (ty->nkid > MAX_RANK) {
      diag_error(ty->loc, "tensors have at most %d dimensions", MAX_RANK);
      return -1;
    }
    Shape s = {0};
    for (int i = 0; i < ty->nkid; i++) {
      Ev d = lower_expr(c->L, ty->kid[i], c->base, NULL, false);
      if (d.k == EV_ERR) return -1;
      if (d.k != EV_INT) {
        diag_error(ty->kid[i]->loc, "a dimension must be an integer, got %s",
                   ev_describe(c->L, d));
        return -1;
      }
      s.dim[s.rank++] = d.i;
    }
    if (!lower_shape_ok(c->L, &s, ty->loc, "the parameter")) return -1;
    int v = lower_param(c->L, reserve(c, c->base), VK_PARAM, DT_F32, &s,
                        c->loc);
    g->vals[v].dtype = dt;
    return v;
  }
  case OP_RESHAPE:
  case BI_FLATTEN: {
    const Shape xs = val(c, x)->shape;
    int64_t total, known = 1;
    shape_numel(&xs, &total);
    Shape s = {0};
    int infer = -1;
    if (op == BI_FLATTEN) {
      if (!need_rank(c, x, 2, MAX_RANK, "a tensor")) return -1;
      s = shape2(xs.dim[0], total / xs.dim[0]);
    } else {
      if (A->nmany > MAX_RANK) {
        diag_error(c->loc, "reshape: at most %d dimensions", MAX_RANK);
        return -1;
      }
      for (int i = 0; i < A->nmany; i++) {
        int64_t d = A->many[i].i;
        if (d == -1 && infer < 0) {
          infer = i;
          d = 1;
        } else if (d < 1) {
          diag_error(A->many[i].ast->loc, "reshape: a dimension must be at "
                     "least 1%s, got %lld", infer < 0 ? " (or one -1)" : "",
                     (long long)d);
          return -1;
        } else if (!mul_ok(known, d, &known)) {
          known = INT64_MAX;
        }
        s.dim[s.rank++] = d;
      }
      if (infer >= 0 && known <= total && total % known == 0)
        s.dim[infer] = total / known, known = total;
      if (known != total) {
        char b[160];
        if (infer >= 0) s.dim[infer] = -1;
        diag_error(c->loc, "reshape: cannot view %s (%lld elements) as %s",
                   tdesc(c, x.v), (long long)total, shape_str(&s, b));
        return -1;
      }
    }
    return reshape_view(c, x.v, &s, c->base);
  }
  case OP_TRANSPOSE: {
    int r = val(c, x)->shape.rank;
    int a = axis_of(c, A->v[1].i, r, A->where[1]);
    int b = a < 0 ? -1 : axis_of(c, A->v[2].i, r, A->where[2]);
    if (b < 0) return -1;
    return transpose(c, x.v, a, b, c->base);
  }
  case OP_CONCAT: {
    if (A->nmany < 2) {
      diag_error(c->loc, "concat takes at least two tensors");
      return -1;
    }
    const Shape s0 = val(c, A->many[0])->shape;
    int axis = axis_of(c, A->v[1].i, s0.rank, A->given[1] ? A->where[1]
                                                            : c->loc);
    if (axis < 0) return -1;
    Shape y = s0;
    DType dt = val(c, A->many[0])->dtype;
    int *in = xalloc(sizeof(int) * (size_t)A->nmany);
    for (int i = 0; i < A->nmany; i++) {
      const Value *v = val(c, A->many[i]);
      bool same = v->shape.rank == s0.rank;
      for (int d = 0; same && d < s0.rank; d++)
        same = d == axis || v->shape.dim[d] == s0.dim[d];
      if (!same) {
        diag_error(A->many[i].ast->loc, "concat along axis %d: %s does not "
                   "match %s", axis, tdesc(c, A->many[i].v),
                   tdesc(c, A->many[0].v));
        return -1;
      }
      if (dtype_is_float(v->dtype) != dtype_is_float(dt)) {
        diag_error(A->many[i].ast->loc, "concat: cannot join %s and %s",
                   tdesc(c, A->many[i].v), tdesc(c, A->many[0].v));
        return -1;
      }
      if (v->dtype != dt) dt = DT_F32;
      if (i && !add_ok(y.dim[axis], v->shape.dim[axis], &y.dim[axis]))
        y.dim[axis] = INT64_MAX;
      in[i] = A->many[i].v;
    }
    if (!shape_checked(c, &y)) return -1;
    int n = node(c, OP_CONCAT, c->base, in, A->nmany);
    g->nodes[n].a.concat.axis = axis;
    return out1(c, n, dt, &y);
  }
  case OP_SPLIT: {
    int64_t k = A->v[1].i;
    int r = val(c, x)->shape.rank;
    if (!need_rank(c, x, 1, MAX_RANK, "a tensor")) return -1;
    int axis = axis_of(c, A->v[2].i, r, A->given[2] ? A->where[2] : c->loc);
    if (axis < 0) return -1;
    if (!outnames || nout != k) {
      diag_error(c->loc, "split into %lld gives %lld tensors; bind %s",
                 (long long)k, (long long)k, k == 1 ? "it to one name" :
                 "each to a name: 'a, b, ... = split(...)'");
      if (outnames) diag_hint("%d name%s on the left", nout,
                              nout == 1 ? "" : "s");
      return -1;
    }
    const char **full = xalloc(sizeof(char *) * (size_t)k);
    for (int i = 0; i < k; i++) full[i] = reserve(c, outnames[i]);
    int *outs = xalloc(sizeof(int) * (size_t)k);
    if (split_views(c, x.v, (int)k, axis, c->base, full, outs) < 0)
      return -1;
    tuple->k = EV_TUPLE;
    tuple->vs = outs;
    tuple->nv = (int)k;
    return outs[0];
  }
  case OP_CROSS_ENTROPY: {
    Ev t = A->v[1];
    if (!need_float(c, x, "the logits") ||
        !need_rank(c, x, 1, MAX_RANK, "logits"))
      return -1;
    const Shape ls = val(c, x)->shape, ts = val(c, t)->shape;
    if (dtype_is_float(val(c, t)->dtype)) {
      diag_error(t.ast->loc, "cross_entropy takes integer class ids as "
                 "targets, got %s", tdesc(c, t.v));
      return -1;
    }
    bool ok = ts.rank == ls.rank - 1;
    for (int i = 0; ok && i < ts.rank; i++) ok = ts.dim[i] == ls.dim[i];
    if (!ok) {
      char b[160];
      Shape want = ls;
      want.rank--;
      diag_error(c->loc, "cross_entropy: logits %s need targets of shape %s, "
                 "got %s", tdesc(c, x.v), shape_str(&want, b), tdesc(c, t.v));
      return -1;
    }
    int in[2] = {x.v, t.v};
    int n = node(c, OP_CROSS_ENTROPY, c->base, in, 2);
    Shape sc = {0};
    int y = out1(c, n, DT_F32, &sc);
    out(c, n, xsprintf("%s.logprobs", g->nodes[n].name), DT_F32, &ls, true);
    return y;
  }
  case OP_MSE: {
    Ev b = A->v[1];
    if (!need_float(c, b, "the second input")) return -1;
    if (!shape_eq(&val(c, x)->shape, &val(c, b)->shape)) {
      diag_error(c->loc, "mse: shapes differ: %s and %s", tdesc(c, x.v),
                 tdesc(c, b.v));
      return -1;
    }
    int in[2] = {x.v, b.v};
    int n = node(c, OP_MSE, c->base, in, 2);
    Shape sc = {0};
    return out1(c, n, DT_F32, &sc);
  }
  }
  ICE("lower_op: operator %s", c->b->name);
}

Ev lower_builtin(Lower *L, const Ast *call, const char *ctx, const char *want,
                 const char *const *outnames, int nout) {
  const Builtin *b = find(call->str);
  Args A = {0};
  if (!bind_args(L, b, call, ctx, &A)) return (Ev){.k = EV_ERR};
  const char *base = want ? want
                     : outnames ? xsprintf("%s:split", outnames[0])
                                : xsprintf("%s:%s", ctx, b->name);
  if (outnames && b->op != OP_SPLIT) {
    diag_error(call->loc, "%s gives one tensor; bind it to one name",
               b->name);
    return (Ev){.k = EV_ERR};
  }
  if (A.dtype >= 0 && (b->op == OP_EMBEDDING || b->op == OP_RESHAPE ||
                       b->op == BI_FLATTEN || b->op == OP_SPLIT)) {
    diag_error(call->loc, "%s keeps its input's dtype; it takes no "
               "'dtype = ...'", b->name);
    return (Ev){.k = EV_ERR};
  }
  Call c = {L, lower_graph(L), b, call->loc, base, A.dtype};
  Ev r = {.k = EV_TENSOR};
  int v = lower_op(&c, &A, outnames, nout, &r);
  if (v < 0) return (Ev){.k = EV_ERR};
  if (r.k == EV_TENSOR) r.v = v;
  r.ast = call;
  return r;
}
