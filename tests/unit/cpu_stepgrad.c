/* tests/unit/cpu_stepgrad.c: the gradient of a whole step, as the
 * executor runs it (autodiff's schedule, views, hand-offs, accumulation,
 * recomputed segments), against finite differences of the step's loss.
 *
 * For every element of every parameter: the executor's gradient is read
 * off one SGD step with lr = 1 (g = p_before - p_after, exact to an f32
 * ulp); the numeric one perturbs that element after initialisation
 * (CpuStats' probe) and differences the first loss, with h = 1/64 and
 * 1/128 combined by Richardson extrapolation. Dropout draws the same mask
 * in every run (same seed, same step). Tolerance 3e-3 + 2e-2 |numeric|;
 * prints the worst element per model. Models, built in IR:
 *   block      linear, layernorm, gelu, dropout, linear, residual add
 *              (gradient hand-off), cross_entropy; also with the middle
 *              as a checkpointed segment
 *   attention  linear -> split (strided views) -> reshape -> transpose ->
 *              matmul (transpose_b) -> scale -> causal softmax -> matmul
 *              -> transpose -> reshape (view) -> linear -> add -> mse
 *   embed      embedding (repeated ids), broadcast add and mul, m + m
 *              (hand-off, then accumulation into the same buffer), tanh,
 *              concat, silu, cross_entropy over [2, 4, 5]
 *   cnn        conv2d (pad, then stride 2 with groups), batchnorm,
 *              sigmoid, maxpool, avgpool (pad), global_avgpool, linear
 *   llama_tiny (tests/unit/data/llama_tiny.mdl, through the frontend)
 *              rmsnorm, split by sizes, rope, grouped-query causal sdpa
 *              with dropout, SwiGLU, mean, sum, slice
 *   mamba_tiny (tests/unit/data/mamba_tiny.mdl) causal depthwise and
 *              dilated padded conv1d, softplus, selective_scan, a tied
 *              embedding and head
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/check.h"

static Shape shp(int rank, const int64_t *d) {
  Shape s = {.rank = rank};
  for (int i = 0; i < rank; i++) s.dim[i] = d[i];
  return s;
}
#define SH(...)                                                              \
  shp((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),             \
      (int64_t[]){__VA_ARGS__})

static int param(Graph *g, const char *name, Shape s) {
  return graph_add_value(g, name, VK_PARAM, DT_F32, &s, NOLOC);
}

static int node1(Graph *g, Op op, const char *name, const int *in, int nin,
                 Shape s) {
  int n = graph_add_node(g, op, name, in, nin, NOLOC);
  return graph_add_output(g, n, name, DT_F32, &s, false);
}

static int last_node(const Graph *g) { return g->nnodes - 1; }

/* x [..., in] with rows*in elements -> [..., out] (shape sy). */
static int linear(Graph *g, const char *name, int x, int64_t in, int64_t out,
                  Shape sy) {
  int w = param(g, xsprintf("%s.weight", name), SH(out, in));
  int b = param(g, xsprintf("%s.bias", name), SH(out));
  int y = node1(g, OP_LINEAR, name, (int[]){x, w, b}, 3, sy);
  g->nodes[last_node(g)].a.linear.out = out;
  g->nodes[last_node(g)].a.linear.bias = true;
  return y;
}

static void set_loss(Graph *g, Op op, const char *name, int a, int b,
                     Shape extra) {
  int n = graph_add_node(g, op, name, (int[]){a, b}, 2, NOLOC);
  Shape scalar = {0};
  g->loss = graph_add_output(g, n, name, DT_F32, &scalar, false);
  if (op == OP_CROSS_ENTROPY)
    graph_add_output(g, n, "logprobs", DT_F32, &extra, true);
  g->vals[g->loss].is_output = true;
}

static Graph *new_graph(const char *name) {
  Graph *g = graph_new();
  g->model_name = name;
  g->cfg.optimizer = OPTIM_SGD;
  g->cfg.precision = PREC_FP32;
  g->cfg.workspace = 0;
  return g;
}

