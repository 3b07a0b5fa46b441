/* frontend/lower.c: from the syntax tree to the forward graph.
 *
 * frontend_read reads and parses the file once; frontend_lower, as often
 * as asked (--gpus, --max-batch lower the same tree again with another
 * `batch`), evaluates the top-level `let`s (with -D overrides), applies
 * the train block, and lowers the model's statements in order. Lowering
 * never changes the tree. Names resolve in the current scope (the model's, or
 * one block call's), then among the top-level `let`s. A block call gets a
 * fresh scope holding its arguments, and a path prefix for every name it
 * makes: the k-th call of block B in a scope is "B[k]/" (repeat numbers
 * its calls the same way), so names are stable and unique:
 *
 *   layer[3]/m.weight     parameter of the node bound to m in layer call 3
 *   layer[3]/m:gelu       an unbound gelu inside m's expression
 *   layer[3]/a:softmax    a part of attention, bound to a
 *
 * A name already taken gets "#2", "#3", ... Checkpoint regions stamp their
 * segment id on every node they create. Each block is lowered again at
 * every call; if one call of a block reports errors, its later calls are
 * skipped, so an error in a repeated block is reported once.
 */
#include "mdlc.h"

#include <errno.h>

#include <stdlib.h>
#include <string.h>

enum { MAX_CALL_DEPTH = 64, MAX_NODES = 4000000, MAX_REPEAT = 100000 };

/* ---- sets of names (node names and value names are kept unique) ---- */

typedef struct {
  const char **slot; /* open addressing; NULL = empty */
  size_t cap;        /* a power of two */
  size_t n;          /* names held */
} NameSet;

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static bool set_has(const NameSet *ns, const char *s) {
  if (!ns->cap) return false;
  for (size_t i = hash_str(s) & (ns->cap - 1);; i = (i + 1) & (ns->cap - 1)) {
    if (!ns->slot[i]) return false;
    if (strcmp(ns->slot[i], s) == 0) return true;
  }
}

static void set_add(NameSet *ns, const char *s) {
  if (2 * (ns->n + 1) > ns->cap) {
    NameSet big = {xalloc(sizeof(char *) * (ns->cap ? 2 * ns->cap : 64)),
                   ns->cap ? 2 * ns->cap : 64, 0};
    for (size_t i = 0; i < ns->cap; i++)
      if (ns->slot[i]) set_add(&big, ns->slot[i]);
    *ns = big;
  }
  size_t i = hash_str(s) & (ns->cap - 1);
  while (ns->slot[i]) i = (i + 1) & (ns->cap - 1);
  ns->slot[i] = s;
  ns->n++;
}

/* `base` if free, else base#2, base#3, ...; the result is taken. */
static const char *set_unique(NameSet *ns, const char *base) {
  const char *s = base;
  for (int k = 2; set_has(ns, s); k++) s = xsprintf("%s#%d", base, k);
  set_add(ns, s);
  return s;
}

/* ---- scopes ---- */

typedef struct {
  const char *name; /* as written */
  Ev val;           /* what it is bound to */
  Loc loc;          /* where it was bound */
  bool is_let;      /* bound by `let` */
} Binding;

typedef struct {
  const char *name; /* block name */
  int count;        /* calls made so far in this scope */
} CallCount;

typedef struct Scope {
  Binding *b;           /* in binding order; the last one of a name wins */
  int n, cap;
  const char *prefix;   /* path prefix of names made here: "layer[3]/" */
  CallCount *calls;     /* block calls made in this scope, per block */
  int ncalls, capcalls;
  bool in_block;        /* a block's scope (return allowed) */
} Scope;

typedef struct {
  const Ast *ast;   /* the AST_BLOCK */
  bool bad;         /* a call reported errors: skip later calls */
} BlockDef;

/* An open call of a shared block: names made under `from` ("step[3]/")
 * are its parameters' names under `to` ("step/"). */
typedef struct {
  const char *from, *to;
  const Ast *call;  /* the call, for messages */
} SharedMap;

/* A parameter of a shared block, made at its first call. */
typedef struct {
  const char *name; /* "step/h.weight" */
  int value;
  const Ast *call;  /* the call that made it */
} SharedParam;

struct Lower {
  Graph *g;            /* what is built */
  Scope *global;       /* top-level lets */
  Scope *cur;          /* the scope statements bind into */
  BlockDef *blocks;    /* every block definition */
  int nblocks, capblocks;
  NameSet node_names;  /* taken node names */
  NameSet value_names; /* taken value names */
  int seg;             /* the checkpoint segment open now, or -1 */
  Loc seg_loc;         /* where it was opened */
  int segcap;          /* capacity of g->segment_loc */
  const BlockDef *stack[MAX_CALL_DEPTH]; /* block calls being lowered */
  int depth;
  Origin at;           /* the model statement (and repeat call) being
                          lowered: stamped on every node and value */
  SharedMap shared[MAX_CALL_DEPTH]; /* open shared-block calls, outer first */
  int nshared;
  SharedParam *sparams; /* parameters of shared blocks, by name */
  int nsparams, capsparams;
  int nstmt;           /* model statements met so far */
  bool too_big;        /* MAX_NODES reached (reported once) */
};

static void bind(Scope *s, const char *name, Ev val, Loc loc, bool is_let) {
  Binding *b = VEC_PUSH(s->b, s->n, s->cap);
  *b = (Binding){name, val, loc, is_let};
}

static const Binding *lookup_in(const Scope *s, const char *name) {
  for (int i = s->n - 1; i >= 0; i--)
    if (strcmp(s->b[i].name, name) == 0) return &s->b[i];
  return NULL;
}

