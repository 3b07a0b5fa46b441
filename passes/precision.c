/* passes/precision.c: the precision policy.
 *
 * Decides the stored dtype of every value and makes every dtype change an
 * explicit OP_CAST node, a tensor with its own lifetime, as memory.md asks.
 * One sweep in program order: a node's operands are final when it is
 * reached, so its compute dtype and its outputs' dtypes follow at once.
 *
 *   policy        params  compute dtype of an op          casts inserted
 *   fp32          f32     widest float operand            narrower operands
 *   *_mixed       f32     matmul-like: 16-bit; norms,     operands not in the
 *                         softmax, losses: f32; else as   compute dtype
 *                         its operands
 *   pure, master  16-bit  16-bit (norm statistics f32)    f32 operands
 * `dtype = D` on a call sets its compute and output dtype to D.
 *
 * Elementwise ops of class PC_WIDEST (add, mul, concat) read operands of
 * different float dtypes directly and write the widest, as PyTorch's type
 * promotion does, so they need no cast. A cast of a value to a dtype is
 * made once, before its first consumer, and shared by every later one (for
 * weights this is autocast's cast cache: the copy lives from its first use
 * to its last).
 *
 * Requires: the frontend's graph (floats f32 unless declared otherwise).
 * Maintains: program order; every consumer after its operands.
 * Changes: node indices (casts are inserted); Value.node is renumbered.
 */
#include "mdlc.h"

#include <string.h>

static int widest(DType a, DType b) {
  if (a == DT_F32 || b == DT_F32) return DT_F32;
  return a; /* f16 with bf16 is not produced by any policy; keep the first */
}

typedef struct {
  Graph *g;
  Node *old;       /* the nodes before the pass */
  int nold;
  int *cast_of;    /* value * 3 + (dtype) -> cast value, or -1 */
  int ncast_of;    /* values covered by cast_of */
  DType lo;        /* the policy's 16-bit type */
  int kind;        /* 0 fp32, 1 mixed, 2 pure or master */
} Prec;

static int cast_slot(DType t) { return t == DT_F32 ? 0 : t == DT_F16 ? 1 : 2; }

/* The value `v` as dtype `t`: itself, or a (shared) cast made now. The
 * cast joins `seg`, the segment of the node that first needs it. */
static int cast_to(Prec *p, int v, DType t, int seg, Origin at) {
  Graph *g = p->g;
  if (g->vals[v].dtype == t) return v;
  int *slot = &p->cast_of[v * 3 + cast_slot(t)];
  if (*slot >= 0) return *slot;
  const Value *x = &g->vals[v];
  const char *name = xsprintf("%s:%s", x->name, dtype_name(t));
  Loc loc = x->loc;
  int n = graph_add_node(g, OP_CAST, name, &v, 1, loc);
  /* named and placed as v; stamped, like its segment, with the statement of
   * the consumer it is made for, so a boundary that --emit-mdl writes never
   * falls between a cast and that consumer */
  g->nodes[n].origin = at;
  g->nodes[n].a.cast.to = t;
  g->nodes[n].segment = seg;
  Shape sh = g->vals[v].shape;
  int c = graph_add_output(g, n, name, t, &sh, false);
  if (g->nvals > p->ncast_of) { /* grows with the values, doubling */
    int cap = 2 * g->nvals;
    p->cast_of = xrealloc_array(p->cast_of, 3 * (size_t)p->ncast_of,
                                3 * (size_t)cap, sizeof(int));
    for (int i = 3 * p->ncast_of; i < 3 * cap; i++) p->cast_of[i] = -1;
    p->ncast_of = cap;
  }
  p->cast_of[v * 3 + cast_slot(t)] = c;
  return c;
}

/* The compute dtype of node n, or -1 for "keep each operand's own". */
static int compute_dtype(const Prec *p, const Node *n) {
  const Graph *g = p->g;
  if (n->dtype_override >= 0) return n->dtype_override;
  PrecClass cls = op_info[n->op].cls;
  if (n->op == OP_CAST) return -1;
  if (p->kind == 2) return p->lo;
  if (p->kind == 1 && cls == PC_MATMUL) return p->lo;
  if (p->kind == 1 && cls == PC_F32) return DT_F32;
  if (cls == PC_MATMUL || cls == PC_F32) {
    /* fp32 policy (or mixed with nothing to say): the widest operand */
    int w = -1;
    for (int k = 0; k < n->nin; k++) {
      DType t = g->vals[n->in[k]].dtype;
      if (!dtype_is_float(t)) continue;
      w = w < 0 ? (int)t : widest((DType)w, t);
    }
    return w;
  }
  return -1;
}

