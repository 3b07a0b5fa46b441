/* tests/unit/traffic.c: instr_traffic against counts made by hand.
 *
 * 1. examples/tiny.mdl (fp32, sgd), every instruction of the step. With
 *    x f32[2, 3] (24 B), y i32[2] (8 B), W1 [4, 3] (48 B), b1 [4] (16 B),
 *    h [2, 4] (32 B), W2 [2, 4] (32 B), b2 [2] (8 B), logits [2, 2] (16 B),
 *    the loss (4 B) and cross_entropy's log-probabilities [2, 2] (16 B):
 *      forward  linear 1  reads x W1 b1 = 88, writes h:linear = 32
 *               relu      reads 32, writes 32
 *               linear 2  reads h W2 b2 = 72, writes logits = 16
 *               xent      reads logits y = 24, writes loss logprobs = 20
 *      seed               writes dloss = 4
 *      backward xent      reads y logprobs dloss = 28, writes dlogits = 16
 *               linear 2  reads h W2 dlogits = 80, writes dh dW2 db2 = 72
 *               relu      reads h dh = 64, writes d h:linear = 32
 *               linear 1  reads x W1 d h:linear = 104, writes dW1 db1 = 64
 *                         (x is an input: no dx)
 *      sgd on each of W1 b1 W2 b2: reads p and g, writes p
 *    FLOPs: op_flops forward, twice that backward, 2 per element for sgd.
 * 2. ResNet-18 at batch 1: the forward FLOPs of its convolutions and
 *    classifier are the published 1,814,073,344 multiply-adds (x 2, +1000
 *    for the classifier's bias), every backward has twice its forward's
 *    FLOPs, and conv1 moves by hand x [1, 3, 224, 224] + W [64, 3, 7, 7]
 *    in (602,112 + 37,632 B), [1, 64, 112, 112] out (3,211,264 B); its
 *    backward reads x, W and dy (602,112 + 37,632 + 3,211,264 B) and
 *    writes only dW (37,632 B). The phase totals are the instructions'
 *    sums, and the floor on an H100 of a memory-bound op is its bytes over
 *    3.35 TB/s.
 * 3. bf16_mixed tiny: the cast of W1 reads 48 B (f32) and writes 24 B. */
#include "check.h"

#include <math.h>
#include <string.h>

/* The instruction of kind k for the node named `name` (or, for IK_OPT,
 * the parameter value named `name`). */
static int find(const Graph *g, InstrKind k, const char *name) {
  for (int i = 0; i < g->nins; i++) {
    const Instr *in = &g->ins[i];
    if (in->kind != k) continue;
    const char *n = k == IK_OPT || k == IK_SEED ? g->vals[in->node].name
                                                : g->nodes[in->node].name;
    if (strcmp(n, name) == 0) return i;
  }
  return -1;
}

static void expect(const Graph *g, InstrKind k, const char *name,
                   int64_t rd, int64_t wr, int64_t flops) {
  int i = find(g, k, name);
  CHECK(i >= 0, "no %s instruction for '%s'", instr_phase[k], name);
  if (i < 0) return;
  Traffic t = instr_traffic(g, i);
  CHECK(t.read == rd && t.written == wr && t.flops == flops,
        "%s of '%s': read %lld written %lld flops %lld, want %lld %lld %lld",
        instr_phase[k], name, (long long)t.read, (long long)t.written,
        (long long)t.flops, (long long)rd, (long long)wr, (long long)flops);
}

static Graph *load(const char *path, const Define *d, int nd, Precision p) {
  Config cfg = graph_new()->cfg;
  cfg.precision = p;
  Graph *g = frontend_load(path, d, nd, &cfg, CFG_PRECISION);
  if (g) plan_step(g);
  return g;
}