static const Binding *lookup(const Lower *L, const char *name) {
  const Binding *b = lookup_in(L->cur, name);
  return b ? b : lookup_in(L->global, name);
}

/* The visible name closest to `name`, for did-you-mean. */
static const char *near_name(const Lower *L, const char *name) {
  int n = L->cur->n + L->global->n, k = 0;
  const char **c = xalloc(sizeof(char *) * (size_t)(n ? n : 1));
  for (int i = 0; i < L->cur->n; i++) c[k++] = L->cur->b[i].name;
  if (L->cur != L->global)
    for (int i = 0; i < L->global->n; i++) c[k++] = L->global->b[i].name;
  return frontend_suggest(name, c, k);
}

static const BlockDef *find_block(const Lower *L, const char *name) {
  for (int i = 0; i < L->nblocks; i++)
    if (strcmp(L->blocks[i].ast->str, name) == 0) return &L->blocks[i];
  return NULL;
}

/* closest_word, and also a word two swapped letters away ('bais' for
 * 'bias'), the most common slip that edit distance scores as 2. */
const char *frontend_suggest(const char *word, const char *const *cands,
                             int n) {
  const char *near = closest_word(word, cands, n);
  size_t len = strlen(word);
  for (int i = 0; i < n && !near; i++) {
    if (!cands[i] || strlen(cands[i]) != len) continue;
    size_t d = 0, first = 0, ndiff = 0;
    for (; d < len; d++)
      if (word[d] != cands[i][d] && ndiff++ == 0) first = d;
    if (ndiff == 2 && first + 1 < len && word[first] == cands[i][first + 1]
        && word[first + 1] == cands[i][first])
      near = cands[i];
  }
  return near;
}

/* A name shortened for messages (a 100 KB identifier stays readable). */
static const char *shown(const char *s) {
  return strlen(s) > 48 ? xsprintf("%.40s...", s) : s;
}

/* ---- the builders builtins.c uses ---- */

Graph *lower_graph(Lower *L) { return L->g; }

const char *lower_node_name(Lower *L, const char *local) {
  return set_unique(&L->node_names, xsprintf("%s%s", L->cur->prefix, local));
}

const char *lower_value_name(Lower *L, const char *full) {
  return set_unique(&L->value_names, full);
}

int lower_node(Lower *L, Op op, const char *full, const int *in, int nin,
               Loc loc, int dtype_override) {
  Graph *g = L->g;
  if (g->nnodes >= MAX_NODES && !L->too_big) {
    diag_error(loc, "the model has more than %d operations", MAX_NODES);
    L->too_big = true;
  }
  int n = graph_add_node(g, op, full, in, nin, loc);
  g->nodes[n].segment = L->seg;
  g->nodes[n].dtype_override = dtype_override;
  g->nodes[n].origin = L->at;
  return n;
}

/* Inside shared-block calls: the name without the call indices of the
 * shared blocks ("step[3]/h.weight" -> "step/h.weight"), innermost first. */
static const char *shared_name(const Lower *L, const char *full) {
  for (int i = L->nshared - 1; i >= 0; i--) {
    size_t n = strlen(L->shared[i].from);
    if (strncmp(full, L->shared[i].from, n) == 0)
      full = xsprintf("%s%s", L->shared[i].to, full + n);
  }
  return full;
}

int lower_param(Lower *L, const char *full, ValueKind k, DType dt,
                const Shape *s, Loc loc) {
  if (L->nshared && (k == VK_PARAM || k == VK_STATE)) {
    const char *name = shared_name(L, full);
    for (int i = 0; i < L->nsparams; i++) {
      const SharedParam *sp = &L->sparams[i];
      if (strcmp(sp->name, name) != 0) continue;
      const Value *x = &L->g->vals[sp->value];
      if (!shape_eq(&x->shape, s) || x->kind != k) {
        char b1[160], b2[160];
        const SharedMap *m = &L->shared[L->nshared - 1];
        diag_error(m->call->loc, "shared block '%s': this call needs '%s' "
                   "of shape %s, but its first call made it %s",
                   shown(m->call->str), name, shape_str(s, b1),
                   shape_str(&x->shape, b2));
        diag_note(sp->call->loc, "the first call");
        diag_hint("every call of a shared block uses one set of parameters, "
                  "so its calls must agree on shapes");
      }
      return sp->value;
    }
    int v = graph_add_value(L->g, lower_value_name(L, name), k, dt, s, loc);
    L->g->vals[v].origin = L->at;
    *VEC_PUSH(L->sparams, L->nsparams, L->capsparams) =
        (SharedParam){L->g->vals[v].name, v,
                      L->shared[L->nshared - 1].call};
    return v;
  }
  int v = graph_add_value(L->g, lower_value_name(L, full), k, dt, s, loc);
  L->g->vals[v].origin = L->at;
  return v;
}

bool lower_shape_ok(Lower *L, const Shape *s, Loc loc, const char *what) {
  (void)L;
  int64_t n;
  for (int i = 0; i < s->rank; i++)
    if (s->dim[i] < 1) {
      diag_error(loc, "%s has a dimension of %lld; dimensions must be at "
                 "least 1", what, (long long)s->dim[i]);
      return false;
    }
  /* Bytes must fit too, with room for gradients and optimizer state. */
  if (!shape_numel(s, &n) || n > (INT64_MAX >> 6)) {
    char b[160];
    diag_error(loc, "%s of shape %s has too many elements (more than "
               "2^57)", what, shape_str(s, b));
    return false;
  }
  return true;
}

