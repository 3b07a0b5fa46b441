/* ir/init.c: how a run initialises each parameter and fills each input.
 *
 * One answer for every executor (the CPU reference, the CUDA program), so
 * that both draw the same numbers from the same seed (mdlc.h's RunOpts
 * comment, docs/ops.md): a weight of linear or conv2d is Kaiming-uniform
 * with its fan-in, norm weights are ones and biases zeros (running
 * variance ones, mean zeros), anything else normal(0, 1); an integer input
 * draws class ids below the number of classes of the cross_entropy, or
 * token ids below the vocabulary of the embedding, that reads it. A value
 * read by several ops takes the initialisation of the first.
 */
#include "mdlc.h"

int init_source(const Graph *g, int v) {
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
  /* A value used by several ops (a tied weight, a shared block's
   * parameter) is initialised by its first user in program order, as
   * PyTorch's weight tying keeps the first module's initialisation. */
  int *owner = xalloc(sizeof(int) * (size_t)(g->nvals + 1));
  for (int v = 0; v < g->nvals; v++) owner[v] = -1;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op == OP_CAST || (op_info[n->op].flags & OF_VIEW)) continue;
    for (int k = 0; k < n->nin; k++) {
      int s = init_source(g, n->in[k]);
      if (owner[s] < 0) owner[s] = i;
      if (owner[s] == i && op_def[n->op]->init)
        op_def[n->op]->init(g, n, k, s, kind, fan, limit);
    }
  }
}

