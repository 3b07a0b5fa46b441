/* ir/graph.c: building, printing and checking the graph IR.
 *
 * The textual form is stable (indices, names, shapes; no pointers), so a
 * dump after any pass can be pinned by a test:
 *   %2 = param "fc.weight" f32[4, 3]
 *   %5 = linear(%0, %2, %3) "h:linear" f32[2, 4] out=4 bias=1 @tiny.mdl:4:7
 */
#include "mdlc.h"

#include <string.h>

const char *const category_name[CAT_COUNT] = {
    [CAT_PARAM] = "parameters",
    [CAT_GRAD] = "gradients",
    [CAT_OPT_STATE] = "optimizer state",
    [CAT_MASTER] = "master weights",
    [CAT_INPUT] = "inputs",
    [CAT_ACT] = "activations",
    [CAT_ACT_GRAD] = "activation gradients",
    [CAT_CAST] = "casts",
    [CAT_WORKSPACE] = "workspace",
};

const char *const precision_name[PREC_COUNT] = {
    [PREC_FP32] = "fp32",
    [PREC_FP16] = "fp16",
    [PREC_BF16] = "bf16",
    [PREC_FP16_MIXED] = "fp16_mixed",
    [PREC_BF16_MIXED] = "bf16_mixed",
    [PREC_FP16_MASTER] = "fp16_master",
    [PREC_BF16_MASTER] = "bf16_master",
};

const char *const optimizer_name[OPTIM_COUNT] = {
    [OPTIM_SGD] = "sgd",
    [OPTIM_MOMENTUM] = "momentum",
    [OPTIM_ADAM] = "adam",
    [OPTIM_ADAMW] = "adamw",
};

Graph *graph_new(void) {
  Graph *g = xalloc(sizeof *g);
  g->loss = -1;
  g->batch = -1;
  g->workspace_buf = -1;
  g->peak_at = -1;
  g->cfg = (Config){
      .precision = PREC_FP32,
      .optimizer = OPTIM_ADAMW,
      .state_dtype = -1,
      .workspace = 32LL << 20,
      .budget = -1,
      .device_memory = -1,
      .gpu = -1,
      .gpus = 1,
  };
  return g;
}

void value_set_contiguous(Value *v) {
  int64_t s = 1;
  for (int i = v->shape.rank - 1; i >= 0; i--) {
    v->stride[i] = s;
    s *= v->shape.dim[i] > 0 ? v->shape.dim[i] : 1;
  }
}

bool value_is_contiguous(const Value *v) {
  int64_t s = 1;
  for (int i = v->shape.rank - 1; i >= 0; i--) {
    if (v->shape.dim[i] != 1 && v->stride[i] != s) return false;
    s *= v->shape.dim[i];
  }
  return true;
}

int graph_add_value(Graph *g, const char *name, ValueKind kind, DType dt,
                    const Shape *shape, Loc loc) {
  Shape sh = *shape; /* may point into g->vals, which the push may move */
  Value *v = VEC_PUSH(g->vals, g->nvals, g->capvals);
  v->name = name;
  v->kind = kind;
  v->dtype = dt;
  v->shape = sh;
  v->node = -1;
  v->view_of = -1;
  v->loc = loc;
  v->origin = (Origin){-1, 0};
  value_set_contiguous(v);
  return g->nvals - 1;
}

int graph_add_node(Graph *g, Op op, const char *name, const int *in, int nin,
                   Loc loc) {
  Node *n = VEC_PUSH(g->nodes, g->nnodes, g->capnodes);
  n->op = op;
  n->name = name;
  n->in = xalloc(sizeof(int) * (size_t)(nin ? nin : 1));
  if (nin) memcpy(n->in, in, sizeof(int) * (size_t)nin);
  n->nin = nin;
  n->segment = -1;
  n->dtype_override = -1;
  n->loc = loc;
  n->origin = (Origin){-1, 0};
  return g->nnodes - 1;
}

