/* frontend/builtins.c: calls of the operators of language.md, checked and
 * lowered.
 *
 * Each operator has a signature (ArgSpec rows in its OpDef, ops/: tensors
 * first, then integers, numbers and flags, each with its default and
 * range), so binding a call's arguments is one generic routine here that
 * reports unknown, duplicate, missing, out-of-range and wrongly typed
 * arguments with the signature as a hint. Then the op's lower hook (in its
 * family's file under ops/) checks dtypes and shapes and creates nodes,
 * parameters and extra outputs through the call_* helpers below.
 * `attention`, `flatten` and `param` are sugar, lowered here: attention
 * becomes the eleven primitives language.md lists, flatten a reshape, param
 * a parameter value with no node.
 */
#include "mdlc.h"

#include <math.h>
#include <string.h>

/* The sugar: calls that are not one op. */
enum { BI_ATTENTION = OP_COUNT, BI_FLATTEN, BI_PARAM };

/* A callable name: an op of ir/ops.def, or sugar. */
typedef struct {
  const char *name;     /* the .mdl spelling */
  int op;               /* an Op, or BI_* */
  const char *sig;      /* for hints */
  const ArgSpec *a;     /* the signature's rows */
} Builtin;

static const ArgSpec sugar_args[3][MAX_ARGS] = {
    {ARG_TENSOR("x"), {"heads", A_I, true, 0, ARG_POS},
     {"causal", A_B, false, 0, ARG_ANY}, {"dropout", A_P, false, 0, ARG_ANY},
     {"kv_heads", A_I, false, 0, ARG_POS}, {"rope", A_B, false, 0, ARG_ANY},
     {"rope_base", A_F, false, 10000, 1, 0}, {"bias", A_B, false, 1, ARG_ANY},
     {"fused", A_B, false, 1, ARG_ANY}},
    {ARG_TENSOR("x")},
    {{"type", A_TYPE, true, 0, ARG_ANY}},
};
static const char *const sugar_sig[3] = {
    "attention(x, heads, causal=false, dropout=0, kv_heads=heads, "
    "rope=false, rope_base=10000, bias=true, fused=true)",
    "flatten(x)",
    "param(DTYPE[DIM, ...])"};
static const char *const sugar_name[3] = {"attention", "flatten", "param"};

/* Every op a program may call (ir/ops.def order), then the sugar. */
enum { NBUILTINS = OP_COUNT + 3 };
static Builtin builtins[NBUILTINS];
static int nbuiltins;

static void init_builtins(void) {
  if (nbuiltins) return;
  for (int op = 0; op < OP_COUNT; op++) {
    if (op_info[op].flags & OF_INTERNAL) continue;
    builtins[nbuiltins++] = (Builtin){op_info[op].name, op, op_def[op]->sig,
                                      op_def[op]->args};
  }
  for (int i = 0; i < 3; i++)
    builtins[nbuiltins++] = (Builtin){sugar_name[i], BI_ATTENTION + i,
                                      sugar_sig[i], sugar_args[i]};
}

static const Builtin *find(const char *name) {
  init_builtins();
  for (int i = 0; i < nbuiltins; i++)
    if (strcmp(builtins[i].name, name) == 0) return &builtins[i];
  return NULL;
}

bool builtin_exists(const char *name) { return find(name) != NULL; }

const char *const *builtin_names(void) {
  static const char *names[NBUILTINS + 1];
  init_builtins();
  for (int i = 0; i < nbuiltins; i++) names[i] = builtins[i].name;
  return names;
}

/* ---- binding a call's arguments to the signature ---- */


static int nspecs(const Builtin *b) {
  int n = 0;
  while (n < MAX_ARGS && b->a[n].name) n++;
  return n;
}

static const char *type_word(ArgType t) {
  switch (t) {
  case A_T: case A_TS: case A_TOPT: return "a tensor";
  case A_I: case A_IS: return "an integer";
  case A_F: case A_P: return "a number";
  case A_B: return "true or false";
  case A_TYPE: return "a tensor type such as f32[4, 3]";
  }
  return "?";
}

