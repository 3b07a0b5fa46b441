/* ir/init.c: how a run initialises each parameter and fills each input.
 *
 * One answer for every executor (the CPU reference, the CUDA program), so
 * that both draw the same numbers from the same seed (mdlc.h's RunOpts
 * comment, docs/ops.md): a weight of linear or conv2d is Kaiming-uniform
 * with its fan-in, norm weights are ones and biases zeros (running
 * variance ones, mean zeros), anything else normal(0, 1); an integer input
 * draws class ids below the number of classes of the cross_entropy, or
 * token ids below the vocabulary of the embedding, that reads it.
 */
#include "mdlc.h"

static int64_t last_dim(const Shape *s) {
  return s->rank ? s->dim[s->rank - 1] : 1;
}


/* The value a node input really reads: through casts the precision pass
 * inserted, and through views. */
static int source_of(const Graph *g, int v) {
  for (;;) {
    const Value *x = &g->vals[v];
    if (x->view_of >= 0) {
      v = x->view_of;
    } else if (x->kind == VK_ACT && x->node >= 0 &&
               (g->nodes[x->node].op == OP_CAST ||
                g->nodes[x->node].op == OP_RESHAPE)) {
      v = g->nodes[x->node].in[0];
    } else {
      return v;
    }
  }
}

void graph_init_plan(const Graph *g, InitKind *kind, int64_t *fan,
                     int64_t *limit) {
  for (int v = 0; v < g->nvals; v++) {
    kind[v] = INIT_NORMAL;
    fan[v] = 1;
    limit[v] = 2;
  }
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    for (int k = 0; k < n->nin; k++) {
      int s = source_of(g, n->in[k]);
      switch (n->op) {
      case OP_LINEAR:
      case OP_CONV2D:
        if (k >= 1) {
          const Shape *w = &g->vals[source_of(g, n->in[1])].shape;
          kind[s] = INIT_KAIMING;
          fan[s] = 1;
          for (int d = 1; d < w->rank; d++) fan[s] *= w->dim[d];
        }
        break;
      case OP_BATCHNORM:
      case OP_LAYERNORM:
      case OP_INSTANCENORM:
      case OP_GROUPNORM:
        if (k == 1 || k == 4) kind[s] = INIT_ONE;
        if (k == 2 || k == 3) kind[s] = INIT_ZERO;
        break;
      case OP_EMBEDDING:
        if (k == 0) limit[s] = g->vals[n->in[1]].shape.dim[0];
        break;
      case OP_CROSS_ENTROPY:
        if (k == 1) limit[s] = last_dim(&g->vals[n->in[0]].shape);
        break;
      default:
        break;
      }
    }
  }
}