const char *ev_describe(const Lower *L, Ev e) {
  char b[160];
  switch (e.k) {
  case EV_ERR: return "an error";
  case EV_INT: return xsprintf("the integer %lld", (long long)e.i);
  case EV_FLOAT: return xsprintf("the number %g", e.f);
  case EV_BOOL: return e.i ? "'true'" : "'false'";
  case EV_SIZE: return xsprintf("the size %lld B", (long long)e.i);
  case EV_WORD: return xsprintf("the word '%s'", shown(e.w));
  case EV_TENSOR: {
    const Value *v = &L->g->vals[e.v];
    return xsprintf("a tensor %s%s", dtype_name(v->dtype),
                    shape_str(&v->shape, b));
  }
  case EV_TUPLE: return xsprintf("%d tensors", e.nv);
  case EV_TYPE: return "a tensor type";
  }
  return "?";
}

/* ---- checkpoint segments ---- */

/* Opens a segment at loc; false (after an error) inside another. */
static bool seg_open(Lower *L, Loc loc) {
  if (L->seg >= 0) {
    diag_error(loc, "checkpoint segments do not nest");
    diag_note(L->seg_loc, "the enclosing checkpoint segment starts here");
    return false;
  }
  Graph *g = L->g;
  if (g->nsegments >= L->segcap) {
    int nc = L->segcap ? 2 * L->segcap : 8;
    g->segment_loc = xrealloc_array(g->segment_loc, (size_t)L->segcap,
                                    (size_t)nc, sizeof(Loc));
    L->segcap = nc;
  }
  g->segment_loc[g->nsegments] = loc;
  L->seg = g->nsegments++;
  L->seg_loc = loc;
  return true;
}

/* Closes the open segment; one that made no node is dropped. */
static void seg_close(Lower *L) {
  Graph *g = L->g;
  bool used = false;
  for (int i = g->nnodes - 1; i >= 0 && !used; i--)
    used = g->nodes[i].segment == L->seg;
  if (!used && L->seg == g->nsegments - 1) g->nsegments--;
  L->seg = -1;
}

/* ---- expressions ---- */

static Ev err(void) { return (Ev){.k = EV_ERR}; }

static Ev int_ev(int64_t i, const Ast *a) {
  return (Ev){.k = EV_INT, .i = i, .ast = a};
}

/* Integer arithmetic, checked: overflow and division by zero are errors. */
static Ev int_binop(const Ast *e, int64_t a, int64_t b) {
  int64_t r = 0;
  bool ok = true;
  switch (e->op) {
  case '+': ok = add_ok(a, b, &r); break;
  case '-': ok = b != INT64_MIN && add_ok(a, -b, &r); break;
  case '*': ok = mul_ok(a, b, &r); break;
  case '/':
  case '%':
    if (b == 0) {
      diag_error(e->name_loc, "division by zero");
      return err();
    }
    if (a == INT64_MIN && b == -1) ok = false;
    else r = e->op == '/' ? a / b : a % b;
    break;
  }
  if (!ok) {
    diag_error(e->loc, "integer overflow: %lld %c %lld does not fit in 64 "
               "bits", (long long)a, e->op, (long long)b);
    return err();
  }
  return int_ev(r, e);
}

static bool is_num(Ev v) { return v.k == EV_INT || v.k == EV_FLOAT; }
static double num(Ev v) { return v.k == EV_INT ? (double)v.i : v.f; }

static const char *op_word(char op) {
  switch (op) {
  case '+': return "add";
  case '-': return "subtract";
  case '*': return "multiply";
  case '/': return "divide";
  default: return "take the remainder of";
  }
}

static Ev lower_binop(Lower *L, const Ast *e, const char *ctx,
                      const char *want) {
  Ev a = lower_expr(L, e->kid[0], ctx, NULL, false);
  Ev b = lower_expr(L, e->kid[1], ctx, NULL, false);
  if (a.k == EV_ERR || b.k == EV_ERR) return err();
  if (a.k == EV_INT && b.k == EV_INT) return int_binop(e, a.i, b.i);
  const char *name = want ? want : xsprintf("%s:%s", ctx,
                                            e->op == '+' ? "add" : "mul");
  if (a.k == EV_TENSOR && b.k == EV_TENSOR && (e->op == '+' || e->op == '*'))
    return builtin_binary(L, e->op == '+' ? OP_ADD : OP_MUL, a, b, name,
                          e->loc);
  if (e->op == '*' && a.k == EV_TENSOR && is_num(b))
    return builtin_scale(L, a, num(b), want ? want :
                         xsprintf("%s:scale", ctx), e->loc);
  if (e->op == '*' && is_num(a) && b.k == EV_TENSOR)
    return builtin_scale(L, b, num(a), want ? want :
                         xsprintf("%s:scale", ctx), e->loc);
  if (e->op == '/' && a.k == EV_TENSOR && is_num(b) && num(b) != 0)
    return builtin_scale(L, a, 1.0 / num(b), want ? want :
                         xsprintf("%s:scale", ctx), e->loc);
  if (is_num(a) && is_num(b) && e->op != '%') {
    double x = num(a), y = num(b), r = e->op == '+' ? x + y
                                       : e->op == '-' ? x - y
                                       : e->op == '*' ? x * y : 0;
    if (e->op == '/') {
      if (y == 0) {
        diag_error(e->name_loc, "division by zero");
        return err();
      }
      r = x / y;
    }
    return (Ev){.k = EV_FLOAT, .f = r, .ast = e};
  }
  diag_error(e->name_loc, "cannot %s %s and %s", op_word(e->op),
             ev_describe(L, a), ev_describe(L, b));
  if (a.k == EV_TENSOR && b.k == EV_TENSOR && e->op == '-')
    diag_hint("write 'a + b * -1'");
  else if (a.k == EV_TENSOR || b.k == EV_TENSOR)
    diag_hint("tensors take '+' and '*' with tensors, and '*' or '/' with "
              "a number (scale)");
  return err();
}