/* Checks one value against its row; false after an error. */
static bool check_arg(Lower *L, const Builtin *b, const ArgSpec *s, Ev v,
                      Loc at) {
  bool ok = false;
  switch (s->t) {
  case A_T: case A_TS: case A_TOPT: ok = v.k == EV_TENSOR; break;
  case A_I: case A_IS: ok = v.k == EV_INT; break;
  case A_F: case A_P: ok = v.k == EV_INT || v.k == EV_FLOAT; break;
  case A_B: ok = v.k == EV_BOOL; break;
  case A_TYPE: ok = v.k == EV_TYPE; break;
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
    if (next >= ns || b->a[next].t == A_TOPT) {
      diag_error(a->loc, "too many arguments to %s", b->name);
      diag_hint("%s", b->sig);
      return false;
    }
    const ArgSpec *s = &b->a[next];
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
      const char *c[MAX_ARGS + 1];
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
    const ArgSpec *s = &b->a[j];
    if (A->given[j]) continue;
    if (s->req) {
      diag_error(call->loc, "%s needs '%s' (%s)", b->name, s->name,
                 type_word(s->t));
      diag_hint("%s", b->sig);
      return false;
    }
    A->v[j] = s->t == A_TOPT ? (Ev){.k = EV_ERR}
              : s->t == A_I ? (Ev){.k = EV_INT, .i = (int64_t)s->def}
              : s->t == A_B ? (Ev){.k = EV_BOOL, .i = (int64_t)s->def}
                            : (Ev){.k = EV_FLOAT, .f = s->def};
  }
  return ok;
}

/* ---- what lower hooks use (mdlc.h, "frontend/builtins.c") ---- */

Value *call_val(const Call *c, Ev e) { return &c->g->vals[e.v]; }
double ev_num(Ev e) { return e.k == EV_FLOAT ? e.f : (double)e.i; }
Ev ev_tensor(int v) { return (Ev){.k = EV_TENSOR, .v = v}; }

const char *call_desc(const Call *c, int v) {
  char b[160];
  return xsprintf("%s%s", dtype_name(c->g->vals[v].dtype),
                  shape_str(&c->g->vals[v].shape, b));
}

bool call_need_float(const Call *c, Ev e, const char *what) {
  if (dtype_is_float(call_val(c, e)->dtype)) return true;
  diag_error(e.ast ? e.ast->loc : c->loc, "%s of %s must be a float tensor, "
             "got %s", what, c->op, call_desc(c, e.v));
  return false;
}

bool call_need_rank(const Call *c, Ev e, int lo, int hi, const char *what) {
  int r = call_val(c, e)->shape.rank;
  if (r >= lo && r <= hi) return true;
  if (lo == hi)
    diag_error(e.ast ? e.ast->loc : c->loc, "%s expects a %d-D %s, got %d-D "
               "%s", c->op, lo, what, r, call_desc(c, e.v));
  else
    diag_error(e.ast ? e.ast->loc : c->loc, "%s expects %s with at least %d "
               "dimension%s, got %s", c->op, what, lo, lo == 1 ? "" : "s",
               call_desc(c, e.v));
  return false;
}

int call_axis(const Call *c, int64_t a, int rank, Loc at) {
  if (a < -rank || a >= rank) {
    diag_error(at, "axis %lld is out of range for a %d-D tensor (use %d to "
               "%d)", (long long)a, rank, -rank, rank - 1);
    return -1;
  }
  (void)c;
  return (int)(a < 0 ? a + rank : a);
}

int call_node(const Call *c, Op op, const char *local, const int *in,
              int nin) {
  return lower_node(c->L, op, lower_node_name(c->L, local), in, nin, c->loc,
                    c->dtype);
}

int call_node_named(const Call *c, Op op, const char *full, const int *in,
                    int nin) {
  return lower_node(c->L, op, full, in, nin, c->loc, c->dtype);
}

int call_out(const Call *c, int n, const char *name, DType dt,
             const Shape *s, bool extra) {
  return graph_add_output(c->g, n, lower_value_name(c->L, name), dt, s,
                          extra);
}

int call_out1(const Call *c, int n, DType dt, const Shape *s) {
  return call_out(c, n, c->g->nodes[n].name, dt, s, false);
}

int call_param(const Call *c, const char *full, const char *suffix,
               ValueKind k, const Shape *s) {
  return lower_param(c->L, xsprintf("%s.%s", full, suffix), k, DT_F32, s,
                     c->loc);
}