static Graph *block(bool seg) {
  enum { R = 4, D = 5, H = 6, C = 3 };
  Graph *g = new_graph("block");
  Shape s = SH(R, D);
  int x = graph_add_value(g, "x", VK_INPUT, DT_F32, &s, NOLOC);
  s = SH(R);
  int y = graph_add_value(g, "y", VK_INPUT, DT_I32, &s, NOLOC);
  int h = linear(g, "l0", x, D, H, SH(R, H));
  int first = g->nnodes;
  int lw = param(g, "ln.weight", SH(H)), lb = param(g, "ln.bias", SH(H));
  int t = node1(g, OP_LAYERNORM, "ln", (int[]){h, lw, lb}, 3, SH(R, H));
  g->nodes[last_node(g)].a.norm.eps = 1e-5;
  s = SH(R);
  graph_add_output(g, last_node(g), "ln.mean", DT_F32, &s, true);
  graph_add_output(g, last_node(g), "ln.rstd", DT_F32, &s, true);
  t = linear(g, "l1", t, H, H, SH(R, H));
  t = node1(g, OP_GELU, "gelu", (int[]){t}, 1, SH(R, H));
  t = node1(g, OP_DROPOUT, "drop", (int[]){t}, 1, SH(R, H));
  g->nodes[last_node(g)].a.dropout.p = 0.3;
  s = SH(R, H);
  graph_add_output(g, last_node(g), "drop.mask", DT_U8, &s, true);
  t = linear(g, "l2", t, H, H, SH(R, H));
  if (seg) {
    g->nsegments = 1;
    g->segment_loc = xalloc(sizeof(Loc));
    g->segment_loc[0] = NOLOC;
    for (int i = first; i < g->nnodes; i++) g->nodes[i].segment = 0;
  }
  t = node1(g, OP_ADD, "res", (int[]){h, t}, 2, SH(R, H));
  t = linear(g, "head", t, H, C, SH(R, C));
  set_loss(g, OP_CROSS_ENTROPY, "loss", t, y, SH(R, C));
  plan_step(g);
  return g;
}

/* A view of x (root-relative geometry, as the frontend builds them). */
static int view(Graph *g, int node, int x, Shape s, int64_t off,
                const int64_t *st, const char *name) {
  int v = graph_add_output(g, node, name, DT_F32, &s, false);
  g->vals[v].view_of = x;
  g->vals[v].view_offset = off;
  memcpy(g->vals[v].stride, st, sizeof(int64_t) * (size_t)s.rank);
  return v;
}

static Graph *attention(void) {
  enum { B = 2, S = 4, D = 6, NH = 2, DH = 3 };
  Graph *g = new_graph("attention");
  Shape s = SH(B, S, D);
  int x = graph_add_value(g, "x", VK_INPUT, DT_F32, &s, NOLOC);
  int tg = graph_add_value(g, "t", VK_INPUT, DT_F32, &s, NOLOC);
  int qkv = linear(g, "qkv", x, D, 3 * D, SH(B, S, 3 * D));
  int n = graph_add_node(g, OP_SPLIT, "split", (int[]){qkv}, 1, NOLOC);
  g->nodes[n].a.split.n = 3;
  g->nodes[n].a.split.axis = 2;
  int part[3], head[3];
  for (int i = 0; i < 3; i++)
    part[i] = view(g, n, qkv, SH(B, S, D), i * D,
                   (int64_t[]){S * 3 * D, 3 * D, 1}, xsprintf("p%d", i));
  for (int i = 0; i < 3; i++) {
    n = graph_add_node(g, OP_RESHAPE, "r", (int[]){part[i]}, 1, NOLOC);
    int r = view(g, n, part[i], SH(B, S, NH, DH), i * D,
                 (int64_t[]){S * 3 * D, 3 * D, DH, 1}, xsprintf("r%d", i));
    head[i] = node1(g, OP_TRANSPOSE, xsprintf("t%d", i), (int[]){r}, 1,
                    SH(B, NH, S, DH));
    g->nodes[last_node(g)].a.transpose.a = 1;
    g->nodes[last_node(g)].a.transpose.b = 2;
  }
  int sc = node1(g, OP_MATMUL, "qk", (int[]){head[0], head[1]}, 2,
                 SH(B, NH, S, S));
  g->nodes[last_node(g)].a.matmul.tb = true;
  sc = node1(g, OP_SCALE, "scale", (int[]){sc}, 1, SH(B, NH, S, S));
  g->nodes[last_node(g)].a.scale.c = 1 / sqrt((double)DH);
  sc = node1(g, OP_SOFTMAX, "softmax", (int[]){sc}, 1, SH(B, NH, S, S));
  g->nodes[last_node(g)].a.softmax.causal = true;
  int o = node1(g, OP_MATMUL, "pv", (int[]){sc, head[2]}, 2,
                SH(B, NH, S, DH));
  o = node1(g, OP_TRANSPOSE, "tback", (int[]){o}, 1, SH(B, S, NH, DH));
  g->nodes[last_node(g)].a.transpose.a = 1;
  g->nodes[last_node(g)].a.transpose.b = 2;
  n = graph_add_node(g, OP_RESHAPE, "merge", (int[]){o}, 1, NOLOC);
  o = view(g, n, o, SH(B, S, D), 0, (int64_t[]){S * D, D, 1}, "merge");
  o = linear(g, "proj", o, D, D, SH(B, S, D));
  o = node1(g, OP_ADD, "res", (int[]){x, o}, 2, SH(B, S, D));
  set_loss(g, OP_MSE, "loss", o, tg, SH(1));
  plan_step(g);
  return g;
}

