/* tests/unit/placement_brute.c: pass_placement against brute force.
 *
 * Builds small chains by hand in IR (6 to 10 ops of linear, relu, tanh,
 * gelu, sigmoid, scale, layernorm, dropout, ending in cross_entropy), and
 * for every one enumerates every placement of disjoint segments over the
 * ops before the loss, measuring each with the real passes
 * (pipeline_rebuild_step: autodiff, liveness). For every budget that some
 * placement meets (each distinct peak), the pass must return a placement
 * whose verified peak is within the budget and whose recomputation is the
 * least among the placements that fit; for a budget below every peak it must say it does not fit and
 * report the smallest peak. A smaller budget never needs less work. The
 * pass's own prediction of the peak must equal the real passes' to the
 * byte. 300 chains from a fixed seed (the first 60 were the whole test
 * once; chains 169, 271, 276 and 293 caught the model's old errors).
 */
#include "tests/unit/check.h"

#include <stdlib.h>
#include <string.h>

static uint64_t rng = 88172645463325252ULL;
static int rnd(int n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (int)(rng % (uint64_t)n);
}

static Shape sh2(int64_t a, int64_t b) {
  Shape s = {.rank = 2};
  s.dim[0] = a;
  s.dim[1] = b;
  return s;
}

static int unary(Graph *g, Op op, int x, const char *name) {
  int n = graph_add_node(g, op, name, (int[]){x}, 1, NOLOC);
  Shape s = g->vals[x].shape;
  int y = graph_add_output(g, n, name, DT_F32, &s, false);
  return y;
}

/* A random chain of `len` ops before the loss. */
static Graph *chain(int len, Optimizer opt) {
  Graph *g = graph_new();
  g->model_name = "chain";
  g->cfg.optimizer = opt;
  g->cfg.workspace = 0;
  int64_t rows = 2 + rnd(3), d = 3 + rnd(6);
  Shape s = sh2(rows, d);
  int h = graph_add_value(g, "x", VK_INPUT, DT_F32, &s, NOLOC);
  Shape ts = {.rank = 1};
  ts.dim[0] = rows;
  int y = graph_add_value(g, "y", VK_INPUT, DT_I32, &ts, NOLOC);
  for (int k = 0; k < len; k++) {
    const char *nm = xsprintf("op%d", k);
    switch (rnd(8)) {
    case 0:
    case 1: {
      int64_t out = 2 + rnd(12);
      Shape ws = sh2(out, d), bs = {.rank = 1};
      bs.dim[0] = out;
      int w = graph_add_value(g, xsprintf("%s.weight", nm), VK_PARAM, DT_F32,
                              &ws, NOLOC);
      int b = graph_add_value(g, xsprintf("%s.bias", nm), VK_PARAM, DT_F32,
                              &bs, NOLOC);
      int n = graph_add_node(g, OP_LINEAR, nm, (int[]){h, w, b}, 3, NOLOC);
      g->nodes[n].a.linear.out = out;
      g->nodes[n].a.linear.bias = true;
      d = out;
      s = sh2(rows, d);
      h = graph_add_output(g, n, nm, DT_F32, &s, false);
      break;
    }
    case 2: h = unary(g, OP_RELU, h, nm); break;
    case 3: h = unary(g, OP_TANH, h, nm); break;
    case 4: h = unary(g, OP_GELU, h, nm); break;
    case 5: {
      h = unary(g, OP_SCALE, h, nm);
      g->nodes[g->nnodes - 1].a.scale.c = 0.5;
      break;
    }
    case 6: {
      int n = graph_add_node(g, OP_DROPOUT, nm, (int[]){h}, 1, NOLOC);
      g->nodes[n].a.dropout.p = 0.1;
      s = sh2(rows, d);
      int o = graph_add_output(g, n, nm, DT_F32, &s, false);
      graph_add_output(g, n, xsprintf("%s.mask", nm), DT_U8, &s, true);
      h = o;
      break;
    }
    default: {
      Shape ws = {.rank = 1};
      ws.dim[0] = d;
      int w = graph_add_value(g, xsprintf("%s.weight", nm), VK_PARAM, DT_F32,
                              &ws, NOLOC);
      int b = graph_add_value(g, xsprintf("%s.bias", nm), VK_PARAM, DT_F32,
                              &ws, NOLOC);
      int n = graph_add_node(g, OP_LAYERNORM, nm, (int[]){h, w, b}, 3, NOLOC);
      g->nodes[n].a.norm.eps = 1e-5;
      s = sh2(rows, d);
      int o = graph_add_output(g, n, nm, DT_F32, &s, false);
      Shape st = {.rank = 1};
      st.dim[0] = rows;
      graph_add_output(g, n, xsprintf("%s.mean", nm), DT_F32, &st, true);
      graph_add_output(g, n, xsprintf("%s.rstd", nm), DT_F32, &st, true);
      h = o;
      break;
    }
    }
  }
  int n = graph_add_node(g, OP_CROSS_ENTROPY, "loss", (int[]){h, y}, 2, NOLOC);
  Shape scalar = {0};
  int loss = graph_add_output(g, n, "loss", DT_F32, &scalar, false);
  s = sh2(rows, d);
  graph_add_output(g, n, "logprobs", DT_F32, &s, true);
  g->vals[loss].is_output = true;
  g->loss = loss;
  graph_verify(g);
  pipeline_plan(g);
  return g;
}