int graph_add_output(Graph *g, int node, const char *name, DType dt,
                     const Shape *shape, bool is_extra) {
  int v = graph_add_value(g, name, VK_ACT, dt, shape, g->nodes[node].loc);
  Node *n = &g->nodes[node];
  g->vals[v].origin = n->origin;
  n->out = xrealloc_array(n->out, (size_t)n->nout, (size_t)n->nout + 1,
                          sizeof(int));
  n->out[n->nout] = v;
  g->vals[v].node = node;
  g->vals[v].out_index = n->nout;
  g->vals[v].is_extra = is_extra;
  n->nout++;
  if (!is_extra) n->nreal = n->nout;
  return v;
}

void graph_clear_step(Graph *g) {
  g->nbufs = 0;
  g->nins = 0;
  g->val_buf = g->grad_buf = NULL;
  g->workspace_buf = -1;
  g->persistent_bytes = g->peak = g->arena_bytes = 0;
  g->peak_at = -1;
  for (int c = 0; c < CAT_COUNT; c++) g->by_cat[c] = 0;
}

bool buf_live_at(const Buf *b, int i) {
  if (b->persistent) return true;
  return i >= 0 && b->alloc_at <= i && (b->free_at < 0 || b->free_at >= i);
}

int value_root(const Graph *g, int v) {
  while (g->vals[v].view_of >= 0) v = g->vals[v].view_of;
  return v;
}

/* ---- printing ---------------------------------------------------------- */


static void dump_attrs(const Node *n, FILE *f) {
  if (op_def[n->op]->attrs) op_def[n->op]->attrs(n, f);
}

static void dump_value_type(const Graph *g, int v, FILE *f) {
  char sb[160];
  const Value *x = &g->vals[v];
  fprintf(f, "%s%s", dtype_name(x->dtype), shape_str(&x->shape, sb));
  if (x->view_of >= 0) {
    fprintf(f, " view(%%%d+%lld", x->view_of, (long long)x->view_offset);
    if (!value_is_contiguous(x)) {
      fprintf(f, " strides");
      for (int i = 0; i < x->shape.rank; i++)
        fprintf(f, "%c%lld", i ? ',' : ' ', (long long)x->stride[i]);
    }
    fprintf(f, ")");
  }
}

static const char *const kind_name[] = {
    [VK_INPUT] = "input", [VK_PARAM] = "param", [VK_STATE] = "state",
    [VK_ACT] = "act"};

static const char *const instr_name[] = {
    [IK_FWD] = "fwd", [IK_RECOMPUTE] = "recompute", [IK_SEED] = "seed",
    [IK_BWD] = "bwd", [IK_OPT] = "opt", [IK_REDUCE] = "reduce"};
_Static_assert(sizeof instr_name / sizeof *instr_name == IK_COUNT, "one entry an instruction kind");

const char *const instr_phase[IK_COUNT] = {
    [IK_FWD] = "forward", [IK_RECOMPUTE] = "recompute", [IK_SEED] = "backward",
    [IK_BWD] = "backward", [IK_OPT] = "optimizer", [IK_REDUCE] = "backward"};

static void dump_refs(const Ref *r, int n, FILE *f) {
  for (int i = 0; i < n; i++) {
    if (r[i].buf < 0)
      fprintf(f, "%s_", i ? ", " : "");
    else
      fprintf(f, "%sb%d", i ? ", " : "", r[i].buf);
  }
}