static Ev call_block(Lower *L, const BlockDef *bd, const Ast *call, Ev *args,
                     int nargs);
static void lower_stmts(Lower *L, const Ast *list, Ev *ret);

/* Evaluates the arguments of a block call into args (capacity call->nkid). */
static int block_args(Lower *L, const Ast *call, const char *ctx, Ev *args) {
  int n = 0;
  for (int i = 0; i < call->nkid; i++) {
    const Ast *a = call->kid[i];
    if (a->kind == AST_OPTION) {
      diag_error(a->name_loc, "block '%s' takes no options ('%s = ...')",
                 shown(call->str), shown(a->str));
      diag_hint("pass block arguments by position");
      return -1;
    }
    args[n] = lower_expr(L, a, ctx, NULL, false);
    if (args[n].k == EV_ERR) return -1;
    n++;
  }
  return n;
}

/* `repeat N B(x, ...)` and `checkpoint ...` (each_ckpt: `repeat N
 * checkpoint B(x)`, one segment per call). */
static Ev lower_repeat(Lower *L, const Ast *e, const char *ctx) {
  const Ast *count = e->kid[0], *call = e->kid[1];
  bool each = call->kind == AST_CHECKPOINT;
  if (each) call = call->kid[0];
  Ev n = lower_expr(L, count, ctx, NULL, false);
  if (n.k == EV_ERR) return err();
  if (n.k != EV_INT) {
    diag_error(count->loc, "repeat count must be an integer, got %s",
               ev_describe(L, n));
    return err();
  }
  if (n.i < 1 || n.i > MAX_REPEAT) {
    diag_error(count->loc, "repeat count must be between 1 and %d, got %lld",
               MAX_REPEAT, (long long)n.i);
    return err();
  }
  const BlockDef *bd = find_block(L, call->str);
  if (!bd) {
    if (builtin_exists(call->str))
      diag_error(call->name_loc, "repeat takes a block call; '%s' is an "
                 "operator", shown(call->str));
    else
      diag_error(call->name_loc, "unknown block '%s'", shown(call->str));
    return err();
  }
  Ev *args = xalloc(sizeof(Ev) * (size_t)(call->nkid + 1));
  int nargs = block_args(L, call, ctx, args);
  if (nargs < 0) return err();
  if (nargs == 0 || args[0].k != EV_TENSOR) {
    diag_error(call->loc, "repeat feeds each call's result to the next as "
               "its first argument, which must be a tensor");
    return err();
  }
  Ev r = args[0];
  int call0 = L->at.call;
  for (int64_t i = 0; i < n.i && r.k != EV_ERR; i++) {
    args[0] = r;
    if (L->depth == 0) L->at.call = (int)i; /* a model-level repeat */
    if (each && !seg_open(L, e->kid[1]->loc)) return err();
    r = call_block(L, bd, call, args, nargs);
    if (each) seg_close(L);
    if (r.k != EV_TENSOR && r.k != EV_ERR) {
      diag_error(call->loc, "repeat needs block '%s' to return a tensor, it "
                 "returns %s", shown(call->str), ev_describe(L, r));
      return err();
    }
  }
  L->at.call = call0;
  return r;
}

static Ev lower_call(Lower *L, const Ast *e, const char *ctx,
                     const char *want) {
  if (builtin_exists(e->str)) return lower_builtin(L, e, ctx, want, NULL, 0);
  const BlockDef *bd = find_block(L, e->str);
  if (!bd) {
    diag_error(e->name_loc, "unknown operator or block '%s'", shown(e->str));
    const char *const *ops = builtin_names();
    int n = 0;
    while (ops[n]) n++;
    const char **c = xalloc(sizeof(char *) * (size_t)(n + L->nblocks));
    for (int i = 0; i < n; i++) c[i] = ops[i];
    for (int i = 0; i < L->nblocks; i++) c[n + i] = L->blocks[i].ast->str;
    const char *near = frontend_suggest(e->str, c, n + L->nblocks);
    if (near) diag_hint("did you mean '%s'?", near);
    return err();
  }
  Ev *args = xalloc(sizeof(Ev) * (size_t)(e->nkid + 1));
  int nargs = block_args(L, e, ctx, args);
  if (nargs < 0) return err();
  return call_block(L, bd, e, args, nargs);
}

