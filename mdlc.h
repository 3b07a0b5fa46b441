/* mdlc.h: the one internal header of the mdlc compiler.
 *
 * Divided into sections named after the file that defines them. The IR is
 * index-based: a Graph owns arrays of Values, Nodes, Bufs and Instrs, and
 * everything else refers to them by int index (printed as %17), so the
 * arrays may grow and a dump reads the same every time.
 *
 * The pipeline (passes/pipeline.c, one table) reads top to bottom:
 *   frontend     .mdl -> forward Graph (values, nodes, shapes, segments)
 *   precision    dtypes by policy, explicit casts
 *   placement    (a budget in force) checkpoint segments; builds the step
 *   autodiff     the step: Bufs and Instrs (forward, recompute, backward,
 *                optimizer), every instruction's operands
 *   liveness     allocation/free points, peak, live set at the peak
 *   arena        offsets of every non-persistent Buf
 * and then one action (driver.c): report, emit CUDA, run on the CPU.
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
void sb_vprintf(StrBuf *sb, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
void sb_putc(StrBuf *sb, char c);

/* Checked 64-bit arithmetic: returns false on overflow. */
bool mul_ok(int64_t a, int64_t b, int64_t *out);
bool add_ok(int64_t a, int64_t b, int64_t *out);

/* Sizes: "8GiB", "1.5GiB", "47.4GB", "15gb", "100B", "1234" (units in any
 * case, a fraction of a byte dropped). size_parse says why not in *why
 * ("is negative", "is too large", "is not a size: ..."). */
bool size_parse(const char *s, int64_t *out, const char **why);
bool parse_size(const char *s, int64_t *out);
/* "1.50 GiB" style, into buf (at least 32 bytes); returns buf. */
const char *fmt_bytes(int64_t bytes, char *buf);
/* s as a JSON string, quotes and escapes included (NULL: ""). */
void json_str(FILE *f, const char *s);
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
/* "file.mdl:5:7", or `none` for NOLOC. */
const char *loc_str(Loc l, const char *none);

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

/* Save rules: which forward operands an op's backward reads. */
#define SV_IN(k) (1 << (k)) /* saves forward input k (k < 8) */
enum {
  SV_IN0 = SV_IN(0),
  SV_IN1 = SV_IN(1),
  SV_IN2 = SV_IN(2),
  SV_IN3 = SV_IN(3),
  SV_OUT = 1 << 8,    /* saves output 0 */
  SV_EXTRA = 1 << 9,  /* saves its extra outputs */
};

/* Op flags (ir/ops.def says what each means). */
enum {
  OF_FLOAT = 1, OF_KEEP_DT = 2, OF_VIEW = 4, OF_LOSS = 8, OF_INTERNAL = 16,
};

typedef enum { PC_MATMUL, PC_F32, PC_WIDEST, PC_KEEP } PrecClass;

typedef enum {
#define X(e, name, nin, nparam, nextra, flags, save, cls, rt) OP_##e,
#include "ir/ops.def"
#undef X
  OP_COUNT
} Op;

