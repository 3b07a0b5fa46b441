/* mdlc.h: the one internal header of the mdlc compiler.
 *
 * Divided into sections named after the file that defines them. The IR is
 * index-based: a Graph owns arrays of Values, Nodes, Bufs and Instrs, and
 * everything else refers to them by int index (printed as %17), so the
 * arrays may grow and a dump reads the same every time.
 *
 * The pipeline (driver.c, compile()) reads top to bottom:
 *   frontend     .mdl -> forward Graph (values, nodes, shapes, segments)
 *   precision    dtypes by policy, explicit casts
 *   autodiff     the step: Bufs and Instrs (forward, recompute, backward,
 *                optimizer), every instruction's operands
 *   liveness     allocation/free points, peak, live set at the peak
 *   arena        offsets of every non-persistent Buf
 * and then one action: report, emit CUDA, run on the CPU.
 */
#ifndef MDLC_H
#define MDLC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define MDLC_VERSION "0.1.0"

/* ======================================================================
 * util.c: memory, strings, growable arrays
 * ====================================================================== */

/* All compiler allocations come from one arena freed at exit; an allocation
 * failure aborts with a message. Memory is zeroed. */
void *xalloc(size_t n);
void *xrealloc_array(void *p, size_t old_n, size_t new_n, size_t elem);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xsprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mem_free_all(void);

/* Growable array of T in a struct: `T *a; int n, cap;`.
 * VEC_PUSH(g->vals, g->nvals, g->capvals) returns a pointer to the new,
 * zeroed element. Pointers into the array die when it grows. */
void *vec_grow(void *a, int n, int *cap, size_t elem);
#define VEC_PUSH(a, n, cap)                                                  \
  ((a) = vec_grow((a), (n), &(cap), sizeof *(a)), &(a)[(n)++])