Ev lower_expr(Lower *L, const Ast *e, const char *ctx, const char *want,
              bool words) {
  switch (e->kind) {
  case AST_INT: return int_ev(e->ival, e);
  case AST_FLOAT: return (Ev){.k = EV_FLOAT, .f = e->fval, .ast = e};
  case AST_BOOL: return (Ev){.k = EV_BOOL, .i = e->ival, .ast = e};
  case AST_SIZE: return (Ev){.k = EV_SIZE, .i = e->ival, .ast = e};
  case AST_NAME: {
    const Binding *b = lookup(L, e->str);
    if (b) {
      Ev v = b->val;
      v.ast = e;
      return v;
    }
    if (words) return (Ev){.k = EV_WORD, .w = e->str, .ast = e};
    diag_error(e->loc, "unknown name '%s'", shown(e->str));
    const char *near = near_name(L, e->str);
    if (near) diag_hint("did you mean '%s'?", near);
    return err();
  }
  case AST_BINOP: return lower_binop(L, e, ctx, want);
  case AST_NEG: {
    Ev a = lower_expr(L, e->kid[0], ctx, NULL, false);
    if (a.k == EV_INT) {
      if (a.i == INT64_MIN) {
        diag_error(e->loc, "integer overflow: -(%lld)", (long long)a.i);
        return err();
      }
      return int_ev(-a.i, e);
    }
    if (a.k == EV_FLOAT) return (Ev){.k = EV_FLOAT, .f = -a.f, .ast = e};
    if (a.k == EV_TENSOR)
      return builtin_scale(L, a, -1.0, want ? want :
                           xsprintf("%s:scale", ctx), e->loc);
    if (a.k != EV_ERR)
      diag_error(e->loc, "cannot negate %s", ev_describe(L, a));
    return err();
  }
  case AST_CALL: return lower_call(L, e, ctx, want);
  case AST_TYPE: return (Ev){.k = EV_TYPE, .ast = e};
  case AST_REPEAT: return lower_repeat(L, e, ctx);
  case AST_CHECKPOINT: {
    const Ast *in = e->kid[0];
    if (!seg_open(L, e->loc)) return err();
    Ev r = in->kind == AST_REPEAT ? lower_repeat(L, in, ctx)
                                  : lower_call(L, in, ctx, want);
    seg_close(L);
    return r;
  }
  case AST_ERROR: return err();
  case AST_OPTION: case AST_LET: case AST_INPUT: case AST_BIND:
  case AST_LOSS: case AST_OUTPUT: case AST_RETURN: case AST_CKBLOCK:
  case AST_BLOCK: case AST_MODEL: case AST_TRAIN: case AST_LIST:
  case AST_FILE:
    break; /* statements and containers: not expressions */
  }
  diag_error(e->loc, "a %s is not an expression", ast_kind_name(e->kind));
  return err();
}

/* ---- blocks ---- */

static Ev call_block(Lower *L, const BlockDef *bd, const Ast *call, Ev *args,
                     int nargs) {
  const Ast *def = bd->ast, *params = def->kid[0], *body = def->kid[1];
  if (bd->bad) return err();
  for (int i = 0; i < L->depth; i++)
    if (L->stack[i] == bd) {
      diag_error(call->name_loc, "block '%s' calls itself; recursion is not "
                 "allowed", shown(def->str));
      for (int k = i; k < L->depth; k++)
        diag_note(L->stack[k]->ast->name_loc, "'%s' is being expanded",
                  shown(L->stack[k]->ast->str));
      return err();
    }
  if (L->depth >= MAX_CALL_DEPTH) {
    diag_error(call->name_loc, "blocks nested more than %d calls deep",
               MAX_CALL_DEPTH);
    return err();
  }
  if (nargs != params->nkid) {
    diag_error(call->loc, "block '%s' takes %d argument%s, got %d",
               shown(def->str), params->nkid, params->nkid == 1 ? "" : "s",
               nargs);
    diag_note(def->name_loc, "'%s' is defined here", shown(def->str));
    return err();
  }
  /* The call's number in the calling scope names its scope. */
  Scope *caller = L->cur;
  CallCount *cc = NULL;
  for (int i = 0; i < caller->ncalls; i++)
    if (strcmp(caller->calls[i].name, def->str) == 0) cc = &caller->calls[i];
  if (!cc) {
    cc = VEC_PUSH(caller->calls, caller->ncalls, caller->capcalls);
    cc->name = def->str;
  }
  Scope *s = xalloc(sizeof *s);
  s->prefix = xsprintf("%s%s[%d]/", caller->prefix, def->str, cc->count++);
  s->in_block = true;
  for (int i = 0; i < nargs; i++)
    bind(s, params->kid[i]->str, args[i], params->kid[i]->loc, false);

  int errors = diag_errors();
  bool shared = def->ival == 1;
  if (shared)
    L->shared[L->nshared++] = (SharedMap){
        s->prefix, xsprintf("%s%s/", caller->prefix, def->str), call};
  L->stack[L->depth++] = bd;
  L->cur = s;
  Ev ret = err();
  ret.k = EV_ERR;
  ret.nv = -1; /* "no return seen" */
  lower_stmts(L, body, &ret);
  L->cur = caller;
  L->depth--;
  if (shared) L->nshared--;
  if (ret.nv == -1 && ret.k == EV_ERR && diag_errors() == errors) {
    diag_error(def->name_loc, "block '%s' has no 'return'", shown(def->str));
    diag_hint("end the block with 'return EXPR'");
  }
  if (diag_errors() != errors) {
    ((BlockDef *)bd)->bad = true;
    return err();
  }
  return ret;
}

/* ---- statements ---- */

static bool input_value(Lower *L, const Ast *st);

/* `input NAME : DTYPE[DIMS]`; on an error NAME is bound to the error, so
 * its uses stay quiet. */
static void lower_input(Lower *L, const Ast *st) {
  if (!input_value(L, st))
    bind(L->cur, st->str, err(), st->name_loc, false);
}