static Graph *embed(void) {
  enum { B = 2, S = 4, V = 7, D = 3, C = 5 };
  Graph *g = new_graph("embed");
  Shape s = SH(B, S);
  int ids = graph_add_value(g, "ids", VK_INPUT, DT_I32, &s, NOLOC);
  int y = graph_add_value(g, "y", VK_INPUT, DT_I32, &s, NOLOC);
  int w = param(g, "emb.weight", SH(V, D));
  int e = node1(g, OP_EMBEDDING, "emb", (int[]){ids, w}, 2, SH(B, S, D));
  g->nodes[last_node(g)].a.embedding.vocab = V;
  g->nodes[last_node(g)].a.embedding.dim = D;
  int pos = param(g, "pos", SH(S, D));
  int a = node1(g, OP_ADD, "addpos", (int[]){e, pos}, 2, SH(B, S, D));
  int gm = param(g, "gamma", SH(D));
  int m = node1(g, OP_MUL, "mul", (int[]){a, gm}, 2, SH(B, S, D));
  int m2 = node1(g, OP_ADD, "twice", (int[]){m, m}, 2, SH(B, S, D));
  int t = node1(g, OP_TANH, "tanh", (int[]){m2}, 1, SH(B, S, D));
  int c = node1(g, OP_CONCAT, "cat", (int[]){m2, t}, 2, SH(B, S, 2 * D));
  g->nodes[last_node(g)].a.concat.axis = 2;
  c = node1(g, OP_SILU, "silu", (int[]){c}, 1, SH(B, S, 2 * D));
  int lg = linear(g, "head", c, 2 * D, C, SH(B, S, C));
  set_loss(g, OP_CROSS_ENTROPY, "loss", lg, y, SH(B, S, C));
  plan_step(g);
  return g;
}

static void conv_attrs(Node *n, int64_t out, int64_t k, int64_t stride,
                       int64_t pad, int64_t groups) {
  n->a.conv.out = out;
  n->a.conv.kernel = k;
  n->a.conv.stride = stride;
  n->a.conv.pad = pad;
  n->a.conv.dilation = 1;
  n->a.conv.groups = groups;
  n->a.conv.bias = true;
}

static Graph *cnn(void) {
  enum { N = 2, C = 2, H = 6 };
  Graph *g = new_graph("cnn");
  Shape s = SH(N, C, H, H);
  int x = graph_add_value(g, "x", VK_INPUT, DT_F32, &s, NOLOC);
  s = SH(N);
  int y = graph_add_value(g, "y", VK_INPUT, DT_I32, &s, NOLOC);
  int w = param(g, "c1.weight", SH(4, C, 3, 3)), b = param(g, "c1.bias", SH(4));
  int t = node1(g, OP_CONV2D, "c1", (int[]){x, w, b}, 3, SH(N, 4, H, H));
  conv_attrs(&g->nodes[last_node(g)], 4, 3, 1, 1, 1);
  int bw = param(g, "bn.weight", SH(4)), bb = param(g, "bn.bias", SH(4));
  s = SH(4);
  int rm = graph_add_value(g, "bn.mean", VK_STATE, DT_F32, &s, NOLOC);
  int rv = graph_add_value(g, "bn.var", VK_STATE, DT_F32, &s, NOLOC);
  t = node1(g, OP_BATCHNORM, "bn", (int[]){t, bw, bb, rm, rv}, 5,
            SH(N, 4, H, H));
  g->nodes[last_node(g)].a.norm.eps = 1e-5;
  graph_add_output(g, last_node(g), "bn.m", DT_F32, &s, true);
  graph_add_output(g, last_node(g), "bn.r", DT_F32, &s, true);
  t = node1(g, OP_SIGMOID, "sig", (int[]){t}, 1, SH(N, 4, H, H));
  t = node1(g, OP_MAXPOOL2D, "mp", (int[]){t}, 1, SH(N, 4, 3, 3));
  g->nodes[last_node(g)].a.pool.kernel = 2;
  g->nodes[last_node(g)].a.pool.stride = 2;
  w = param(g, "c2.weight", SH(6, 2, 2, 2));
  b = param(g, "c2.bias", SH(6));
  t = node1(g, OP_CONV2D, "c2", (int[]){t, w, b}, 3, SH(N, 6, 2, 2));
  conv_attrs(&g->nodes[last_node(g)], 6, 2, 2, 1, 2);
  t = node1(g, OP_AVGPOOL2D, "ap", (int[]){t}, 1, SH(N, 6, 2, 2));
  g->nodes[last_node(g)].a.pool.kernel = 3;
  g->nodes[last_node(g)].a.pool.stride = 1;
  g->nodes[last_node(g)].a.pool.pad = 1;
  t = node1(g, OP_GLOBAL_AVGPOOL, "gap", (int[]){t}, 1, SH(N, 6));
  t = linear(g, "fc", t, 6, 3, SH(N, 3));
  set_loss(g, OP_CROSS_ENTROPY, "loss", t, y, SH(N, 3));
  plan_step(g);
  return g;
}

