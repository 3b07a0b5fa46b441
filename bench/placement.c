/* bench/placement.c: checkpoint placement on a 1,000-block chain.
 *
 * The chain: input [4096, 128] -> 1000 x (linear 128->128, gelu) -> linear
 * -> cross_entropy, fp32, adamw, built in IR. Baseline: PyTorch's
 * checkpoint_sequential(k segments): k equal runs of blocks, every run
 * but the last checkpointed, its peak measured with our own passes. For
 * each k: pass_placement at the baseline's peak (least recomputation at
 * the same budget), and the lowest peak of a placement that recomputes
 * no more than the baseline (same work): the budget bisected with the
 * real pass, 12 steps between the smallest reachable peak and the
 * baseline's.
 * Prints a table; exits 1 if placement is ever worse or takes over 2 s.
 */
#include "mdlc.h"

#include <time.h>

enum { BLOCKS = 1000, D = 128, ROWS = 4096 };

static Shape sh2(int64_t a, int64_t b) {
  Shape s = {.rank = 2};
  s.dim[0] = a;
  s.dim[1] = b;
  return s;
}

static int linear(Graph *g, int x, int64_t in, int64_t out, const char *nm) {
  Shape ws = sh2(out, in), bs = {.rank = 1}, s = sh2(ROWS, out);
  bs.dim[0] = out;
  int w = graph_add_value(g, xsprintf("%s.weight", nm), VK_PARAM, DT_F32, &ws, NOLOC);
  int b = graph_add_value(g, xsprintf("%s.bias", nm), VK_PARAM, DT_F32, &bs, NOLOC);
  int n = graph_add_node(g, OP_LINEAR, nm, (int[]){x, w, b}, 3, NOLOC);
  g->nodes[n].a.linear.out = out;
  g->nodes[n].a.linear.bias = true;
  return graph_add_output(g, n, nm, DT_F32, &s, false);
}

static Graph *build(void) {
  Graph *g = graph_new();
  g->model_name = "chain1000";
  g->cfg.optimizer = OPTIM_ADAMW;
  Shape s = sh2(ROWS, D), ts = {.rank = 1};
  ts.dim[0] = ROWS;
  int h = graph_add_value(g, "x", VK_INPUT, DT_F32, &s, NOLOC);
  int y = graph_add_value(g, "y", VK_INPUT, DT_I32, &ts, NOLOC);
  for (int k = 0; k < BLOCKS; k++) {
    h = linear(g, h, D, D, xsprintf("block[%d]/fc", k));
    int n = graph_add_node(g, OP_GELU, xsprintf("block[%d]/act", k), (int[]){h}, 1, NOLOC);
    h = graph_add_output(g, n, g->nodes[n].name, DT_F32, &s, false);
  }
  h = linear(g, h, D, 10, "head");
  int n = graph_add_node(g, OP_CROSS_ENTROPY, "loss", (int[]){h, y}, 2, NOLOC);
  Shape sc = {0}, ls = sh2(ROWS, 10);
  int loss = graph_add_output(g, n, "loss", DT_F32, &sc, false);
  graph_add_output(g, n, "logprobs", DT_F32, &ls, true);
  g->vals[loss].is_output = true;
  g->loss = loss;
  pipeline_plan(g);
  return g;
}

/* checkpoint_sequential(k): runs of blocks, all but the last segmented */
static void sequential(Graph *g, int k, int64_t *peak, int64_t *flops) {
  int per = (BLOCKS + k - 1) / k;
  *flops = 0;
  for (int i = 0; i < g->nnodes; i++) {
    Node *n = &g->nodes[i];
    int blk = i / 2, s = blk / per;
    n->segment = i < 2 * BLOCKS && s < k - 1 ? s : -1;
    if (n->segment >= 0) *flops += op_flops(g, i);
  }
  g->nsegments = k - 1;
  g->segment_loc = xalloc(sizeof(Loc) * (size_t)k);
  pipeline_rebuild_step(g);
  *peak = g->peak;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(void) {
  Graph *g = build();
  int64_t base = g->peak;
  char b1[32], b2[32], b3[32];
  int bad = 0;
  double worst = 0, t_start = now();
  printf("chain of %d blocks (linear %d->%d, gelu), batch rows %d, fp32 adamw\n",
         BLOCKS, D, D, ROWS);
  printf("no checkpoints: peak %s\n", fmt_bytes(base, b1));
  enum { NK = 3 };
  int ks[NK] = {16, 32, 64};
  int64_t sp[NK], sf[NK], p1[NK], f1[NK];
  double dt[NK];
  /* the placement at the baseline's peak, timed */
  for (int j = 0; j < NK; j++) {
    sequential(g, ks[j], &sp[j], &sf[j]);
    Placement r;
    double t0 = now();
    bool fits = pass_placement(g, sp[j], NULL, &r);
    dt[j] = now() - t0;
    if (dt[j] > worst) worst = dt[j];
    p1[j] = r.peak, f1[j] = r.extra_flops;
    if (!fits || f1[j] > sf[j]) bad++;
  }
  /* the smallest peak any placement reaches (pass_placement's own
   * bisection, when a budget of 0 cannot be met) */
  Placement r0;
  pass_placement(g, 0, NULL, &r0);
  int64_t minpeak = r0.peak;
  printf("smallest peak any placement reaches: %s\n\n", fmt_bytes(minpeak, b1));
  printf("%-4s | %-28s | %-28s | %-26s | %s\n", "k",
         "checkpoint_sequential(k)", "placement, same budget",
         "placement, same work", "time");
  printf("%-4s | %-12s %15s | %-12s %15s | %-12s %13s |\n", "", "peak",
         "recompute", "peak", "recompute", "peak", "recompute");
  for (int j = 0; j < NK; j++) {
    /* the lowest peak whose placement recomputes at most sf FLOPs: bisect
     * the budget between the smallest reachable peak and the baseline's
     * (6 steps; every budget there fits, so each is one placement) */
    int64_t lo = minpeak, hi = sp[j], best = p1[j], best_f = f1[j];
    for (int step = 0; step < 6 && lo < hi; step++) {
      int64_t mid = lo + (hi - lo) / 2;
      Placement r;
      if (pass_placement(g, mid, NULL, &r) && r.extra_flops <= sf[j]) {
        hi = mid;
        best = r.peak;
        best_f = r.extra_flops;
      } else {
        lo = mid + 1;
      }
    }
    if (best > sp[j] || best_f > sf[j]) bad++;
    printf("%-4d | %-12s %15lld | %-12s %15lld | %-12s %13lld | %.3f s\n",
           ks[j], fmt_bytes(sp[j], b1), (long long)sf[j], fmt_bytes(p1[j], b2),
           (long long)f1[j], fmt_bytes(best, b3), (long long)best_f, dt[j]);
    fflush(stdout);
  }
  printf("\nslowest placement: %.3f s (goal: under 2 s); bench %.1f s\n", worst,
         now() - t_start);
  if (worst > 2.0) bad++;
  return bad ? 1 : 0;
}