int main(void) {
  /* ---- 1. tiny, every instruction ---- */
  Graph *g = load("examples/tiny.mdl", NULL, 0, PREC_FP32);
  if (!g) return 1;
  CHECK(g->nins == 13, "tiny has %d instructions", g->nins);
  /* linear [2,3]->4: 2*8*3 + 8 = 56; relu 8; linear [2,4]->2: 2*4*4 + 4 =
   * 36; cross_entropy: op_flops */
  int64_t xent = op_flops(g, 3);
  expect(g, IK_FWD, "h:linear", 88, 32, 56);
  expect(g, IK_FWD, "h", 32, 32, 8);
  expect(g, IK_FWD, "loss:linear", 72, 16, 36);
  expect(g, IK_FWD, "loss", 24, 20, xent);
  expect(g, IK_SEED, "loss", 0, 4, 0);
  expect(g, IK_BWD, "loss", 28, 16, 2 * xent);
  expect(g, IK_BWD, "loss:linear", 80, 72, 72);
  expect(g, IK_BWD, "h", 64, 32, 16);
  expect(g, IK_BWD, "h:linear", 104, 64, 112);
  expect(g, IK_OPT, "h:linear.weight", 96, 48, 24);
  expect(g, IK_OPT, "h:linear.bias", 32, 16, 8);
  expect(g, IK_OPT, "loss:linear.weight", 64, 32, 16);
  expect(g, IK_OPT, "loss:linear.bias", 16, 8, 4);
  StepTraffic st;
  step_traffic(g, NULL, &st);
  CHECK(st.phase[PH_FWD].t.read == 88 + 32 + 72 + 24 &&
            st.phase[PH_FWD].t.written == 32 + 32 + 16 + 20,
        "tiny forward totals %lld %lld", (long long)st.phase[PH_FWD].t.read,
        (long long)st.phase[PH_FWD].t.written);
  CHECK(st.phase[PH_BWD].t.read == 28 + 80 + 64 + 104 &&
            st.phase[PH_BWD].t.written == 4 + 16 + 72 + 32 + 64,
        "tiny backward totals %lld %lld", (long long)st.phase[PH_BWD].t.read,
        (long long)st.phase[PH_BWD].t.written);
  CHECK(st.total.t.read == 216 + 276 + 208 && st.total.t.written == 100 + 188 + 104 &&
            st.total.instrs == 13 && st.phase[PH_RECOMPUTE].instrs == 0,
        "tiny step totals %lld %lld", (long long)st.total.t.read,
        (long long)st.total.t.written);

  /* ---- 2. ResNet-18 at batch 1 ---- */
  Define b1 = {"batch", 1};
  g = load("examples/resnet18.mdl", &b1, 1, PREC_FP32);
  if (!g) return 1;
  int64_t mm = 0;
  for (int i = 0; i < g->nins; i++) {
    const Instr *in = &g->ins[i];
    if (in->kind != IK_FWD) continue;
    Op op = g->nodes[in->node].op;
    if (op == OP_CONV2D || op == OP_LINEAR) mm += instr_traffic(g, i).flops;
    int b = find(g, IK_BWD, g->nodes[in->node].name);
    if (b >= 0)
      CHECK(instr_traffic(g, b).flops == 2 * instr_traffic(g, i).flops,
            "backward of '%s': not twice its forward's FLOPs",
            g->nodes[in->node].name);
  }
  CHECK(mm == 2LL * 1814073344 + 1000, "resnet18 conv + fc forward FLOPs "
        "%lld, want %lld", (long long)mm, 2LL * 1814073344 + 1000);
  int64_t x = 3 * 224 * 224 * 4, w = 64 * 3 * 7 * 7 * 4, y = 64 * 112 * 112 * 4;
  expect(g, IK_FWD, "h:conv2d", x + w, y, op_flops(g, 0));
  expect(g, IK_BWD, "h:conv2d", x + w + y, w, 2 * op_flops(g, 0));
  const Gpu *h100 = &gpu_table[gpu_lookup("H100 SXM")];
  step_traffic(g, h100, &st);
  int64_t rd = 0, wr = 0, fl = 0;
  double floor = 0;
  for (int i = 0; i < g->nins; i++) {
    Traffic t = instr_traffic(g, i);
    rd += t.read, wr += t.written, fl += t.flops;
    floor += instr_floor(g, i, h100);
  }
  CHECK(st.total.t.read == rd && st.total.t.written == wr &&
            st.total.t.flops == fl && fabs(st.total.floor - floor) < 1e-12,
        "resnet18 totals differ from the instructions' sums");
  int relu = find(g, IK_FWD, "h"); /* relu [1, 64, 112, 112] f32 */
  double want = 2.0 * y / 3.35e12;  /* 802,816 FLOPs: far below the ridge */
  CHECK(relu >= 0 && fabs(instr_floor(g, relu, h100) - want) < 1e-15,
        "relu floor %g s, want %g", relu >= 0 ? instr_floor(g, relu, h100) : 0,
        want);

  /* ---- 3. a cast under bf16_mixed ---- */
  g = load("examples/tiny.mdl", NULL, 0, PREC_BF16_MIXED);
  if (!g) return 1;
  expect(g, IK_FWD, "h:linear.weight:bf16", 48, 24, 0);
  if (failures) return 1;
  printf("traffic: tiny by hand, resnet18's FLOPs and conv1, a cast\n");
  return 0;
}