int call_weight(const Call *c, int k, const Shape *want) {
  if (!c->A || !c->A->given[k]) return -2;
  Ev w = c->A->v[k];
  const Value *v = call_val(c, w);
  Loc at = w.ast ? w.ast->loc : c->loc;
  if (v->kind != VK_PARAM) {
    diag_error(at, "'weight = ...' of %s takes a parameter (bound by NAME = "
               "param(...)), got %s", c->op, call_desc(c, w.v));
    return -1;
  }
  if (!shape_eq(&v->shape, want)) {
    char b[160];
    diag_error(at, "%s needs a weight of shape %s, but '%s' is %s", c->op,
               shape_str(want, b), v->name, call_desc(c, w.v));
    diag_note(v->loc, "'%s' is made here", v->name);
    return -1;
  }
  return w.v;
}

bool call_shape_ok(const Call *c, const Shape *s) {
  return lower_shape_ok(c->L, s, c->loc, xsprintf("the result of %s", c->op));
}

const char *call_reserve(const Call *c, const char *local) {
  return lower_node_name(c->L, local);
}

const char *call_sub(const Call *c, const char *part) {
  return xsprintf("%s:%s", c->base, part);
}

/* ---- the sugar ---- */

/* attention's options (language.md, "Operators (version 2)"). */
typedef struct {
  int64_t heads, kv_heads;
  bool causal, rope, bias, fused;
  double dropout, rope_base;
} AttnOpts;

/* attention, lowered exactly as language.md lists; returns the output.
 * fused (the default): qkv linear -> split by sizes -> reshape -> transpose
 * -> rope (if asked) -> sdpa -> transpose -> reshape -> proj linear.
 * fused = false: the scores materialized (matmul, scale, softmax, dropout,
 * matmul), which needs kv_heads == heads. */
static int attention(const Call *c, int x, const AttnOpts *o) {
  const Shape xs = c->g->vals[x].shape;
  int64_t B = xs.dim[0], S = xs.dim[1], D = xs.dim[2], h = o->heads;
  int64_t hk = o->kv_heads ? o->kv_heads : h;
  const Args *A = c->A;
  if (D % h) {
    diag_error(c->loc, "attention: the model width %lld is not divisible by "
               "heads = %lld", (long long)D, (long long)h);
    return -1;
  }
  if (h % hk) {
    diag_error(A && A->given[4] ? A->where[4] : c->loc, "attention: "
               "kv_heads = %lld does not divide heads = %lld", (long long)hk,
               (long long)h);
    diag_hint("each kv head serves heads / kv_heads query heads");
    return -1;
  }
  if (!o->fused && hk != h) {
    diag_error(A && A->given[4] ? A->where[4] : c->loc, "attention: "
               "kv_heads = %lld needs the fused lowering (fused = true)",
               (long long)hk);
    return -1;
  }
  int64_t Dh = D / h;
  if (o->rope && Dh % 2) {
    diag_error(A && A->given[5] ? A->where[5] : c->loc, "attention: rope "
               "turns pairs of the head dimension, which is odd (%lld = %lld "
               "/ %lld)", (long long)Dh, (long long)D, (long long)h);
    return -1;
  }
  int64_t sizes[3] = {h * Dh, hk * Dh, hk * Dh};
  int64_t width = sizes[0] + sizes[1] + sizes[2];
  int qkv = lower_linear(c, x, width, o->bias,
                         call_reserve(c, call_sub(c, "qkv")), NULL, -2);
  if (qkv < 0) return -1;
  static const char *const qn[] = {"q", "k", "v"};
  const char *names[3];
  for (int i = 0; i < 3; i++) names[i] = call_reserve(c, call_sub(c, qn[i]));
  int parts[3], t[3];
  lower_split_sizes(c, qkv, 3, sizes, 2, call_sub(c, "split"), names, parts);
  for (int i = 0; i < 3; i++) {
    Shape hs = {4, {B, S, i ? hk : h, Dh}};
    int r = lower_reshape_view(c, parts[i], &hs,
                               call_sub(c, xsprintf("%s_heads", qn[i])));
    if (r < 0) return -1;
    t[i] = lower_transpose(c, r, 1, 2, call_sub(c, xsprintf("%s_t", qn[i])));
    if (o->rope && i < 2)
      t[i] = lower_rope(c, t[i], o->rope_base,
                        call_sub(c, xsprintf("%s_rope", qn[i])));
    if (t[i] < 0) return -1;
  }
  int y;
  if (o->fused) {
    Call sd = *c;
    sd.base = call_sub(c, "sdpa");
    y = lower_sdpa(&sd, t[0], t[1], t[2], o->causal, o->dropout, 0);
  } else {
    int sc = lower_matmul(c, t[0], t[1], false, true, call_sub(c, "scores"));
    if (sc < 0) return -1;
    y = lower_scale(c, sc, 1.0 / sqrt((double)Dh), call_sub(c, "scale"));
    y = lower_softmax(c, y, o->causal, call_sub(c, "softmax"));
    if (o->dropout > 0)
      y = lower_dropout(c, y, o->dropout, call_sub(c, "dropout"));
    y = lower_matmul(c, y, t[2], false, false, call_sub(c, "context"));
  }
  if (y < 0) return -1;
  y = lower_transpose(c, y, 1, 2, call_sub(c, "context_t"));
  y = lower_reshape_view(c, y, &xs, call_sub(c, "merge"));
  if (y < 0) return -1;
  const char *proj = call_reserve(c, call_sub(c, "proj"));
  return lower_linear(c, y, D, o->bias, proj, call_reserve(c, c->base), -2);
}