void graph_dump(const Graph *g, FILE *f, bool with_step) {
  fprintf(f, "model %s  precision=%s optimizer=%s workspace=%lld\n",
          g->model_name ? g->model_name : "?", precision_name[g->cfg.precision],
          optimizer_name[g->cfg.optimizer], (long long)g->cfg.workspace);
  for (int v = 0; v < g->nvals; v++) {
    const Value *x = &g->vals[v];
    if (x->kind == VK_ACT) continue;
    fprintf(f, "%%%d = %s \"%s\" ", v, kind_name[x->kind], x->name);
    dump_value_type(g, v, f);
    fprintf(f, "\n");
  }
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    for (int o = 0; o < n->nout; o++) {
      const Value *x = &g->vals[n->out[o]];
      fprintf(f, "%s%%%d%s", o ? ", " : "", n->out[o], x->is_extra ? "'" : "");
    }
    fprintf(f, " = %s(", op_info[n->op].name);
    for (int k = 0; k < n->nin; k++)
      fprintf(f, "%s%%%d", k ? ", " : "", n->in[k]);
    fprintf(f, ") \"%s\" ->", n->name);
    for (int o = 0; o < n->nout; o++) {
      fprintf(f, " ");
      dump_value_type(g, n->out[o], f);
    }
    dump_attrs(n, f);
    if (n->segment >= 0) fprintf(f, " seg=%d", n->segment);
    if (n->dtype_override >= 0)
      fprintf(f, " dtype=%s", dtype_name((DType)n->dtype_override));
    fprintf(f, " @%s\n", loc_str(n->loc, "?"));
  }
  if (g->loss >= 0) fprintf(f, "loss %%%d\n", g->loss);
  for (int v = 0; v < g->nvals; v++)
    if (g->vals[v].is_output && v != g->loss) fprintf(f, "output %%%d\n", v);
  if (!with_step || !g->nins) return;

  for (int b = 0; b < g->nbufs; b++) {
    const Buf *x = &g->bufs[b];
    fprintf(f, "b%d \"%s\" %s %s %lld B%s%s", b, x->name,
            category_name[x->cat], dtype_name(x->dtype), (long long)x->bytes,
            x->persistent ? " persistent" : "", x->zero_init ? " zeroed" : "");
    if (x->offset >= 0 && !x->persistent)
      fprintf(f, " @%lld", (long long)x->offset);
    fprintf(f, "\n");
  }
  for (int i = 0; i < g->nins; i++) {
    const Instr *in = &g->ins[i];
    const char *what = in->kind == IK_OPT || in->kind == IK_SEED ||
                               in->kind == IK_REDUCE
                           ? g->vals[in->node].name
                           : g->nodes[in->node].name;
    fprintf(f, "%d: %s \"%s\" in(", i, instr_name[in->kind], what);
    dump_refs(in->in, in->nin, f);
    fprintf(f, ") out(");
    dump_refs(in->out, in->nout, f);
    for (int k = 0; k < in->nout; k++)
      if (in->accum && in->accum[k] && in->out[k].buf >= 0)
        fprintf(f, "%s+=b%d", k || in->nout ? " " : "", in->out[k].buf);
    fprintf(f, ")");
    if (in->nalloc) {
      fprintf(f, " alloc");
      for (int k = 0; k < in->nalloc; k++) fprintf(f, " b%d", in->alloc[k]);
    }
    if (in->nfree) {
      fprintf(f, " free");
      for (int k = 0; k < in->nfree; k++) fprintf(f, " b%d", in->free[k]);
    }
    fprintf(f, " live=%lld\n", (long long)in->live);
  }
}

/* ---- verification ------------------------------------------------------ */

/* Invariants every pass keeps: operands defined before use, outputs point
 * back at their node, shapes have non-negative extents, views point at an
 * earlier value, instructions name buffers that exist. */
void graph_verify(const Graph *g) {
  for (int v = 0; v < g->nvals; v++) {
    const Value *x = &g->vals[v];
    ASSERT(x->shape.rank >= 0 && x->shape.rank <= MAX_RANK);
    for (int i = 0; i < x->shape.rank; i++) ASSERT(x->shape.dim[i] >= 0);
    ASSERT(x->dtype >= 0 && x->dtype < DT_COUNT);
    ASSERT(x->view_of < v);
    if (x->kind == VK_ACT) {
      ASSERT(x->node >= 0 && x->node < g->nnodes);
      ASSERT(g->nodes[x->node].out[x->out_index] == v);
    }
  }
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    ASSERT(n->op >= 0 && n->op < OP_COUNT);
    for (int k = 0; k < n->nin; k++) {
      int v = n->in[k];
      ASSERT(v >= 0 && v < g->nvals);
      ASSERT(g->vals[v].kind != VK_ACT || g->vals[v].node < i);
    }
    ASSERT(n->nreal <= n->nout);
    ASSERT(n->origin.stmt >= -1 && n->origin.call >= 0);
  }
  ASSERT(g->loss < g->nvals);
  for (int i = 0; i < g->nins; i++) {
    const Instr *in = &g->ins[i];
    for (int k = 0; k < in->nin; k++) ASSERT(in->in[k].buf < g->nbufs);
    for (int k = 0; k < in->nout; k++) ASSERT(in->out[k].buf < g->nbufs);
  }
}