typedef struct {
  const char *name; /* the .mdl spelling */
  int nin;          /* tensor arguments, -1: any number */
  int nparam;       /* parameters it may create */
  int nextra;       /* extra outputs */
  int flags;        /* OF_* */
  int save;         /* SV_* mask */
  PrecClass cls;    /* precision class */
  const char *rt;   /* runtime code of an elementwise op, or NULL */
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

/* Which model-level statement made a node or value: --emit-mdl writes
 * checkpoints between statements and between the calls of a repeat. */
typedef struct {
  int stmt;  /* index among the model's statements in source order (those
                in a `checkpoint { }` counted, the block itself not); -1:
                none (a graph not made by the frontend) */
  int call;  /* which call of that statement's `repeat` (0 outside one) */
} Origin;

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
  Origin origin;      /* the statement that made it (an output: its node's) */
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
  Origin origin;      /* the statement that made it (a cast: its operand's) */
  union {
    struct { int64_t out; bool bias; } linear;          /* LINEAR */
    struct { bool ta, tb; } matmul;                     /* MATMUL */
    struct {
      int64_t out, kernel, stride, pad, dilation, groups;
      bool bias, causal;  /* causal: CONV1D, dilation*(kernel-1) left only */
    } conv;                                             /* CONV2D, CONV1D */
    struct { int64_t kernel, stride, pad; } pool;       /* MAXPOOL2D, AVGPOOL2D */
    struct { double eps; int64_t groups; bool affine; } norm;
        /* BATCHNORM, LAYERNORM, INSTANCENORM, GROUPNORM, RMSNORM (groups:
         * GROUPNORM; INSTANCENORM sets groups = C) */
    struct { bool causal; } softmax;                    /* SOFTMAX */
    struct { double p; } dropout;                       /* DROPOUT */
    struct { double c; } scale;                         /* SCALE */
    struct { int64_t vocab, dim; } embedding;           /* EMBEDDING */
    struct { int a, b; } transpose;                     /* TRANSPOSE (normalized >= 0) */
    struct { int axis; } concat;                        /* CONCAT (normalized >= 0) */
    struct { int n, axis; } split;                      /* SPLIT (normalized >= 0) */
    struct { int64_t start, end; int axis; } slice;     /* SLICE (normalized) */
    struct { int axis; bool keepdim; } reduce;          /* MEAN, SUM (axis >= 0) */
    struct { double base; } rope;                       /* ROPE */
    struct { bool causal; double p, scale; } sdpa;      /* SDPA */
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
  int64_t device_memory; /* bytes of the device (--device-memory, --gpu, or
                            train `device_memory`), -1 if none */
  int gpu;               /* --gpu: a row of gpu_table, -1 if none */
} Config;

/* Which config keys were given on the command line (they win over train). */
enum {
  CFG_PRECISION = 1, CFG_OPTIMIZER = 2, CFG_STATE_DTYPE = 4,
  CFG_WORKSPACE = 8, CFG_BUDGET = 16, CFG_DEVICE_MEMORY = 32,
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
 * ir/init.c: how a run initialises parameters and fills inputs
 * ====================================================================== */

/* INIT_S4D: Mamba's S4D-real A_log, element i = log(i % fan + 1) (fan
 * holds the state size). */
typedef enum {
  INIT_NORMAL, INIT_KAIMING, INIT_ONE, INIT_ZERO, INIT_S4D
} InitKind;

/* For every value v: kind[v] and fan[v] (fan-in, for INIT_KAIMING) of its
 * initialisation, and limit[v], the exclusive bound of an integer input's
 * draws. Arrays of g->nvals entries, filled. */
void graph_init_plan(const Graph *g, InitKind *kind, int64_t *fan,
                     int64_t *limit);
/* The value a node input really reads: through the casts the precision
 * pass inserted, reshapes and views. */
int init_source(const Graph *g, int v);

/* ======================================================================
 * frontend/: .mdl to forward Graph
 * ====================================================================== */

typedef struct {
  const char *name;   /* a top-level `let` */
  int64_t value;      /* its new value */
} Define;

/* A model file, read and parsed once; lowered as often as asked. */
typedef struct {
  const char *path;  /* as given ("-" for standard input) */
  int file;          /* its id (src_add) */
  struct Ast *root;  /* the AST_FILE the parser built (syntax errors:
                        AST_ERROR or NULL parts, see parse_source) */
  bool syntax_ok;    /* the parser reported no error */
} Source;

/* Reads `path` (or stdin for "-") and parses it; syntax errors are
 * reported. A file that cannot be read is a command-line error (exit 2). */
Source *frontend_read(const char *path);
/* Lowers a parsed file into a forward graph: values with shapes and
 * f32/declared dtypes, nodes in program order, segments, path names.
 * `cfg` holds defaults overridden by the command line (cfg_set says which
 * keys the command line set); the train block fills the rest. Returns
 * NULL after reporting errors (a file with syntax errors has its lets
 * checked, then gives NULL). The tree is not changed. */
Graph *frontend_lower(const Source *src, const Define *defs, int ndefs,
                      const Config *cfg, unsigned cfg_set);
/* frontend_read, then frontend_lower. */
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
  AST_BLOCK,      /* block str(kid[0]: AST_LIST of names) { kid[1]: body };
                     ival 1: a `shared block` */
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
Ast *ast_shared(Ast *block);        /* marks an AST_BLOCK shared */
Ast *ast_prepend(Ast *list, Ast *kid);
/* Turns a list built by ast_push into a node of kind k (a call's args). */
Ast *ast_retag(Ast *list, AstKind k, Loc loc, const char *str, Loc name_loc);
const char *ast_kind_name(AstKind k);

/* ---- grammar/lexer.l (with grammar/parser.y): text to tree ---- */

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
 * passes/pipeline.c: the compiler as one list
 * ====================================================================== */

/* One compile: what it is asked for, and what it made. */
typedef struct {
  const char *path;       /* the model file, or "-" for standard input */
  Source *src;            /* that file read and parsed: by the first
                             compile; later ones (--max-batch) lower it
                             again, never read or parse it twice */
  const Define *defs;     /* -D overrides */
  int ndefs;
  Config cfg;             /* defaults with the command line's settings */
  unsigned cfg_set;       /* which of cfg the command line set (CFG_*) */
  const char *dump_after; /* --dump-after=PASS: print the IR, exit 0 */
  bool source_cuts;       /* --emit-mdl: segments only where the source
                             can write them (mdl_cut_points) */
  bool note_unmet;        /* a note on stderr when the budget cannot be met */
  /* what it made: */
  Graph *g;               /* the graph, as far as the passes got */
  bool placed;            /* placement ran (a budget was in force) */
  Placement placement;    /* its result, zero if it did not run */
} Pipeline;

/* Every pass, frontend to arena. NULL after a user error was reported. */
Graph *pipeline_compile(Pipeline *p);
/* The passes after the frontend, on a graph built another way (tests,
 * benchmarks): precision to arena, placement if g->cfg has a budget. */
void pipeline_plan(Graph *g);
/* The step built again from the forward graph (after its segments
 * changed): graph_clear_step, autodiff, liveness. Invalidates the arena. */
void pipeline_rebuild_step(Graph *g);

/* ======================================================================
 * max_batch.c: --max-batch, the largest `let batch` that fits
 * ====================================================================== */

/* Prints, without checkpoints and with placement, the largest batch whose
 * step fits in `size` bytes (text, or one JSON document), each found by
 * compiling p's model again (p->src) at -D batch=N; g is p's own compile.
 * Returns 1 if batch 1 does not fit one way or the other, else 0. */
int max_batch(const Pipeline *p, const Graph *g, int64_t size, bool json,
              FILE *out);

/* ======================================================================
 * backend/report/emit_mdl.c: --emit-mdl, the source with placed checkpoints
 * ====================================================================== */

/* Per node of g's forward graph: whether the source can write a segment
 * boundary right before it (between model-level statements, between the
 * calls of a `NAME = repeat N B(NAME0, ...)`): the cut_ok of
 * pass_placement. Read off the nodes' origins; src: the parsed file g
 * was lowered from (the statements). */
bool *mdl_cut_points(const Graph *g, const Source *src);
/* Prints header, then the source with g's segments written in (placed
 * with mdl_cut_points' boundaries): repeats split, `checkpoint` calls and
 * blocks; the source's own checkpoints and train `budget` removed. */
void mdl_emit(const Graph *g, const Source *src, const char *header,
              FILE *f);

/* ======================================================================
 * backend/report/report.c, timeline.c: what --peak, --ops, --timeline print
 * ====================================================================== */

typedef struct {
  bool json;              /* one JSON document instead of the text report */
  const Placement *placement; /* checkpoints placed for a budget, or NULL */
} ReportOpts;

/* Estimated bytes of the CUDA context and library handles, added when
 * answering "does it fit" (--device-memory, --gpu; fit_limit): `--run` measured 602.8 MiB
 * (632,094,720 B) on an H100 with CUDA 13, cuBLAS and cuDNN 9, rounded up
 * (bench/RESULTS.md). */
#define CONTEXT_ESTIMATE_BYTES (int64_t)(640LL << 20)

void report_peak(const Graph *g, const ReportOpts *o, FILE *f);
/* The peak plus CONTEXT_ESTIMATE_BYTES is at most device_memory. */
bool report_fits(const Graph *g, int64_t device_memory);
/* "device memory 8589934592 B (8.00 GiB, RTX 3060 Ti) less the CUDA
 * context estimate 671088640 B (640.00 MiB) = 7918845952 B (7.38 GiB)"
 * for the reports that fit into it. */
const char *device_memory_text(const Config *c);
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
 * backend/report/gpus.c: the cards mdlc knows (docs/gpus.md), and the
 * bytes a step may take on one
 * ====================================================================== */

typedef struct {
  const char *name;  /* as the vendor writes it: "H100 SXM" */
  int64_t memory;    /* bytes of device memory (the datasheet's GB are GiB) */
  double bandwidth;  /* DRAM bytes per second */
  double flops16;    /* dense 16-bit tensor-core FLOP/s, f32 accumulate */
  double flops32;    /* f32 FLOP/s of the CUDA cores (no TF32) */
} Gpu;

extern const Gpu gpu_table[];
extern const int gpu_count;
/* The row named `name` (any case; spaces, hyphens, underscores ignored;
 * a few aliases: "h100", "4090"), or -1. */
int gpu_lookup(const char *name);
/* "'A100 40GB' or 'A100 80GB'": the rows `name` may have meant, or NULL. */
const char *gpu_suggest(const char *name);
/* "'RTX 3060 Ti', 'T4', ...": every row, for messages. */
const char *gpu_names(void);
/* The card c names (--gpu), or NULL. */
const Gpu *cfg_gpu(const Config *c);
/* The most bytes the step's peak may take: the budget, or the device
 * memory less CONTEXT_ESTIMATE_BYTES (at least 0), whichever is smaller;
 * -1 when neither is given. Placement and --max-batch fit into it. */
int64_t fit_limit(const Config *c);

/* ======================================================================
 * backend/report/traffic.c: bytes and FLOPs of every instruction, and the
 * roofline floor on a named GPU (the rules: docs/cli-notes.md)
 * ====================================================================== */

typedef struct {
  int64_t read;     /* bytes read from device memory, each operand once */
  int64_t written;  /* bytes written (an accumulated gradient also read) */
  int64_t flops;    /* FLOPs (a backward: twice its forward) */
} Traffic;

/* The phases the step's figures are totalled by. */
enum { PH_FWD, PH_RECOMPUTE, PH_BWD, PH_OPT, PH_COUNT };
extern const char *const traffic_phase_name[PH_COUNT];
/* Forward, recompute, backward (the seed, backward steps and
 * reduce-scatters) or optimizer. */
int traffic_phase(InstrKind k);

typedef struct {
  Traffic t;        /* summed */
  int instrs;       /* instructions */
  double floor;     /* roofline floor, seconds (0 without a GPU) */
  int mem_bound;    /* instructions whose floor is bytes / bandwidth */
  double mem_floor; /* seconds of the floor they take */
} PhaseTraffic;

typedef struct {
  PhaseTraffic phase[PH_COUNT];
  PhaseTraffic total;
} StepTraffic;

Traffic instr_traffic(const Graph *g, int i);
/* Instruction i runs on 16-bit tensor cores: a matmul-class op (linear,
 * matmul, conv2d, sdpa) whose first operand is f16 or bf16. */
bool instr_tensor16(const Graph *g, int i);
/* Seconds: max(bytes / bandwidth, FLOPs / the rate it runs at). */
double traffic_floor(const Gpu *gpu, Traffic t, bool tensor16);
double instr_floor(const Graph *g, int i, const Gpu *gpu);
/* Every instruction's figures by phase; gpu may be NULL (no floors). */
void step_traffic(const Graph *g, const Gpu *gpu, StepTraffic *st);
/* "H100 SXM (80.00 GiB, 3350 GB/s, ...)" */
void print_gpu(const Gpu *gpu, FILE *f);
/* --peak's traffic section (text), and its JSON members ("traffic", and
 * with a GPU "gpu" and "roofline_ms"), each line ending in ",\n". */
void report_traffic(const Graph *g, FILE *f);
void report_traffic_json(const Graph *g, FILE *f);
/* --run --profile: ms[i] the measured milliseconds per step of
 * instruction i; a table by op and pass, largest first, with achieved
 * bandwidth and FLOP rate and, with a GPU named, the floor beside. */
void report_op_times(const Graph *g, const double *ms, FILE *f);

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

int cpu_run(Graph *g, const RunOpts *o);             /* backend/cpu/exec.c */
/* --run on the GPU without --steps: the first step eager, nine replays. */
enum { CUDA_DEFAULT_STEPS = 10 };
int cuda_emit(const Graph *g, const RunOpts *o, FILE *f); /* backend/cuda/emit.c */
int cuda_run(Graph *g, const RunOpts *o);            /* backend/cuda/run.c */

/* ======================================================================
 * backend/cpu/: the CPU reference kernels (docs/ops.md), a file per
 * family of ops (numeric.c holds the number formats and shared helpers)
 *
 * Every kernel works on contiguous row-major f32 arrays (the executor
 * gathers operands through their view geometry and scatters results back,
 * rounding to the stored dtype). Backward kernels overwrite their outputs;
 * a NULL output pointer means "not wanted". Reductions accumulate in double.
 * ====================================================================== */

/* ---- backend/cpu/numeric.c ---- */

float cpu_f16_to_f32(uint16_t h);
uint16_t cpu_f32_to_f16(float f);   /* round to nearest even */
float cpu_bf16_to_f32(uint16_t h);
uint16_t cpu_f32_to_bf16(float f);  /* round to nearest even */
/* The value x becomes when stored as float dtype t. */
float cpu_round_to(DType t, float x);
/* n zeroed doubles (exit 3 if the host has no memory for them). */
double *cpu_dzalloc(int64_t n);
/* dst[i] = src[i] rounded to f32; nothing if dst is NULL. */
void cpu_dstore(float *dst, const double *src, int64_t n);
int64_t cpu_numel(const Shape *s);
/* Strides (in elements) of a contiguous tensor of shape s, read at the
 * indices of shape sy (rank >= s's) by NumPy broadcasting: 0 where s has
 * no such dim or extent 1. */
void cpu_bcast_strides(const Shape *s, const Shape *sy, int64_t *st);
/* Offset of linear index j of shape sy under strides st. */
int64_t cpu_offset_of(const Shape *sy, const int64_t *st, int64_t j);

/* ---- backend/cpu/linear.c ---- */

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

/* ---- backend/cpu/conv.c ---- */

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

/* ---- backend/cpu/pool.c ---- */

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

/* ---- backend/cpu/norm.c ---- */

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
/* rmsnorm over rows of D; rstd (may be NULL in the forward) per row. */
void cpu_rmsnorm_fwd(const float *x, const float *w, float *y, float *rstd,
                     int64_t rows, int64_t D, float eps);
void cpu_rmsnorm_bwd(const float *x, const float *w, const float *rstd,
                     const float *dy, float *dx, float *dw, int64_t rows,
                     int64_t D);
void cpu_norm_bwd(const CpuNorm *p, const float *x, const float *w,
                  const float *mean, const float *rstd, const float *dy,
                  float *dx, float *dw, float *db);

/* ---- backend/cpu/pointwise.c ---- */

/* An activation: y = fwd(x); its backward dx = bwd(dy, s) where s is
 * what the op saves (ir/ops.def): x for gelu, silu and softplus, y for
 * relu, tanh, sigmoid and exp. Computed in double, rounded to f32 once. */
typedef struct {
  double (*fwd)(double x);
  double (*bwd)(double dy, double s);
} CpuAct;
extern const CpuAct cpu_relu, cpu_gelu, cpu_silu, cpu_tanh, cpu_sigmoid,
    cpu_exp, cpu_softplus;
void cpu_act_fwd(const CpuAct *a, const float *x, float *y, int64_t n);
void cpu_act_bwd(const CpuAct *a, const float *s, const float *dy, float *dx,
                 int64_t n);

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

/* ---- backend/cpu/softmax.c ---- */

/* Softmax over rows of `cols`; causal masks col > (row % srows). */
void cpu_softmax_fwd(const float *x, float *y, int64_t rows, int64_t cols,
                     bool causal, int64_t srows);
void cpu_softmax_bwd(const float *y, const float *dy, float *dx,
                     int64_t rows, int64_t cols);

/* ---- backend/cpu/layout.c ---- */

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

/* ---- backend/cpu/rope.c ---- */

/* x [..., S, Dh] -> y rotated (inverse: turned back, the backward). */
void cpu_rope(const Shape *s, const float *x, float *y, double base,
              bool inverse);

/* ---- backend/cpu/reduce.c ---- */

/* mean (or sum) of x [shape sx] over one axis; the backward broadcasts. */
void cpu_reduce_fwd(bool mean, const Shape *sx, int axis, const float *x,
                    float *y);
void cpu_reduce_bwd(bool mean, const Shape *sx, int axis, const float *dy,
                    float *dx);

/* ---- backend/cpu/loss.c ---- */

/* Returns the index of the first target outside [0, c), or -1. */
int64_t cpu_xent_fwd(const float *x, const int64_t *t, int64_t rows,
                     int64_t c, float *logprobs, float *loss);
void cpu_xent_bwd(const float *logprobs, const int64_t *t, int64_t rows,
                  int64_t c, float dloss, float *dx);
void cpu_mse_fwd(const float *a, const float *b, int64_t n, float *loss);
void cpu_mse_bwd(const float *a, const float *b, int64_t n, float dloss,
                 float *da, float *db);

/* ---- backend/cpu/optim.c ---- */

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

/* backend/cpu/exec.c: cpu_run with its measurements handed back (tests).
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
  /* tests/unit/ops_saves.c: each backward sees only what its op's save
   * rule declares (and what is resident: parameters, states, inputs); every
   * other forward operand reads as absent. narrow_op (with narrow): that
   * op's rule is taken as empty, so its backward must fail if it reads
   * anything it does not own. */
  bool strict_saves;
  bool narrow;
  Op narrow_op;
} CpuStats;
int cpu_run_stats(Graph *g, const RunOpts *o, CpuStats *st);

/* ======================================================================
 * ops/: one file per family of operators (ops/linear.c, conv.c, pool.c,
 * norm.c, pointwise.c, softmax.c, layout.c, loss.c)
 *
 * An OpDef is everything mdlc knows about one op that is not a constant of
 * ir/ops.def: its signature and shape rule (the frontend), its FLOPs, its
 * attributes in the textual IR, how a run initialises its parameters, and
 * its forward and backward on the CPU reference and in emitted CUDA. The
 * passes read only ir/ops.def's constants; every backend dispatches
 * through op_def. docs/adding-an-op.md is the checklist.
 * ====================================================================== */

/* ---- frontend/builtins.c: what a lower hook is given ---- */

typedef enum {
  A_T,    /* a tensor (positional only) */
  A_TS,   /* the remaining positional tensors (concat) */
  A_I,    /* an integer in [lo, hi] */
  A_IS,   /* the remaining positional integers (reshape) */
  A_F,    /* a number; > 0 when lo == 1 (eps) */
  A_P,    /* a probability in [0, 1) */
  A_B,    /* true or false */
  A_TYPE, /* a tensor type, f32[4, 3] (param) */
  A_TOPT, /* a tensor given as an option only (weight = NAME) */
} ArgType;

/* One row of a signature: tensors first, then integers, numbers, flags. */
typedef struct {
  const char *name; /* as an option: name = value */
  ArgType t;        /* what it takes */
  bool req;         /* must be given */
  double def;       /* default */
  int64_t lo, hi;   /* A_I range (A_F: lo 1 means > 0) */
} ArgSpec;

enum { MAX_ARGS = 12 };
#define ARG_ANY INT64_MIN, INT64_MAX
#define ARG_POS 1, INT64_MAX
#define ARG_NNEG 0, INT64_MAX
#define ARG_TENSOR(n) {n, A_T, true, 0, ARG_ANY}
#define ARG_EPS {"eps", A_F, false, 1e-5, 1, 0}

/* A call's arguments bound to its signature. */
typedef struct {
  Ev v[MAX_ARGS];     /* per ArgSpec row: the value (the default if absent) */
  bool given[MAX_ARGS];
  Loc where[MAX_ARGS];
  Ev *many;           /* A_TS / A_IS: the values */
  int nmany;
  int dtype;          /* `dtype = ...`, or -1 */
} Args;

/* The state of one operator call being lowered. */
typedef struct {
  Lower *L;
  Graph *g;
  Op opc;             /* the op being lowered (OP_COUNT: sugar) */
  const char *op;     /* the operator's .mdl name, for messages */
  Loc loc;            /* the call */
  const char *base;   /* local name of the call's main node */
  int dtype;          /* dtype override, or -1 */
  Args *A;            /* the bound arguments */
  const char *const *outnames; /* a tuple binding's names (split), or NULL */
  int nout;           /* ... and how many */
  Ev *tuple;          /* split: set to the EV_TUPLE of its outputs */
} Call;

Value *call_val(const Call *c, Ev e);
double ev_num(Ev e);                       /* an EV_INT or EV_FLOAT */
Ev ev_tensor(int v);
/* "f32[8, 3]": for messages. */
const char *call_desc(const Call *c, int v);
/* Checks with located errors; false after one. */
bool call_need_float(const Call *c, Ev e, const char *what);
bool call_need_rank(const Call *c, Ev e, int lo, int hi, const char *what);
bool call_shape_ok(const Call *c, const Shape *s);
/* An axis in [-rank, rank) made non-negative; -1 after an error. */
int call_axis(const Call *c, int64_t a, int rank, Loc at);
/* The full name the scope gives `local`, taken before the node exists so
 * parameters can be named after it. */
const char *call_reserve(const Call *c, const char *local);
/* "BASE:part": the local name of a part of a sugar's lowering. */
const char *call_sub(const Call *c, const char *part);
/* A node named `local` under the scope's prefix / with a reserved name. */
int call_node(const Call *c, Op op, const char *local, const int *in,
              int nin);
int call_node_named(const Call *c, Op op, const char *full, const int *in,
                    int nin);
int call_out(const Call *c, int n, const char *name, DType dt,
             const Shape *s, bool extra);
/* One real output named like its node. */
int call_out1(const Call *c, int n, DType dt, const Shape *s);
/* A parameter (or state) of node name `full`: "full.suffix", f32. */
int call_param(const Call *c, const char *full, const char *suffix,
               ValueKind k, const Shape *s);
/* The weight of an op that may take `weight = NAME` (argument row k): the
 * named parameter, checked to have shape `want` (an error shows both), or,
 * when the option is absent, -2 ("make one"); -1 after an error. */
int call_weight(const Call *c, int k, const Shape *want);

/* ---- backend/cpu/exec.c: what a CPU hook is given ---- */

typedef struct Exec Exec; /* the executor's state (backend/cpu/exec.c) */

/* One instruction on the CPU reference. Forward: x[k] is forward input k
 * gathered to f32 (float and u8 inputs; NULL for integer ones), y[o] each
 * output, zeroed, scattered to its buffer after the hook. Backward: dy[o]
 * the gradient of real output o (zeros where none arrived), dx[k] the
 * wanted gradient of input k, zeroed (NULL: not wanted, or handed off),
 * scattered (or accumulated) after the hook; saved operands come from
 * cpu_saved. Every array a hook gets stays the executor's. */
typedef struct {
  Exec *e;
  const Graph *g;
  const Node *n;
  const Instr *in;
  int node;           /* the node's index (dropout's stream) */
  uint64_t seed;      /* --seed */
  uint64_t step;      /* 0-based step */
  bool train;         /* not --infer */
  bool first;         /* IK_FWD: the first forward, not a recomputation */
  float *x[8], *y[8];
  float *dy[8], *dx[8];
} CpuOp;

/* Backward operand k (the IK_BWD layout in mdlc.h: inputs, then outputs),
 * gathered to f32: a plan error naming `what` if it was neither saved nor
 * resident. Freed after the hook. */
float *cpu_saved(CpuOp *c, int k, const char *what);
/* An integer operand (forward input k, or backward operand k), gathered. */
int64_t *cpu_ints(CpuOp *c, int k, bool bwd, const char *what);
/* Writes src into forward input k (batchnorm's running statistics). */
void cpu_write_input(CpuOp *c, int k, const float *src);
/* Bad data (a token id, a class): "outside [0, limit)", exit 3. */
_Noreturn void cpu_data_error(CpuOp *c, const char *what, int64_t bad,
                              int64_t limit);
int64_t cpu_last_dim(const Shape *s);
/* Host memory, exit 3 if there is none; free() it. */
void *cpu_host_alloc(size_t n);

/* ---- backend/cuda/emit.c: what a CUDA hook is given ---- */

typedef struct Emit Emit; /* the emitter's state (backend/cuda/emit.c) */

/* One instruction being emitted. Forward: X[k] input k, Y[o] output o, as
 * `AT(buf, geometry)` or "NONE". Backward: I[k] operand k of the IK_BWD
 * layout (inputs, then outputs), DY the output gradient, DX[k] the gradient
 * of input k and A[k] its accumulate flag ("NONE" where not wanted or
 * handed off). */
typedef struct {
  Emit *E;
  const Graph *g;
  const Node *n;
  int node;           /* the node's index */
  const Instr *in;
  const char *X[8], *Y[8];
  const char *I[16], *DY, *DX[8];
  int A[8];
} EmitOp;

/* Appends to the step's code (setup() in a setup hook). */
void emit_printf(EmitOp *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends a file-scope declaration (before the geometry table). */
void emit_global(EmitOp *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A reference to a derived view of r (transposed, a concat slice) with the
 * given geometry, suffix naming it. */
typedef struct {
  int rank;
  int64_t dim[MAX_RANK], st[MAX_RANK], off;
} Geom;
Geom emit_geom(const Graph *g, int v);
const char *emit_ref(EmitOp *c, Ref r);
const char *emit_ref_geom(EmitOp *c, Ref r, const char *suffix,
                          const Geom *m, const char *what);
/* An error: the backend cannot run this (exit 1 after emission). */
void emit_unsupported(EmitOp *c, const char *what);
/* Operands our row-wise kernels read as contiguous. */
void emit_need_contig(EmitOp *c, Ref r);
/* "MDLRT_F32" ... */
const char *emit_dtype(DType t);
const char *emit_loc(Loc l);
bool emit_none(const char *ref);           /* the reference is "NONE" */

/* ---- the hooks ---- */

typedef struct {
  const char *sig;                     /* the signature, for hints */
  ArgSpec args[MAX_ARGS];              /* the signature's rows */
  /* Checks the arguments' dtypes and shapes (errors located at the call),
   * creates the node(s), parameters and outputs; returns the output value,
   * -1 after an error. NULL only for OF_INTERNAL ops. */
  int (*lower)(const Call *c);
  /* FLOPs of one forward run (a multiply-add counts 2). */
  int64_t (*flops)(const Graph *g, const Node *n);
  /* The attributes in the textual IR (" k=v" each); NULL: none. */
  void (*attrs)(const Node *n, FILE *f);
  /* How a run initialises the source value `s` of operand k of n (see
   * ir/init.c); NULL: the defaults. */
  void (*init)(const Graph *g, const Node *n, int k, int s, InitKind *kind,
               int64_t *fan, int64_t *limit);
  void (*cpu_fwd)(CpuOp *c);
  void (*cpu_bwd)(CpuOp *c);
  /* Once in setup() (conv2d's plans); NULL: nothing. */
  void (*cuda_setup)(EmitOp *c);
  void (*cuda_fwd)(EmitOp *c);
  void (*cuda_bwd)(EmitOp *c);
} OpDef;

extern const OpDef *const op_def[OP_COUNT];
#define X(e, name, nin, nparam, nextra, flags, save, cls, rt)               \
  extern const OpDef opdef_##e;
#include "ir/ops.def"
#undef X

/* Whether n's save rule keeps forward input k / output o. */
bool op_saves_input(const Node *n, int k);
bool op_saves_output(const Graph *g, const Node *n, int o);
/* FLOPs of one forward run of node n (op_def's flops). */
int64_t op_flops(const Graph *g, int n);
/* a * b and a + b saturating at INT64_MAX (FLOPs are estimates). */
int64_t flops_mul(int64_t a, int64_t b);
int64_t flops_add(int64_t a, int64_t b);
int64_t op_numel(const Graph *g, int v);   /* INT64_MAX if it overflows */
/* The flops hook of data movement (views, copies, gathers): 0. */
int64_t flops_none(const Graph *g, const Node *n);

/* ---- operand slots (node inputs: tensors, then parameters) ---- */

enum { LINEAR_X, LINEAR_W, LINEAR_B };           /* linear, conv2d too */
enum { NORM_X, NORM_W, NORM_B, NORM_RMEAN, NORM_RVAR };
enum { NORM_Y, NORM_MEAN, NORM_RSTD };           /* outputs */
enum { EMB_IDS, EMB_W };
enum { LOSS_A, LOSS_B };                         /* logits/targets, a/b */
enum { XENT_LOSS, XENT_LOGPROBS };               /* outputs */
enum { DROPOUT_Y, DROPOUT_MASK };                /* outputs */

/* ---- lowering functions that sugar reuses (attention, flatten) ---- */

/* ops/linear.c: linear x [..., in] -> [..., out] with parameters named
 * after `full`; output named outname (or full). */
int lower_linear(const Call *c, int x, int64_t out, bool bias,
                 const char *full, const char *outname, int weight);
int lower_matmul(const Call *c, int a, int b, bool ta, bool tb,
                 const char *local);
/* The init hook of linear and conv2d: Kaiming-uniform weight and bias. */
void linear_init(const Graph *g, const Node *n, int k, int s, InitKind *kind,
                 int64_t *fan, int64_t *limit);
/* ops/layout.c */
int lower_reshape_view(const Call *c, int x, const Shape *s,
                       const char *local);
int lower_split_views(const Call *c, int x, int n, int axis,
                      const char *local, const char *const *names,
                      int *outs);
int lower_split_sizes(const Call *c, int x, int n, const int64_t *sizes,
                      int axis, const char *local, const char *const *names,
                      int *outs);
int lower_transpose(const Call *c, int x, int a, int b, const char *local);
/* ops/pointwise.c */
int lower_scale(const Call *c, int x, double k, const char *local);
int lower_dropout(const Call *c, int x, double p, const char *local);
int lower_binary(const Call *c, Op op, Ev a, Ev b, const char *local);
/* ops/attention.c: sdpa (scale <= 0: 1/sqrt(head_dim)) and rope */
int lower_sdpa(const Call *c, int q, int k, int v, bool causal, double p,
               double scale);
int lower_rope(const Call *c, int x, double base, const char *local);
/* ops/softmax.c */
int lower_softmax(const Call *c, int x, bool causal, const char *local);
/* ops/conv.c: H' = (H + 2p - d(k - 1) - 1) / s + 1, or -1 if the window
 * does not fit. */
int64_t conv_out_extent(int64_t h, int64_t k, int64_t s, int64_t p,
                        int64_t d);

/* ======================================================================
 * backend/cpu/sdpa.c: fused attention, the reference
 *
 * q [b, h, s, dh], k and v [b, hkv, t, dh] (query head i reads kv head
 * i / (h / hkv)), o [b, h, s, dh], lse [b, h, s] (natural log-sum-exp of
 * each row of scale * q k^T), all contiguous row-major f32; causal masks
 * column > row. Dropout on the probabilities, drawn as the GPU draws it:
 * element (b, h, i, j) kept iff mdlrt_uniform(seed, MDLRT_STREAM_DROP +
 * node, mdlrt_dropout_index(step, ((b*h + h)*s + i)*t + j)) >= dropout.
 * The backward uses the saved o and lse; NULL outputs are not wanted,
 * the others overwritten. Sums and exponentials in double.
 * ====================================================================== */
typedef struct {
  int64_t b, h, hkv, s, t, dh;  /* batch, query heads, kv heads, rows, kv rows, head dim */
  bool causal;                  /* mask column > row */
  double dropout, scale;        /* dropout p on the probabilities; scores' scale */
  uint64_t seed, step;          /* dropout's draws: --seed and the 0-based step */
  int node;                     /* dropout's stream: MDLRT_STREAM_DROP + node */
} CpuSdpa;
void cpu_sdpa_fwd(const CpuSdpa *p, const float *q, const float *k,
                  const float *v, float *o, float *lse);
void cpu_sdpa_bwd(const CpuSdpa *p, const float *q, const float *k,
                  const float *v, const float *o, const float *lse,
                  const float *dout, float *dq, float *dk, float *dv);

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