static bool input_value(Lower *L, const Ast *st) {
  const Ast *ty = st->kid[0];
  if (L->cur->in_block) {
    diag_error(st->loc, "'input' belongs in the model, not in a block");
    diag_hint("pass the tensor to the block as an argument");
    return false;
  }
  DType dt;
  if (!dtype_parse(ty->str, &dt)) {
    static const char *const names[] = {"f32", "f16", "bf16", "i32", "i64",
                                        "u8"};
    diag_error(ty->name_loc, "unknown dtype '%s'", shown(ty->str));
    const char *near = frontend_suggest(ty->str, names, 6);
    if (near) diag_hint("did you mean '%s'?", near);
    else diag_hint("dtypes are f32, f16, bf16, i32, i64 and u8");
    return false;
  }
  Shape s = {0};
  if (ty->nkid > MAX_RANK) {
    diag_error(ty->loc, "tensors have at most %d dimensions, got %d",
               MAX_RANK, ty->nkid);
    return false;
  }
  for (int i = 0; i < ty->nkid; i++) {
    Ev d = lower_expr(L, ty->kid[i], st->str, NULL, false);
    if (d.k == EV_ERR) return false;
    if (d.k != EV_INT) {
      diag_error(ty->kid[i]->loc, "a dimension must be an integer, got %s",
                 ev_describe(L, d));
      return false;
    }
    s.dim[s.rank++] = d.i;
  }
  if (!lower_shape_ok(L, &s, ty->loc, xsprintf("input '%s'", shown(st->str))))
    return false;
  int v = lower_param(L, xsprintf("%s%s", L->cur->prefix, st->str), VK_INPUT,
                      dt, &s, st->name_loc);
  bind(L->cur, st->str, (Ev){.k = EV_TENSOR, .v = v}, st->name_loc, false);
  return true;
}

static void lower_bind(Lower *L, const Ast *st) {
  int nn = st->nkid - 1;
  const Ast *rhs = st->kid[nn];
  if (nn == 1) {
    const char *name = st->kid[0]->str;
    Ev v = lower_expr(L, rhs, name, name, false);
    if (v.k == EV_TUPLE) {
      diag_error(st->kid[0]->loc, "this gives %d tensors; bind each to a "
                 "name", v.nv);
      diag_hint("write 'a, b, ... = split(...)'");
      v = err();
    } else if (v.k == EV_TYPE || v.k == EV_WORD) {
      diag_error(rhs->loc, "cannot bind '%s' to %s", shown(name),
                 ev_describe(L, v));
      v = err();
    }
    bind(L->cur, name, v, st->kid[0]->loc, false);
    return;
  }
  const char **names = xalloc(sizeof(char *) * (size_t)nn);
  for (int i = 0; i < nn; i++) names[i] = st->kid[i]->str;
  Ev v;
  if (rhs->kind == AST_CALL && builtin_exists(rhs->str)) {
    v = lower_builtin(L, rhs, names[0], NULL, names, nn);
  } else {
    v = lower_expr(L, rhs, names[0], NULL, false);
    if (v.k != EV_ERR) {
      diag_error(rhs->loc, "cannot bind %d names to %s", nn,
                 ev_describe(L, v));
      diag_hint("only split gives several tensors");
      v = err();
    }
  }
  for (int i = 0; i < nn; i++) {
    Ev one = v.k == EV_TUPLE && i < v.nv ? (Ev){.k = EV_TENSOR, .v = v.vs[i]}
                                         : err();
    bind(L->cur, names[i], one, st->kid[i]->loc, false);
  }
}

static void lower_loss(Lower *L, const Ast *st) {
  Graph *g = L->g;
  if (L->cur->in_block) {
    diag_error(st->loc, "'loss' belongs in the model, not in a block");
    diag_hint("return the value and write 'loss' in the model");
    return;
  }
  if (g->loss >= 0) {
    diag_error(st->loc, "a model has exactly one 'loss'");
    diag_note(g->vals[g->loss].loc, "the first 'loss' is here");
    return;
  }
  Ev v = lower_expr(L, st->kid[0], "loss", "loss", false);
  if (v.k == EV_ERR) return;
  int64_t n = 0;
  if (v.k != EV_TENSOR) {
    diag_error(st->kid[0]->loc, "the loss must be a tensor, got %s",
               ev_describe(L, v));
  } else if (!shape_numel(&g->vals[v.v].shape, &n) || n != 1 ||
             !dtype_is_float(g->vals[v.v].dtype) ||
             g->vals[v.v].kind != VK_ACT) {
    diag_error(st->kid[0]->loc, "the loss must be one float computed by the "
               "model, got %s", ev_describe(L, v));
    diag_hint("cross_entropy and mse give a scalar mean");
  } else {
    g->loss = v.v;
    g->vals[v.v].is_output = true;
    g->vals[v.v].loc = st->loc;
  }
}

static void lower_let(Lower *L, const Ast *st) {
  Ev v = lower_expr(L, st->kid[0], st->str, NULL, false);
  if (v.k == EV_ERR) {
    bind(L->cur, st->str, v, st->name_loc, true);
    return;
  }
  if (v.k != EV_INT) {
    diag_error(st->kid[0]->loc, "'let' takes an integer expression, got %s",
               ev_describe(L, v));
    v = err();
  }
  bind(L->cur, st->str, v, st->name_loc, true);
}

/* Lowers a statement list; ret (blocks only) receives the return value,
 * with ret->nv = 0 once a return was seen. The model's statements (not a
 * block's) are numbered as they come, those in `checkpoint { }` too: the
 * Origin of what each makes. */