/* Dynamic string. */
typedef struct {
  char *s;   /* NUL-terminated contents */
  size_t n;  /* length */
  size_t cap;/* capacity */
} StrBuf;
void sb_printf(StrBuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sb_putc(StrBuf *sb, char c);

/* Checked 64-bit arithmetic: returns false on overflow. */
bool mul_ok(int64_t a, int64_t b, int64_t *out);
bool add_ok(int64_t a, int64_t b, int64_t *out);

/* Sizes: "8GiB", "512MiB", "64KiB", "1GB", "100B", "1234". */
bool parse_size(const char *s, int64_t *out);
/* "1.50 GiB" style, into buf (at least 32 bytes); returns buf. */
const char *fmt_bytes(int64_t bytes, char *buf);
/* Edit distance for did-you-mean suggestions. */
int edit_distance(const char *a, const char *b);
/* The candidate closest to `word`, or NULL if none is close enough. */
const char *closest_word(const char *word, const char *const *cands, int n);

/* ======================================================================
 * diag.c: source files and diagnostics
 * ====================================================================== */

/* A compact source location: file id and byte span [begin, end). */
typedef struct {
  int32_t file;   /* index from src_add(), -1 for "no location" */
  uint32_t begin; /* byte offset of the first character */
  uint32_t end;   /* byte offset one past the last character */
} Loc;

#define NOLOC ((Loc){-1, 0, 0})

/* Registers a source text; returns its file id. The text is kept. */
int src_add(const char *path, const char *text, size_t len);
const char *src_path(int file);
const char *src_text(int file);   /* the whole text, NUL-terminated */
size_t src_len(int file);         /* its length in bytes */
/* 1-based line and column of a byte offset. */
void src_linecol(int file, uint32_t off, int *line, int *col);

/* User errors: GNU format on stderr, the source line, a caret under the
 * span. Errors are counted; after 20 the compiler stops (exit 1). */
void diag_error(Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void diag_note(Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* An indented "hint: ..." line after the last error. */
void diag_hint(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int diag_errors(void);
/* A command-line error: "mdlc: error: ...", exit 2. */
_Noreturn void die_usage(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* A machine failure (exit 3). */
_Noreturn void die_machine(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* An internal compiler error: names the compiler's file and line, aborts. */
_Noreturn void internal_error(const char *file, int line, const char *fmt,
                              ...) __attribute__((format(printf, 3, 4)));
#define ICE(...) internal_error(__FILE__, __LINE__, __VA_ARGS__)
#define ASSERT(c)                                                            \
  do {                                                                       \
    if (!(c)) ICE("assertion failed: %s", #c);                               \
  } while (0)

/* ======================================================================
 * ir/types.c: dtypes and shapes
 * ====================================================================== */

typedef enum {
  DT_F32,
  DT_F16,
  DT_BF16,
  DT_I32,
  DT_I64,
  DT_U8,
  DT_COUNT
} DType;

int dtype_size(DType t);          /* bytes of one element */
const char *dtype_name(DType t);  /* "f32", "bf16", ... */
bool dtype_is_float(DType t);
bool dtype_parse(const char *s, DType *out);

enum { MAX_RANK = 8 };

typedef struct {
  int rank;                /* 0 for a scalar */
  int64_t dim[MAX_RANK];   /* extents, outermost first */
} Shape;

/* Element count; false if it overflows int64. */
bool shape_numel(const Shape *s, int64_t *out);
int64_t shape_numel_ok(const Shape *s); /* ICE on overflow (checked before) */
bool shape_eq(const Shape *a, const Shape *b);
/* "[8, 1024, 768]" into buf (at least 160 bytes); returns buf. */
const char *shape_str(const Shape *s, char *buf);
/* NumPy broadcasting; false if the shapes do not broadcast. */
bool shape_broadcast(const Shape *a, const Shape *b, Shape *out);

/* ======================================================================
 * ir/ops.c: the operator table (generated from ir/ops.def)
 * ====================================================================== */

enum {
  SV_IN0 = 1,   /* saves forward input 0 */
  SV_IN1 = 2,   /* saves forward input 1 */
  SV_OUT = 4,   /* saves output 0 */
  SV_EXTRA = 8, /* saves its extra outputs */
};

typedef enum { PC_MATMUL, PC_F32, PC_WIDEST, PC_KEEP } PrecClass;

typedef enum {
#define X(e, name, save, cls) OP_##e,
#include "ir/ops.def"
#undef X
  OP_COUNT
} Op;

typedef struct {
  const char *name; /* the .mdl spelling */
  int save;         /* SV_* mask */
  PrecClass cls;    /* precision class */
} OpInfo;

extern const OpInfo op_info[OP_COUNT];

/* ======================================================================
 * ir/graph.c: the graph IR
 * ====================================================================== */

typedef enum {
  VK_INPUT, /* `input`: fed each step, never gets a gradient */
  VK_PARAM, /* trainable parameter (created by an op, or `param(...)`) */
  VK_STATE, /* persistent, no gradient: batchnorm running mean/var */
  VK_ACT,   /* produced by a node */
} ValueKind;

/* A tensor. */
typedef struct {
  const char *name;   /* stable path name: "layer[3]/m.weight" */
  ValueKind kind;     /* where it comes from */
  DType dtype;        /* after precision: the stored dtype */
  Shape shape;        /* logical shape */
  int node;           /* producing node (VK_ACT), else -1 */
  int out_index;      /* which output of `node` */
  bool is_extra;      /* an extra output (mask, statistics, logprobs) */
  int view_of;        /* VK_ACT views (reshape, split): the base value, else -1 */
  int64_t view_offset;/* element offset of a split output in its base */
  int64_t stride[MAX_RANK]; /* element strides (views may be strided) */
  bool needs_grad;    /* a gradient is computed for it (autodiff) */
  bool is_output;     /* the loss or an `output`: lives to the end */
  Loc loc;            /* where it was written */
} Value;

/* An operation. Attributes live in a union; the comment on each member
 * says which ops use it. */
typedef struct {
  Op op;              /* what it does */
  const char *name;   /* path name: "layer[3]/a:softmax" */
  int *in;            /* operand values (see ir/ops.def for the order) */
  int nin;            /* number of operands */
  int *out;           /* output values: real outputs, then extras */
  int nout;           /* number of outputs, extras included */
  int nreal;          /* number of real (non-extra) outputs */
  int segment;        /* checkpoint segment id, -1 if none */
  int dtype_override; /* `dtype = ...` on the call: a DType, or -1 */
  Loc loc;            /* the call in the source */
  union {
    struct { int64_t out; bool bias; } linear;          /* LINEAR */
    struct { bool ta, tb; } matmul;                     /* MATMUL */
    struct {
      int64_t out, kernel, stride, pad, dilation, groups;
      bool bias;
    } conv;                                             /* CONV2D */
    struct { int64_t kernel, stride, pad; } pool;       /* MAXPOOL2D, AVGPOOL2D */
    struct { double eps; int64_t groups; bool affine; } norm;
        /* BATCHNORM, LAYERNORM, INSTANCENORM, GROUPNORM (groups: GROUPNORM;
         * INSTANCENORM sets groups = C) */
    struct { bool causal; } softmax;                    /* SOFTMAX */
    struct { double p; } dropout;                       /* DROPOUT */
    struct { double c; } scale;                         /* SCALE */
    struct { int64_t vocab, dim; } embedding;           /* EMBEDDING */
    struct { int a, b; } transpose;                     /* TRANSPOSE (normalized >= 0) */
    struct { int axis; } concat;                        /* CONCAT (normalized >= 0) */
    struct { int n, axis; } split;                      /* SPLIT (normalized >= 0) */
    struct { DType to; } cast;                          /* CAST */
  } a;
} Node;

/* ---- the step: buffers and instructions (passes/autodiff.c) ---- */

typedef enum {
  CAT_PARAM,     /* parameters (and batchnorm running statistics) */
  CAT_GRAD,      /* parameter gradients */
  CAT_OPT_STATE, /* optimizer state */
  CAT_MASTER,    /* f32 master weights (*_master policies) */
  CAT_INPUT,     /* `input`s */
  CAT_ACT,       /* activations, saved tensors, masks, statistics */
  CAT_ACT_GRAD,  /* gradients of activations */
  CAT_CAST,      /* casts inserted by the precision policy */
  CAT_WORKSPACE, /* the one shared scratch buffer */
  CAT_COUNT
} Category;

extern const char *const category_name[CAT_COUNT];

/* One device allocation of the step. */
typedef struct {
  const char *name;   /* "layer[3]/a:softmax", "d layer[3]/m.weight", ... */
  Category cat;       /* for the breakdown */
  DType dtype;        /* element type */
  int64_t numel;      /* elements */
  int64_t bytes;      /* numel * dtype_size, not rounded */
  bool persistent;    /* lives the whole step */
  bool zero_init;     /* zero-filled at allocation (view gradients) */
  bool gathered;      /* ZeRO 3: filled by an all-gather at allocation */
  bool keep_to_end;   /* loss and outputs: never freed */
  int value;          /* the forward value it holds, or -1 */
  int param;          /* OPT_STATE/MASTER/GRAD: the parameter value, or -1 */
  /* set by liveness: */
  int alloc_at;       /* instruction that allocates it (-1: persistent) */
  int free_at;        /* instruction after which it is freed (-1: never) */
  /* set by arena: */
  int64_t offset;     /* byte offset in the arena (non-persistent), else -1 */
} Buf;

typedef enum {
  IK_FWD,       /* run node `node` forward */
  IK_RECOMPUTE, /* run node `node` forward again (checkpointed segment) */
  IK_SEED,      /* fill the loss gradient with 1 */
  IK_BWD,       /* run node `node` backward */
  IK_OPT,       /* optimizer update of parameter value `node` */
  IK_REDUCE,    /* ZeRO >= 2: reduce-scatter parameter `node`'s full
                   gradient into its shard (accounting only: --run refuses
                   --gpus > 1) */
  IK_COUNT
} InstrKind;

/* An operand: a buffer and the value whose geometry (shape, view offset
 * and strides) says where in the buffer the operand lies. buf = -1 means
 * "absent" (not saved, no gradient). */
typedef struct {
  int buf;    /* Buf index, or -1 */
  int value;  /* Value index giving shape/dtype/view geometry, or -1 */
} Ref;

/* One instruction of the step. Operand layout, by kind (n = the node):
 *   IK_FWD, IK_RECOMPUTE:
 *     in  = n.in[0..nin)                       (the forward operands)
 *     out = n.out[0..nout)                     (real outputs, then extras)
 *   IK_SEED:  in = {}, out = {dloss}
 *   IK_BWD:
 *     in  = n.in[0..nin)  (buf -1 where neither saved nor resident)
 *         ++ n.out[0..nout) (buf -1 where not saved)
 *         ++ d n.out[0..nreal) (gradients of the real outputs; buf -1 if
 *            none reached that output: treat as zero)
 *     out = d n.in[0..nin) (buf -1 where no gradient is wanted)
 *     accum[i] = true: add into out[i]; false: overwrite it. When out[i]
 *     and the output gradient are the same buffer (add's hand-off), there
 *     is nothing to do for that operand.
 *   IK_OPT (node = the parameter value):
 *     in = {param, grad, master or -1, state0 or -1, state1 or -1}
 *     out = {} (updates param, master and state in place)
 *   IK_REDUCE (node = the parameter value): in = {full gradient},
 *     out = {gradient shard}
 * With --zero 3 a parameter operand of IK_FWD/IK_RECOMPUTE/IK_BWD names
 * a gathered full copy (one per pass, forward and backward) instead of the
 * persistent shard.
 * The Ref's value gives the geometry: for a gradient it is the value whose
 * gradient it is, so a view's gradient lands at the view's place in its
 * base's gradient buffer. */
typedef struct {
  InstrKind kind;   /* what runs */
  int node;         /* node, or the parameter value for IK_OPT, or the loss for IK_SEED */
  Ref *in;          /* operands read */
  int nin;
  Ref *out;         /* operands written */
  int nout;
  bool *accum;      /* per out: accumulate (true) or overwrite */
  /* set by liveness: */
  int *alloc;       /* buffers allocated just before it runs */
  int nalloc;
  int *free;        /* buffers freed just after it runs */
  int nfree;
  int64_t live;     /* live bytes after its allocations (the peak is read here) */
} Instr;

/* ---- configuration (defaults, then the train block, then the command line) ---- */

typedef enum {
  PREC_FP32,
  PREC_FP16,
  PREC_BF16,
  PREC_FP16_MIXED,
  PREC_BF16_MIXED,
  PREC_FP16_MASTER,
  PREC_BF16_MASTER,
  PREC_COUNT
} Precision;
extern const char *const precision_name[PREC_COUNT];

typedef enum { OPTIM_SGD, OPTIM_MOMENTUM, OPTIM_ADAM, OPTIM_ADAMW, OPTIM_COUNT } Optimizer;
extern const char *const optimizer_name[OPTIM_COUNT];

typedef struct {
  Precision precision;   /* default fp32 */
  Optimizer optimizer;   /* default adamw */
  int state_dtype;       /* a DType, or -1 for the policy's default */
  int64_t workspace;     /* bytes, default 32 MiB */
  int64_t budget;        /* bytes, -1 if none */
  bool infer;            /* forward only */
  bool opt_in_backward;  /* update each parameter as soon as its gradient is complete */
  int gpus;              /* data-parallel devices, default 1 */
  int zero;              /* ZeRO stage 0..3 */
} Config;

/* Which config keys were given on the command line (they win over train). */
enum {
  CFG_PRECISION = 1, CFG_OPTIMIZER = 2, CFG_STATE_DTYPE = 4,
  CFG_WORKSPACE = 8, CFG_BUDGET = 16,
};

typedef struct {
  const char *model_name;   /* `model NAME` */
  int64_t batch;            /* value of the top-level `let batch`, -1 if none */
  Config cfg;               /* settings in force */

  Value *vals;   int nvals, capvals;   /* all tensors */
  Node *nodes;   int nnodes, capnodes; /* forward ops in program order */
  int loss;                            /* the loss value, or -1 */
  int nsegments;                       /* checkpoint segments 0..nsegments-1 */
  Loc *segment_loc;                    /* where each segment was written */

  /* the step (autodiff) */
  Buf *bufs;     int nbufs, capbufs;
  Instr *ins;    int nins, capins;
  int *val_buf;                        /* forward value -> Buf (views: base's), -1 */
  int *grad_buf;                       /* value -> its gradient's Buf, -1 */
  int workspace_buf;                   /* the workspace Buf, -1 if none */

  /* liveness */
  int64_t persistent_bytes;            /* bytes of persistent Bufs */
  int64_t peak;                        /* largest live bytes */
  int peak_at;                         /* first instruction where it is reached */
  int64_t by_cat[CAT_COUNT];           /* live bytes at the peak, by category */

  /* arena */
  int64_t arena_bytes;                 /* size of the planned arena */
} Graph;

Graph *graph_new(void);
int graph_add_value(Graph *g, const char *name, ValueKind kind, DType dt,
                    const Shape *shape, Loc loc);
/* Adds a node with the given operands; outputs are added by the caller with
 * graph_add_output. Returns the node index. */
int graph_add_node(Graph *g, Op op, const char *name, const int *in, int nin,
                   Loc loc);
int graph_add_output(Graph *g, int node, const char *name, DType dt,
                     const Shape *shape, bool is_extra);
/* Sets contiguous strides on a value from its shape. */
void value_set_contiguous(Value *v);
bool value_is_contiguous(const Value *v);
/* Forgets the step (buffers, instructions, liveness, arena) so that
 * pass_autodiff can build it again, e.g. after segments changed. */
void graph_clear_step(Graph *g);
/* The value whose storage a value uses (follows view_of to the root). */
int value_root(const Graph *g, int v);
/* Whether buffer b is live right after instruction i's allocations
 * (persistent buffers always; i = -1 is before the first instruction). */
bool buf_live_at(const Buf *b, int i);
/* The part of the step an instruction belongs to, for reports:
 * "forward", "recompute", "backward" (the seed, backward steps and
 * reduce-scatters) or "optimizer". */
extern const char *const instr_phase[IK_COUNT];
/* Textual IR: one line a value/node, stable across runs. */
void graph_dump(const Graph *g, FILE *f, bool with_step);
/* Checks the IR's invariants; ICE on violation (run between passes in
 * check builds). */
void graph_verify(const Graph *g);

/* ======================================================================
 * ir/ops.c: per-op functions
 * ====================================================================== */

/* FLOPs of one forward run of node n (documented per op in ir/ops.c). */
int64_t op_flops(const Graph *g, int n);

/* ======================================================================
 * ir/init.c: how a run initialises parameters and fills inputs
 * ====================================================================== */

typedef enum { INIT_NORMAL, INIT_KAIMING, INIT_ONE, INIT_ZERO } InitKind;

/* For every value v: kind[v] and fan[v] (fan-in, for INIT_KAIMING) of its
 * initialisation, and limit[v], the exclusive bound of an integer input's
 * draws. Arrays of g->nvals entries, filled. */
void graph_init_plan(const Graph *g, InitKind *kind, int64_t *fan,
                     int64_t *limit);

/* ======================================================================
 * frontend/: .mdl to forward Graph
 * ====================================================================== */

typedef struct {
  const char *name;   /* a top-level `let` */
  int64_t value;      /* its new value */
} Define;

/* Parses and lowers `path` (or stdin for "-") into a forward graph: values
 * with shapes and f32/declared dtypes, nodes in program order, segments,
 * path names. `cfg` holds defaults overridden by the command line
 * (cfg_set says which keys the command line set); the train block fills
 * the rest. Returns NULL after reporting errors. */
Graph *frontend_load(const char *path, const Define *defs, int ndefs,
                     const Config *cfg, unsigned cfg_set);

/* ---- frontend/ast.c: the syntax tree the parser builds ---- */

typedef enum {
  /* expressions */
  AST_INT,        /* integer literal: ival */
  AST_FLOAT,      /* float literal: fval */
  AST_SIZE,       /* size literal (`512MiB`): ival bytes */
  AST_BOOL,       /* true / false: ival */
  AST_NAME,       /* a name: str */
  AST_BINOP,      /* kid[0] op kid[1]: op is one of + - * / % */
  AST_NEG,        /* -kid[0] */
  AST_CALL,       /* str(kid...): positional args, then AST_OPTION kids */
  AST_OPTION,     /* str = kid[0] (inside a call) */
  AST_TYPE,       /* str[kid...]: a dtype and dims, as in param(f32[4, 3]) */
  AST_REPEAT,     /* repeat kid[0] kid[1]: kid[1] a call or AST_CHECKPOINT */
  AST_CHECKPOINT, /* checkpoint kid[0]: a call or AST_REPEAT */
  /* statements */
  AST_LET,        /* let str = kid[0] */
  AST_INPUT,      /* input str : kid[0] (an AST_TYPE) */
  AST_BIND,       /* kid[0..n-2] (AST_NAMEs) = kid[n-1] */
  AST_LOSS,       /* loss kid[0] */
  AST_OUTPUT,     /* output kid[0] */
  AST_RETURN,     /* return kid[0] */
  AST_CKBLOCK,    /* checkpoint { kid... } */
  /* top level */
  AST_BLOCK,      /* block str(kid[0]: AST_LIST of names) { kid[1]: body } */
  AST_MODEL,      /* model str { kid[0]: body } */
  AST_TRAIN,      /* train { kid...: AST_OPTIONs, key str, value kid[0] } */
  AST_LIST,       /* a list of kids (parameters, statement bodies) */
  AST_FILE,       /* the whole file: kid... top-level items */
  AST_ERROR,      /* stands in for a part that had a syntax error */
} AstKind;

typedef struct Ast Ast;
struct Ast {
  AstKind kind;     /* which of the above */
  Loc loc;          /* the whole construct in the source */
  Loc name_loc;     /* str's own span (names, calls, keys), else loc */
  const char *str;  /* name, op, block, key: see the kind */
  int64_t ival;     /* AST_INT, AST_SIZE, AST_BOOL */
  double fval;      /* AST_FLOAT */
  char op;          /* AST_BINOP */
  int depth;        /* height of the tree below (nesting limit) */
  Ast **kid;        /* children: see the kind */
  int nkid;
  int capkid;
};

/* Builders, one per grammar action. A child may be NULL (a part lost to a
 * syntax error); builders skip it. Trees deeper than AST_MAX_DEPTH are
 * reported once and cut off (AST_ERROR), so no later recursion can run out
 * of stack. */
enum { AST_MAX_DEPTH = 200 };
Ast *ast_new(AstKind k, Loc loc);
Ast *ast_leaf_str(AstKind k, Loc loc, const char *str);
Ast *ast_node(AstKind k, Loc loc, const char *str, Loc name_loc, Ast *a,
              Ast *b);
Ast *ast_push(Ast *list, Ast *kid); /* appends kid, widens list->loc */
Ast *ast_prepend(Ast *list, Ast *kid);
/* Turns a list built by ast_push into a node of kind k (a call's args). */
Ast *ast_retag(Ast *list, AstKind k, Loc loc, const char *str, Loc name_loc);
const char *ast_kind_name(AstKind k);

/* ---- frontend/parse.c: text to tree ---- */

/* Parses one registered source file (src_add) into an AST_FILE; syntax
 * errors are reported and counted (diag_errors), and the tree holds
 * AST_ERROR or NULL where they were. */
Ast *parse_source(int file);

/* ---- frontend/lower.c: tree to graph (scopes, blocks, names, segments) ---- */

/* The value of an expression while lowering. */
typedef enum {
  EV_ERR,    /* an error, already reported: propagate quietly */
  EV_INT,    /* i */
  EV_FLOAT,  /* f */
  EV_BOOL,   /* i (0 or 1) */
  EV_SIZE,   /* i bytes */
  EV_WORD,   /* w: a bare word as an option value (`dtype = bf16`) */
  EV_TENSOR, /* v: a value of the graph */
  EV_TUPLE,  /* vs[0..nv): the outputs of split */
  EV_TYPE,   /* ast: an AST_TYPE (`f32[4, 3]`), the argument of param() */
} EvKind;

typedef struct {
  EvKind k;        /* which fields hold */
  int64_t i;       /* EV_INT, EV_BOOL, EV_SIZE */
  double f;        /* EV_FLOAT */
  const char *w;   /* EV_WORD */
  int v;           /* EV_TENSOR */
  int *vs;         /* EV_TUPLE */
  int nv;          /* EV_TUPLE */
  const Ast *ast;  /* where it was written */
} Ev;

typedef struct Lower Lower; /* the lowering's state (frontend/lower.c) */

/* Evaluates an expression in the current scope. ctx names unbound
 * intermediates (`ctx:op`); want, if not NULL, names the node that makes
 * the result. words: a name bound to nothing is a word (option values). */
Ev lower_expr(Lower *L, const Ast *e, const char *ctx, const char *want,
              bool words);
Graph *lower_graph(Lower *L);
/* The scope's full, unique name for a node called `local` ("m" becomes
 * "layer[3]/m", or "layer[3]/m#2" if taken). */
const char *lower_node_name(Lower *L, const char *local);
/* A unique value name from a full one (adds "#2", ... if taken). */
const char *lower_value_name(Lower *L, const char *full);
/* Adds a node in the current checkpoint segment, with its dtype override. */
int lower_node(Lower *L, Op op, const char *full, const int *in, int nin,
               Loc loc, int dtype_override);
/* A parameter or state value (no node), named uniquely from `full`. */
int lower_param(Lower *L, const char *full, ValueKind k, DType dt,
                const Shape *s, Loc loc);
/* Checks a shape's rank, extents and element count; reports at loc. */
bool lower_shape_ok(Lower *L, const Shape *s, Loc loc, const char *what);
/* closest_word, plus a swap of two neighbouring letters ('bais'). */
const char *frontend_suggest(const char *word, const char *const *cands,
                             int n);
/* "a tensor f32[8, 3]", "the integer 4", ...: for messages. */
const char *ev_describe(const Lower *L, Ev e);

/* ---- frontend/builtins.c: the operators of language.md ---- */

bool builtin_exists(const char *name);
/* The names of every operator (for did-you-mean), NULL-terminated. */
const char *const *builtin_names(void);
/* Lowers a call of operator `call->str`: checks arguments and options,
 * infers shapes, creates nodes. outnames/nout: the names of a tuple
 * binding (split), else NULL/0. */
Ev lower_builtin(Lower *L, const Ast *call, const char *ctx, const char *want,
                 const char *const *outnames, int nout);
/* a + b, a * b (tensors), x * c: the operators written as symbols. */
Ev builtin_binary(Lower *L, Op op, Ev a, Ev b, const char *name, Loc loc);
Ev builtin_scale(Lower *L, Ev x, double c, const char *name, Loc loc);

/* ======================================================================
 * passes/: one file each, one entry point each
 * ====================================================================== */

void pass_precision(Graph *g);   /* passes/precision.c */
void pass_autodiff(Graph *g);    /* passes/autodiff.c */
void pass_liveness(Graph *g);    /* passes/liveness.c */
void pass_arena(Graph *g);       /* passes/arena.c */
/* NULL if no two live buffers overlap in the arena, else what does. */
const char *arena_verify(const Graph *g);

/* ---- passes/placement.c: checkpoints under a memory budget ---- */

typedef struct {
  bool fits;            /* the verified peak is within the budget */
  int64_t peak;         /* verified peak of the placement (pass_liveness) */
  int64_t model_peak;   /* the peak the placement's model predicted */
  bool verified_model;  /* model and verification agree to the byte */
  int64_t base_peak;    /* peak without any segment */
  int base_peak_at;     /* where (an instruction of the unsegmented step) */
  int64_t extra_flops;  /* FLOPs recomputed: sum of the segments' forwards */
  int64_t fwd_flops;    /* FLOPs of one forward pass of the model */
  int nsegments;        /* segments placed */
  int stages;           /* chain stages the model found */
  bool chain;           /* every op boundary was a one-tensor boundary */
  int rounds;           /* DP runs until the verified peak fit */
} Placement;

/* cut_ok: NULL, or per node whether a segment may start or end right
 * before it. Returns res->fits. */
bool pass_placement(Graph *g, int64_t budget, const bool *cut_ok,
                    Placement *res);

/* ======================================================================
 * backend/emit_mdl.c: --emit-mdl, the source with placed checkpoints
 * ====================================================================== */

/* Per node of g's forward graph: whether the source can write a segment
 * boundary right before it (between model-level statements, between the
 * calls of a `NAME = repeat N B(NAME0, ...)`): the cut_ok of
 * pass_placement. defs: the -D overrides (for repeat counts). */
bool *mdl_cut_points(const Graph *g, const Define *defs, int ndefs);
/* Prints header, then the source with g's segments written in (placed
 * with mdl_cut_points' boundaries): repeats split, `checkpoint` calls and
 * blocks; the source's own checkpoints and train `budget` removed. */
void mdl_emit(const Graph *g, const Define *defs, int ndefs,
              const char *header, FILE *f);

/* ======================================================================
 * backend/report.c, backend/timeline.c: what --peak, --ops, --timeline print
 * ====================================================================== */

typedef struct {
  bool json;              /* one JSON document instead of the text report */
  int64_t device_memory;  /* --device-memory SIZE, or -1 */
} ReportOpts;

/* Estimated bytes of the CUDA context and library handles, added when
 * answering "does it fit" (--device-memory): `--run` measured 602.8 MiB
 * (632,094,720 B) on an H100 with CUDA 13, cuBLAS and cuDNN 9, rounded up
 * (bench/RESULTS.md). */
#define CONTEXT_ESTIMATE_BYTES (int64_t)(640LL << 20)

void report_peak(const Graph *g, const ReportOpts *o, FILE *f);
bool report_fits(const Graph *g, int64_t device_memory);
void report_ops(const Graph *g, bool json, FILE *f);
void timeline_write(const Graph *g, const char *path);
/* A description of instruction i: "backward of layernorm 'layer[3]/...'". */
const char *instr_describe(const Graph *g, int i);
/* The largest buffers alive at the peak, largest first, at most `max`
 * of them into `bufs`; returns how many. */
int largest_at_peak(const Graph *g, int *bufs, int max);
/* Total parameter elements (VK_PARAM values). */
int64_t graph_param_count(const Graph *g);

/* ======================================================================
 * backend/: running the step
 * ====================================================================== */

/* What --run does. Numerics shared by every executor (so that --check can
 * compare the CPU and the GPU element by element):
 *   parameters: linear and conv2d weight and bias Kaiming-uniform as PyTorch
 *     (bound 1/sqrt(fan_in) for both), norm weight 1 and bias 0, embedding
 *     and `param` normal(0, 1) (Box-Muller on two uniforms), batchnorm
 *     running mean 0 and var 1; draws from mdlrt_rng.h's PARAM stream of the
 *     value index, element by element in row-major order;
 *   inputs: float inputs uniform in [-1, 1); integer inputs feeding
 *     cross_entropy are class ids in [0, C), feeding embedding in
 *     [0, vocab), else in [0, 2); INPUT stream of the value index;
 *   dropout: element kept iff uniform(DROP stream of the node, dropout_index
 *     (step, i)) >= p, kept values scaled by 1/(1-p).
 */
typedef struct {
  int steps;            /* --steps; 0: not given (CPU 1, GPU
                           CUDA_DEFAULT_STEPS) */
  uint64_t seed;        /* --seed, default 0 */
  double lr;            /* --lr, default: the optimizer's PyTorch default */
  bool fresh_data;      /* --data fresh: new batch each step */
  bool arena;           /* --alloc arena */
  bool check;           /* --check: compare one step with the CPU reference */
  bool profile;         /* --profile: per-op times */
  bool eager;           /* --eager: no CUDA graph replay */
  bool json;            /* --json */
  bool quiet;           /* -q */
  const char *out_path; /* -o FILE, or NULL */
} RunOpts;

int cpu_run(Graph *g, const RunOpts *o);             /* backend/cpu_exec.c */
/* --run on the GPU without --steps: the first step eager, nine replays. */
enum { CUDA_DEFAULT_STEPS = 10 };
int cuda_emit(const Graph *g, const RunOpts *o, FILE *f); /* backend/cuda_emit.c */
int cuda_run(Graph *g, const RunOpts *o);            /* backend/cuda_run.c */

/* ======================================================================
 * backend/cpu_kernels.c: the CPU reference kernels (docs/ops.md)
 *
 * Every kernel works on contiguous row-major f32 arrays (the executor
 * gathers operands through their view geometry and scatters results back,
 * rounding to the stored dtype). Backward kernels overwrite their outputs;
 * a NULL output pointer means "not wanted". Reductions accumulate in double.
 * ====================================================================== */

float cpu_f16_to_f32(uint16_t h);
uint16_t cpu_f32_to_f16(float f);   /* round to nearest even */
float cpu_bf16_to_f32(uint16_t h);
uint16_t cpu_f32_to_bf16(float f);  /* round to nearest even */
/* The value x becomes when stored as float dtype t. */
float cpu_round_to(DType t, float x);

/* y[m,n] = x[m,k] w[n,k]^T + b[n] (b may be NULL). */
void cpu_linear_fwd(const float *x, const float *w, const float *b, float *y,
                    int64_t m, int64_t k, int64_t n);
void cpu_linear_bwd(const float *x, const float *w, const float *dy,
                    float *dx, float *dw, float *db, int64_t m, int64_t k,
                    int64_t n);

/* Batched matmul with NumPy-broadcast batch dims; ranks >= 2. */
void cpu_matmul_fwd(const Shape *sa, const float *a, bool ta, const Shape *sb,
                    const float *b, bool tb, const Shape *sy, float *y);
void cpu_matmul_bwd(const Shape *sa, const float *a, bool ta, const Shape *sb,
                    const float *b, bool tb, const Shape *sy, const float *dy,
                    float *da, float *db);

typedef struct {
  int64_t n, c, h, w;        /* input [n, c, h, w] */
  int64_t o, k;              /* output channels, square kernel */
  int64_t stride, pad, dil, groups;
  int64_t oh, ow;            /* output extent (cpu_conv_out) */
} CpuConv;
void cpu_conv_out(CpuConv *p);  /* fills oh, ow */
void cpu_conv2d_fwd(const CpuConv *p, const float *x, const float *w,
                    const float *b, float *y);
void cpu_conv2d_bwd(const CpuConv *p, const float *x, const float *w,
                    const float *dy, float *dx, float *dw, float *db);

typedef struct {
  int64_t nc, h, w;          /* input [nc, h, w] (N*C planes) */
  int64_t k, stride, pad;    /* square window */
  int64_t oh, ow;            /* output extent (cpu_pool_out) */
} CpuPool;
void cpu_pool_out(CpuPool *p);
void cpu_maxpool_fwd(const CpuPool *p, const float *x, float *y);
void cpu_maxpool_bwd(const CpuPool *p, const float *x, const float *y,
                     const float *dy, float *dx);
void cpu_avgpool_fwd(const CpuPool *p, const float *x, float *y);
void cpu_avgpool_bwd(const CpuPool *p, const float *dy, float *dx);
/* global_avgpool: y[q] = mean of plane q (nc planes of hw elements). */
void cpu_gap_fwd(const float *x, float *y, int64_t nc, int64_t hw);
void cpu_gap_bwd(const float *dy, float *dx, int64_t nc, int64_t hw);

/* Normalisation of x viewed as [n, c, s]. CPU_NORM_BATCH: statistics per
 * channel over (n, s); CPU_NORM_GROUP: per (n, group) over (c/groups, s)
 * (layernorm = [rows, D, 1] with groups 1; instancenorm: groups = c). */
typedef enum { CPU_NORM_BATCH, CPU_NORM_GROUP } CpuNormKind;
typedef struct {
  CpuNormKind kind;
  int64_t n, c, s, groups;
  float eps;
} CpuNorm;
int64_t cpu_norm_nstats(const CpuNorm *p);
/* w, b: per channel, NULL for 1 and 0. use_running (batch, inference):
 * normalize with run_mean/run_var, write no statistics. Otherwise writes
 * mean and rstd and, when run_mean is not NULL, updates the running
 * statistics (momentum 0.1, unbiased variance). */
void cpu_norm_fwd(const CpuNorm *p, const float *x, const float *w,
                  const float *b, float *y, float *mean, float *rstd,
                  float *run_mean, float *run_var, bool use_running);
void cpu_norm_bwd(const CpuNorm *p, const float *x, const float *w,
                  const float *mean, const float *rstd, const float *dy,
                  float *dx, float *dw, float *db);

/* relu gelu silu tanh sigmoid. The backward reads x (gelu, silu) or y
 * (relu, tanh, sigmoid). */
void cpu_act_fwd(Op op, const float *x, float *y, int64_t n);
void cpu_act_bwd(Op op, const float *x, const float *y, const float *dy,
                 float *dx, int64_t n);

void cpu_dropout_mask(uint64_t seed, int node, uint64_t step, double p,
                      uint8_t *mask, int64_t n);
float cpu_dropout_scale(double p);
void cpu_dropout_apply(const float *x, const uint8_t *mask, double p,
                       float *y, int64_t n);

/* y = a (+ or *) b with NumPy broadcasting to shape sy. */
void cpu_binary_fwd(Op op, const Shape *sa, const float *a, const Shape *sb,
                    const float *b, const Shape *sy, float *y);
void cpu_binary_bwd(Op op, const Shape *sa, const float *a, const Shape *sb,
                    const float *b, const Shape *sy, const float *dy,
                    float *da, float *db);

/* Softmax over rows of `cols`; causal masks col > (row % srows). */
void cpu_softmax_fwd(const float *x, float *y, int64_t rows, int64_t cols,
                     bool causal, int64_t srows);
void cpu_softmax_bwd(const float *y, const float *dy, float *dx,
                     int64_t rows, int64_t cols);

/* Returns the index of the first id outside [0, vocab), or -1. */
int64_t cpu_embedding_fwd(const int64_t *ids, int64_t n, const float *w,
                          int64_t vocab, int64_t dim, float *y);
void cpu_embedding_bwd(const int64_t *ids, int64_t n, const float *dy,
                       int64_t vocab, int64_t dim, float *dw);

void cpu_transpose(const Shape *sx, int a, int b, const float *x, float *y);
/* Joins parts (shapes sx[i]) along axis; cpu_unconcat is its inverse
 * (a NULL part is skipped). */
void cpu_concat(int n, const Shape *sx, const float *const *x, int axis,
                float *y);
void cpu_unconcat(int n, const Shape *sx, const float *y, int axis,
                  float *const *x);

/* Returns the index of the first target outside [0, c), or -1. */
int64_t cpu_xent_fwd(const float *x, const int64_t *t, int64_t rows,
                     int64_t c, float *logprobs, float *loss);
void cpu_xent_bwd(const float *logprobs, const int64_t *t, int64_t rows,
                  int64_t c, float dloss, float *dx);
void cpu_mse_fwd(const float *a, const float *b, int64_t n, float *loss);
void cpu_mse_bwd(const float *a, const float *b, int64_t n, float dloss,
                 float *da, float *db);

/* One optimizer update of n elements (docs/ops.md); t is 1-based.
 * p is the f32 parameter (or master); s0, s1 the state (NULL if unused). */
typedef struct {
  Optimizer kind;
  double lr;
  int64_t t;
} CpuOptim;
double cpu_default_lr(Optimizer o);
void cpu_optim_step(const CpuOptim *o, float *p, const float *g, float *s0,
                    float *s1, int64_t n);

/* backend/cpu_exec.c: cpu_run with its measurements handed back (tests).
 * losses: `steps` entries or NULL; NaN where the step has no loss. */
typedef struct {
  float *losses;          /* per step, caller-allocated, or NULL */
  int64_t measured_peak;  /* largest live bytes seen, all steps */
  /* test probes (finite differences through the whole step): */
  int perturb_value;      /* a parameter value, or -1 (0 counts!) */
  int64_t perturb_index;  /* its element that gets ... */
  float perturb_delta;    /* ... this added after initialisation */
  int probe_value;        /* a parameter value, or -1 */
  float *probe_before;    /* its contents before step 1 (numel), or NULL */
  float *probe_after;     /* its contents after the last step, or NULL */
  /* --check: every gradient of the first step, as the optimizer reads it,
   * in the -o format, to this file (NULL: not written) */
  const char *grads_path;
} CpuStats;
int cpu_run_stats(Graph *g, const RunOpts *o, CpuStats *st);

/* ======================================================================
 * backend/cpu/scan.c: selective scan and conv1d, the reference
 *
 * Contiguous row-major f32, accumulated in double (docs/scan.md). Scan:
 * x, dt, y [n, d, l]; b, c [n, s, l]; A_log [d, s]; Dskip [d];
 * A = -exp(A_log). Backward outputs are overwritten; NULL = not wanted.
 * ====================================================================== */

void cpu_scan_fwd(int64_t n, int64_t d, int64_t s, int64_t l, const float *x,
                  const float *dt, const float *b, const float *c,
                  const float *A_log, const float *Dskip, float *y);
void cpu_scan_bwd(int64_t n, int64_t d, int64_t s, int64_t l, const float *x,
                  const float *dt, const float *b, const float *c,
                  const float *A_log, const float *Dskip, const float *dy,
                  float *dx, float *ddt, float *db, float *dc, float *dA_log,
                  float *dDskip);

/* conv1d: x [n, c, l], w [out, c/groups, k], b [out] (NULL: none),
 * y [n, out, ol]; causal is pad_left = dil*(k-1), pad_right = 0. */
typedef struct {
  int64_t n, c, l;           /* input [n, c, l] */
  int64_t out, k;            /* output channels, kernel width */
  int64_t stride, pad_left, pad_right, dil, groups;
  int64_t ol;                /* output length (cpu_conv1d_out) */
} CpuConv1d;
void cpu_conv1d_out(CpuConv1d *p);  /* fills ol */
void cpu_conv1d_fwd(const CpuConv1d *p, const float *x, const float *w,
                    const float *b, float *y);
void cpu_conv1d_bwd(const CpuConv1d *p, const float *x, const float *w,
                    const float *dy, float *dx, float *dw, float *db);

#endif /* MDLC_H */