/* param(DTYPE[DIM, ...]): a parameter value with no node. */
static int param_sugar(const Call *c) {
  Graph *g = c->g;
  const Args *A = c->A;
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
  int v = lower_param(c->L, call_reserve(c, c->base), VK_PARAM, DT_F32, &s,
                      c->loc);
  g->vals[v].dtype = dt;
  return v;
}

/* flatten(x): x [N, ...] viewed as [N, rest]. */
static int flatten_sugar(const Call *c) {
  Ev x = c->A->v[0];
  if (!call_need_rank(c, x, 2, MAX_RANK, "a tensor")) return -1;
  const Shape xs = call_val(c, x)->shape;
  int64_t total;
  shape_numel(&xs, &total);
  Shape s = {2, {xs.dim[0], total / xs.dim[0]}};
  return lower_reshape_view(c, x.v, &s, c->base);
}

/* a + b, a * b (tensors), x * c: the operators written as symbols. */
Ev builtin_binary(Lower *L, Op op, Ev a, Ev b, const char *name, Loc loc) {
  Call c = {L, lower_graph(L), op, op_info[op].name, loc, name, -1, NULL,
            NULL, 0, NULL};
  int v = lower_binary(&c, op, a, b, name);
  return v < 0 ? (Ev){.k = EV_ERR} : ev_tensor(v);
}

Ev builtin_scale(Lower *L, Ev x, double k, const char *name, Loc loc) {
  Call c = {L, lower_graph(L), OP_SCALE, "scale", loc, name, -1, NULL, NULL,
            0, NULL};
  if (!call_need_float(&c, x, "the tensor")) return (Ev){.k = EV_ERR};
  return ev_tensor(lower_scale(&c, x.v, k, name));
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
  bool keep_dt = b->op == BI_FLATTEN ||
                 (b->op < OP_COUNT && (op_info[b->op].flags & OF_KEEP_DT));
  if (A.dtype >= 0 && keep_dt) {
    diag_error(call->loc, "%s keeps its input's dtype; it takes no "
               "'dtype = ...'", b->name);
    return (Ev){.k = EV_ERR};
  }
  Ev r = {.k = EV_TENSOR};
  Call c = {L, lower_graph(L), b->op < OP_COUNT ? (Op)b->op : OP_COUNT,
            b->name, call->loc, base, A.dtype, &A, outnames, nout, &r};
  bool fl = b->op == BI_ATTENTION ||
            (b->op < OP_COUNT && (op_info[b->op].flags & OF_FLOAT));
  if (fl && !call_need_float(&c, A.v[0], "the input")) return (Ev){.k = EV_ERR};
  int v;
  switch (b->op) {
  case BI_ATTENTION: {
    AttnOpts o = {A.v[1].i, A.v[4].i, A.v[2].i, A.v[5].i, A.v[7].i,
                  A.v[8].i, ev_num(A.v[3]), ev_num(A.v[6])};
    v = call_need_rank(&c, A.v[0], 3, 3, "[batch, seq, dim] input")
            ? attention(&c, A.v[0].v, &o) : -1;
    break;
  }
  case BI_FLATTEN: v = flatten_sugar(&c); break;
  case BI_PARAM: v = param_sugar(&c); break;
  default: v = op_def[b->op]->lower(&c); break;
  }
  if (v < 0) return (Ev){.k = EV_ERR};
  if (r.k == EV_TENSOR) r.v = v;
  r.ast = call;
  return r;
}