static void lower_stmts(Lower *L, const Ast *list, Ev *ret) {
  bool returned = false;
  for (int i = 0; i < list->nkid; i++) {
    const Ast *st = list->kid[i];
    if (returned) {
      diag_error(st->loc, "statement after 'return'");
      diag_hint("'return' ends a block");
      return;
    }
    if (L->depth == 0 && st->kind != AST_CKBLOCK)
      L->at = (Origin){L->nstmt++, 0};
    switch (st->kind) {
    case AST_LET: lower_let(L, st); break;
    case AST_INPUT: lower_input(L, st); break;
    case AST_BIND: lower_bind(L, st); break;
    case AST_LOSS: lower_loss(L, st); break;
    case AST_OUTPUT: {
      Ev v = lower_expr(L, st->kid[0], "output", "output", false);
      if (v.k == EV_TENSOR) L->g->vals[v.v].is_output = true;
      else if (v.k != EV_ERR)
        diag_error(st->kid[0]->loc, "'output' takes a tensor, got %s",
                   ev_describe(L, v));
      break;
    }
    case AST_RETURN:
      if (!ret) {
        diag_error(st->loc, "'return' outside a block");
        break;
      }
      *ret = lower_expr(L, st->kid[0], "return", "return", false);
      ret->nv = 0;
      returned = true;
      break;
    case AST_CKBLOCK:
      if (seg_open(L, st->name_loc)) {
        lower_stmts(L, st, ret);
        seg_close(L);
      }
      if (ret && ret->nv == 0) returned = true;
      break;
    case AST_ERROR: break;
    case AST_INT: case AST_FLOAT: case AST_SIZE: case AST_BOOL:
    case AST_NAME: case AST_BINOP: case AST_NEG: case AST_CALL:
    case AST_OPTION: case AST_TYPE: case AST_REPEAT: case AST_CHECKPOINT:
    case AST_BLOCK: case AST_MODEL: case AST_TRAIN: case AST_LIST:
    case AST_FILE:
      diag_error(st->loc, "a %s cannot appear here", ast_kind_name(st->kind));
      break;
    }
  }
}

/* ---- the train block ---- */

static int word_index(const char *w, const char *const *names, int n) {
  for (int i = 0; i < n; i++)
    if (strcmp(w, names[i]) == 0) return i;
  return -1;
}

static void bad_word(const Ast *key, const Ast *val, const char *const *names,
                     int n) {
  if (val->kind != AST_NAME) {
    diag_error(val->loc, "'%s' takes one of its words, not a number",
               key->str);
  } else {
    diag_error(val->loc, "unknown %s '%s'", key->str, shown(val->str));
    const char *near = frontend_suggest(val->str, names, n);
    if (near) {
      diag_hint("did you mean '%s'?", near);
      return;
    }
  }
  StrBuf sb = {0};
  for (int i = 0; i < n; i++)
    sb_printf(&sb, "%s%s", i == 0 ? "" : i == n - 1 ? " or " : ", ", names[i]);
  diag_hint("%s is %s", key->str, sb.s);
}

static void lower_train(Lower *L, const Ast *t, unsigned cfg_set) {
  static const char *const keys[] = {"optimizer", "precision", "state_dtype",
                                     "workspace", "budget", "device_memory"};
  static const char *const sdt[] = {"f32", "bf16", "f16"};
  static const DType sdt_t[] = {DT_F32, DT_BF16, DT_F16};
  Config *c = &L->g->cfg;
  const Ast *seen[6] = {0};
  for (int i = 0; i < t->nkid; i++) {
    const Ast *kv = t->kid[i], *val = kv->kid[0];
    int k = word_index(kv->str, keys, 6);
    if (k < 0) {
      diag_error(kv->name_loc, "unknown train setting '%s'", shown(kv->str));
      const char *near = frontend_suggest(kv->str, keys, 6);
      if (near) diag_hint("did you mean '%s'?", near);
      else diag_hint("the settings are optimizer, precision, state_dtype, "
                     "workspace, budget and device_memory");
      continue;
    }
    if (seen[k]) {
      diag_error(kv->name_loc, "'%s' is set twice", kv->str);
      diag_note(seen[k]->name_loc, "first set here");
      continue;
    }
    seen[k] = kv;
    static const unsigned bit[] = {CFG_OPTIMIZER, CFG_PRECISION,
                                   CFG_STATE_DTYPE, CFG_WORKSPACE, CFG_BUDGET,
                                   CFG_DEVICE_MEMORY};
    bool cli = cfg_set & bit[k];
    const char *w = val->kind == AST_NAME ? val->str : "";
    switch (k) {
    case 0: {
      int o = word_index(w, optimizer_name, OPTIM_COUNT);
      if (o < 0) bad_word(kv, val, optimizer_name, OPTIM_COUNT);
      else if (!cli) c->optimizer = (Optimizer)o;
      break;
    }
    case 1: {
      int p = word_index(w, precision_name, PREC_COUNT);
      if (p < 0) bad_word(kv, val, precision_name, PREC_COUNT);
      else if (!cli) c->precision = (Precision)p;
      break;
    }
    case 2: {
      int d = word_index(w, sdt, 3);
      if (d < 0) bad_word(kv, val, sdt, 3);
      else if (!cli) c->state_dtype = (int)sdt_t[d];
      break;
    }
    default: /* workspace, budget, device_memory: sizes */
      if (val->kind != AST_SIZE && val->kind != AST_INT) {
        diag_error(val->loc, "'%s' takes a size such as 32MiB or 8GiB",
                   kv->str);
      } else if (!cli) {
        if (k == 3) c->workspace = val->ival;
        else if (k == 4) c->budget = val->ival;
        else c->device_memory = val->ival;
      }
      break;
    }
  }
}

/* ---- the file ---- */