typedef struct {
  int64_t peak, cost;
} Point;

static Point *pts;
static int npts, cappts;
static int seg[32];

static void measure(Graph *g, int m) {
  int ns = 0;
  for (int i = 0; i < g->nnodes; i++) g->nodes[i].segment = i < m ? seg[i] : -1;
  for (int i = 0; i < m; i++) ns = seg[i] + 1 > ns ? seg[i] + 1 : ns;
  g->nsegments = ns;
  g->segment_loc = xalloc(sizeof(Loc) * (size_t)(ns + 1));
  pipeline_rebuild_step(g);
  int64_t c = 0;
  for (int i = 0; i < m; i++)
    if (seg[i] >= 0) c += op_flops(g, i);
  *VEC_PUSH(pts, npts, cappts) = (Point){g->peak, c};
}

/* every placement of disjoint segments over nodes [i, m) */
static void enumerate(Graph *g, int i, int m, int nseg) {
  if (i == m) {
    measure(g, m);
    return;
  }
  seg[i] = -1;
  enumerate(g, i + 1, m, nseg);
  for (int j = i; j < m; j++) {
    for (int k = i; k <= j; k++) seg[k] = nseg;
    enumerate(g, j + 1, m, nseg + 1);
  }
  for (int k = i; k < m; k++) seg[k] = -1;
}

static int cmp64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

int main(void) {
  int chains = 0, budgets = 0, exact_model = 0, placements = 0;
  for (int trial = 0; trial < 300; trial++) {
    int len = 6 + rnd(4);
    Optimizer opt = (Optimizer)rnd(OPTIM_COUNT);
    Graph *g = chain(len, opt);
    int m = g->nnodes - 1; /* every op but the loss */
    npts = 0;
    enumerate(g, 0, m, 0);
    int64_t *peaks = xalloc(sizeof(int64_t) * (size_t)npts);
    int64_t minpeak = INT64_MAX;
    for (int p = 0; p < npts; p++) {
      peaks[p] = pts[p].peak;
      if (pts[p].peak < minpeak) minpeak = pts[p].peak;
    }
    qsort(peaks, (size_t)npts, sizeof *peaks, cmp64);
    chains++;
    int64_t prev_cost = -1;
    /* budgets from large to small */
    for (int p = npts - 1; p >= 0; p--) {
      if (p < npts - 1 && peaks[p] == peaks[p + 1]) continue;
      int64_t B = peaks[p];
      int64_t best = INT64_MAX;
      for (int q = 0; q < npts; q++)
        if (pts[q].peak <= B && pts[q].cost < best) best = pts[q].cost;
      Placement r;
      bool fits = pass_placement(g, B, NULL, &r);
      budgets++;
      placements++;
      exact_model += r.verified_model;
      CHECK(r.verified_model, "trial %d: budget %lld: the model predicted "
            "%lld, the real passes %lld", trial, (long long)B,
            (long long)r.model_peak, (long long)r.peak);
      CHECK(fits, "trial %d: budget %lld fits (brute force) but the pass "
            "says no (reached %lld)", trial, (long long)B, (long long)r.peak);
      CHECK(g->peak <= B, "trial %d: verified peak %lld over budget %lld",
            trial, (long long)g->peak, (long long)B);
      CHECK(r.peak == g->peak, "trial %d: reported peak %lld, graph %lld",
            trial, (long long)r.peak, (long long)g->peak);
      CHECK(r.extra_flops == best, "trial %d (len %d, %s): budget %lld: "
            "%lld FLOPs recomputed, brute force needs %lld", trial, len,
            optimizer_name[opt], (long long)B, (long long)r.extra_flops,
            (long long)best);
      int64_t c = 0;
      for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i].segment >= 0) c += op_flops(g, i);
      CHECK(c == r.extra_flops, "trial %d: reported %lld FLOPs, segments "
            "hold %lld", trial, (long long)r.extra_flops, (long long)c);
      CHECK(r.extra_flops >= prev_cost, "trial %d: smaller budget %lld "
            "needs less work", trial, (long long)B);
      prev_cost = r.extra_flops;
    }
    /* below every peak: no fit, and the smallest peak reported */
    Placement r;
    bool fits = pass_placement(g, minpeak - 1, NULL, &r);
    CHECK(!fits, "trial %d: budget below the minimum fits", trial);
    CHECK(r.peak == minpeak, "trial %d: smallest peak %lld, brute force %lld",
          trial, (long long)r.peak, (long long)minpeak);
  }
  if (failures) {
    fprintf(stderr, "%d failures\n", failures);
    return 1;
  }
  printf("placement: %d chains, %d budgets: optimal every time "
         "(model exact in %d of %d)\n",
         chains, budgets, exact_model, placements);
  return 0;
}