/* Output dtype of a real output of n once its operands are final. */
static DType output_dtype(const Graph *g, const Node *n, int cd) {
  switch (op_info[n->op].cls) {
  case PC_WIDEST: {
    int w = -1;
    for (int k = 0; k < n->nin; k++) {
      DType t = g->vals[n->in[k]].dtype;
      if (dtype_is_float(t)) w = w < 0 ? (int)t : widest((DType)w, t);
    }
    return w < 0 ? g->vals[n->in[0]].dtype : (DType)w;
  }
  case PC_KEEP:
    if (n->op == OP_CAST) return n->a.cast.to;
    if (n->op == OP_EMBEDDING) return g->vals[n->in[1]].dtype;
    return g->vals[n->in[0]].dtype;
  case PC_MATMUL:
  case PC_F32:
    return cd >= 0 ? (DType)cd : g->vals[n->in[0]].dtype;
  }
  ICE("output_dtype: class %d", (int)op_info[n->op].cls);
}

void pass_precision(Graph *g) {
  Prec p = {.g = g};
  Precision pol = g->cfg.precision;
  p.lo = (pol == PREC_BF16 || pol == PREC_BF16_MIXED || pol == PREC_BF16_MASTER)
             ? DT_BF16 : DT_F16;
  p.kind = pol == PREC_FP32 ? 0
           : (pol == PREC_FP16_MIXED || pol == PREC_BF16_MIXED) ? 1 : 2;

  /* Parameters and running statistics are stored 16-bit in the pure and
   * master policies (the master copy is a separate buffer, made by
   * autodiff). */
  if (p.kind == 2)
    for (int v = 0; v < g->nvals; v++) {
      Value *x = &g->vals[v];
      if ((x->kind == VK_PARAM || x->kind == VK_STATE) &&
          dtype_is_float(x->dtype))
        x->dtype = p.lo;
    }

  p.ncast_of = g->nvals ? g->nvals : 1;
  p.cast_of = xalloc(sizeof(int) * 3 * (size_t)p.ncast_of);
  for (int i = 0; i < 3 * p.ncast_of; i++) p.cast_of[i] = -1;

  /* Rebuild the node list, inserting casts before their first consumer. */
  p.old = g->nodes;
  p.nold = g->nnodes;
  g->nodes = NULL;
  g->nnodes = g->capnodes = 0;
  for (int i = 0; i < p.nold; i++) {
    Node n = p.old[i];
    int cd = compute_dtype(&p, &n);
    if (cd >= 0) {
      for (int k = 0; k < n.nin; k++) {
        int v = n.in[k];
        DType t = g->vals[v].dtype;
        /* norm running statistics stay as stored: they are not computed on */
        if (!dtype_is_float(t) || g->vals[v].kind == VK_STATE) continue;
        /* PC_F32 ops in mixed policies cast only activations; their f32
         * weights already match. Norm weights in pure policies stay 16-bit
         * (the norm computes in f32 internally). */
        if (op_info[n.op].cls == PC_WIDEST && n.dtype_override < 0 &&
            p.kind != 2)
          continue;
        if (p.kind == 2 && n.dtype_override < 0 && t == p.lo) continue;
        n.in[k] = cast_to(&p, v, (DType)cd, n.segment, n.origin);
      }
    }
    int idx = g->nnodes;
    *VEC_PUSH(g->nodes, g->nnodes, g->capnodes) = n;
    for (int o = 0; o < n.nout; o++) {
      Value *x = &g->vals[n.out[o]];
      x->node = idx;
      if (x->is_extra) {
        /* statistics are f32; masks u8; logprobs follow the loss dtype */
        if (n.op == OP_CROSS_ENTROPY)
          x->dtype = output_dtype(g, &n, cd);
        continue;
      }
      x->dtype = output_dtype(g, &n, cd);
    }
  }
}