static char *read_all(const char *path, size_t *len) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 1 << 16, n = 0, got;
  char *buf = malloc(cap);
  while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) {
      char *more = realloc(buf, cap *= 2);
      if (!more) free(buf);
      buf = more;
    }
  }
  bool bad = ferror(f); /* a directory, say: errno says why */
  int err = errno;
  if (f != stdin) fclose(f);
  if (bad || !buf) {
    free(buf);
    errno = bad ? err : ENOMEM;
    return NULL;
  }
  *len = n;
  return buf;
}

/* The top-level lets, in order, with -D overrides; every -D must name one. */
static void lower_lets(Lower *L, const Ast *file, const Define *defs,
                       int ndefs) {
  for (int d = 0; d < ndefs; d++) {
    bool found = false;
    int nlets = 0;
    const char **lets = xalloc(sizeof(char *) * (size_t)(file->nkid + 1));
    for (int i = 0; i < file->nkid; i++)
      if (file->kid[i]->kind == AST_LET) {
        lets[nlets++] = file->kid[i]->str;
        found |= strcmp(file->kid[i]->str, defs[d].name) == 0;
      }
    if (!found) {
      const char *near = frontend_suggest(defs[d].name, lets, nlets);
      die_usage("-D %s: the model has no top-level 'let %s'%s%s%s",
                defs[d].name, defs[d].name, near ? " (did you mean '" : "",
                near ? near : "", near ? "'?)" : "");
    }
  }
  for (int i = 0; i < file->nkid; i++) {
    const Ast *st = file->kid[i];
    if (st->kind != AST_LET) continue;
    const Binding *old = lookup_in(L->global, st->str);
    if (old) {
      diag_error(st->name_loc, "'%s' is already defined", shown(st->str));
      diag_note(old->loc, "first defined here");
      continue;
    }
    const Define *def = NULL;
    for (int d = 0; d < ndefs; d++)
      if (strcmp(defs[d].name, st->str) == 0) def = &defs[d];
    if (def) {
      lower_expr(L, st->kid[0], st->str, NULL, false); /* still checked */
      bind(L->global, st->str, int_ev(def->value, st), st->name_loc, true);
    } else {
      lower_let(L, st);
    }
    if (strcmp(st->str, "batch") == 0 && L->global->b[L->global->n - 1].val.k
        == EV_INT)
      L->g->batch = L->global->b[L->global->n - 1].val.i;
  }
}

Source *frontend_read(const char *path) {
  size_t len = 0;
  errno = 0;
  char *text = read_all(path, &len);
  if (!text)
    die_usage("cannot read '%s': %s", path,
              errno ? strerror(errno) : "read error");
  if (len > (1u << 30)) die_usage("'%s' is larger than 1 GiB", path);
  Source *s = xalloc(sizeof *s);
  s->path = path;
  s->file = src_add(path, text, len);
  free(text);
  int errors = diag_errors();
  s->root = parse_source(s->file);
  s->syntax_ok = diag_errors() == errors;
  return s;
}

Graph *frontend_lower(const Source *src, const Define *defs, int ndefs,
                      const Config *cfg, unsigned cfg_set) {
  int file = src->file;
  const Ast *root = src->root;
  bool syntax_ok = src->syntax_ok;
  int errors = diag_errors();

  Lower *L = xalloc(sizeof *L);
  L->g = graph_new();
  L->g->cfg = *cfg;
  L->seg = -1;
  L->at = (Origin){-1, 0};
  L->global = xalloc(sizeof *L->global);
  L->global->prefix = "";
  L->cur = L->global;

  const Ast *model = NULL, *train = NULL;
  for (int i = 0; i < root->nkid; i++) {
    const Ast *it = root->kid[i];
    if (it->kind == AST_BLOCK) {
      const BlockDef *old = find_block(L, it->str);
      if (old || builtin_exists(it->str)) {
        diag_error(it->name_loc, "'%s' is already %s", shown(it->str),
                   old ? "a block" : "an operator");
        if (old) diag_note(old->ast->name_loc, "first defined here");
        continue;
      }
      BlockDef *bd = VEC_PUSH(L->blocks, L->nblocks, L->capblocks);
      bd->ast = it;
    } else if (it->kind == AST_MODEL || it->kind == AST_TRAIN) {
      const Ast **slot = it->kind == AST_MODEL ? &model : &train;
      if (*slot) {
        diag_error(it->name_loc, "a file has %s '%s'", it->kind == AST_MODEL
                   ? "exactly one" : "at most one", ast_kind_name(it->kind));
        diag_note((*slot)->name_loc, "the first one is here");
        continue;
      }
      *slot = it;
    }
  }
  lower_lets(L, root, defs, ndefs);
  if (!syntax_ok) return NULL; /* the rest would report cascades */
  if (train) lower_train(L, train, cfg_set);
  if (!model) {
    if (diag_errors() == errors)
      diag_error((Loc){file, 0, 0}, "no 'model NAME { ... }' in this file");
    return NULL;
  }
  L->g->model_name = model->str;
  Scope *ms = xalloc(sizeof *ms);
  ms->prefix = "";
  L->cur = ms;
  lower_stmts(L, model->kid[0], NULL);
  L->cur = L->global;
  if (diag_errors() != errors) return NULL;
  if (L->g->loss < 0 && !cfg->infer) {
    diag_error(model->name_loc, "model '%s' has no 'loss'", shown(model->str));
    diag_hint("add 'loss EXPR', or compile with --infer");
    return NULL;
  }
  return L->g;
}

Graph *frontend_load(const char *path, const Define *defs, int ndefs,
                     const Config *cfg, unsigned cfg_set) {
  return frontend_lower(frontend_read(path), defs, ndefs, cfg, cfg_set);
}