static float run(Graph *g, int pv, int64_t pi, float delta, float *before,
                 float *after) {
  float loss;
  CpuStats st = {.losses = &loss, .perturb_value = pv, .perturb_index = pi,
                 .perturb_delta = delta, .probe_value = before ? pv : -1,
                 .probe_before = before, .probe_after = after};
  RunOpts o = {.steps = 1, .lr = 1.0, .quiet = true, .seed = 3};
  int rc = cpu_run_stats(g, &o, &st);
  if (rc != 0) {
    fprintf(stderr, "FAIL %s: cpu_run returned %d\n", g->model_name, rc);
    exit(1);
  }
  return loss;
}

static double fd(Graph *g, int v, int64_t i, float h) {
  double lp = run(g, v, i, h, NULL, NULL), lm = run(g, v, i, -h, NULL, NULL);
  return (lp - lm) / (2.0 * h);
}

static int check(Graph *g, FILE *out) {
  double worst = -1, wa = 0, wn = 0;
  const char *wname = "";
  int64_t wi = -1, count = 0;
  for (int v = 0; v < g->nvals; v++) {
    if (g->vals[v].kind != VK_PARAM) continue;
    int64_t n = shape_numel_ok(&g->vals[v].shape);
    float *p0 = calloc((size_t)n, sizeof *p0), *p1 = calloc((size_t)n, 4);
    run(g, v, 0, 0.0f, p0, p1);
    for (int64_t i = 0; i < n; i++) {
      double an = (double)p0[i] - p1[i];
      double num = (4 * fd(g, v, i, 1.0f / 128) - fd(g, v, i, 1.0f / 64)) / 3;
      double r = fabs(an - num) / (3e-3 + 2e-2 * fabs(num));
      if (r > worst) worst = r, wa = an, wn = num, wname = g->vals[v].name, wi = i;
      count++;
    }
    free(p0);
    free(p1);
  }
  fprintf(out, "%s %-10s %lld elements, worst %s[%lld]: step %+.6f numeric %+.6f "
         "(%.2f of tolerance)\n", worst > 1 ? "FAIL" : "ok  ", g->model_name,
         (long long)count, wname, (long long)wi, wa, wn, worst);
  return worst > 1;
}

int main(void) {
  /* cpu_run prints a summary per run: our lines go to the real stdout */
  fflush(stdout);
  FILE *out = fdopen(dup(fileno(stdout)), "w");
  if (!out || !freopen("/dev/null", "w", stdout)) return 2;
  int fails = 0;
  Config cfg = graph_new()->cfg;
  cfg.workspace = 0;
  cfg.optimizer = OPTIM_SGD;
  Graph *llama = frontend_load("tests/unit/data/llama_tiny.mdl", NULL, 0,
                               &cfg, CFG_WORKSPACE | CFG_OPTIMIZER);
  Graph *mamba = frontend_load("tests/unit/data/mamba_tiny.mdl", NULL, 0,
                               &cfg, CFG_WORKSPACE | CFG_OPTIMIZER);
  if (!llama || !mamba) return 1;
  plan_step(llama);
  plan_step(mamba);
  Graph *models[] = {block(false), block(true), attention(), embed(), cnn(),
                     llama, mamba};
  const char *names[] = {"block", "block+ckpt", "attention", "embed", "cnn",
                         "llama_tiny", "mamba_tiny"};
  for (int i = 0; i < 7; i++) {
    models[i]->model_name = names[i];
    fails += check(models[i], out);
    fflush(out);
  }
  fprintf(out, "%s: %d model(s) failed\n", fails ? "FAIL" : "ok", fails);
  fclose(out);
  return fails != 0;
}
