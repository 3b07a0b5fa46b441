/* tests/unit/cpu_exec.c: the CPU executor end to end on graphs built
 * directly in IR (no frontend), through the real passes.
 *
 *  1. memory.md's tiny model trains: 30 SGD steps (lr 0.5) on a fixed batch
 *     take the loss below half of the first; measured peak = predicted
 *     (276 B, the spec's hand-worked figure).
 *  2. A residual block (linear, layernorm, gelu, dropout, linear, add,
 *     cross_entropy): --alloc arena and --alloc pool give bit-identical
 *     losses and final state; each measured peak equals its prediction.
 *  3. The same block with its middle as a checkpointed segment gives the
 *     same state bit for bit as unsegmented (dropout redraws its mask), at
 *     a different predicted peak that is again measured exactly.
 *  4. bf16_mixed, fp16 (pure), bf16_master and adamw run with exact peaks
 *     and finite, decreasing losses.
 *  5. MDLC_BREAK_PLAN=1 (one buffer moved onto a live one) is caught: the
 *     run exits 1 naming the overlap.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/unit/check.h"

static int param(Graph *g, const char *name, Shape s) {
  return graph_add_value(g, name, VK_PARAM, DT_F32, &s, NOLOC);
}

static int linear(Graph *g, const char *name, int x, int64_t in, int64_t out,
                  int64_t rows) {
  int w = param(g, xsprintf("%s.weight", name), shape2(2, out, in));
  int b = param(g, xsprintf("%s.bias", name), shape2(1, out, 0));
  int n = graph_add_node(g, OP_LINEAR, name, (int[]){x, w, b}, 3, NOLOC);
  g->nodes[n].a.linear.out = out;
  g->nodes[n].a.linear.bias = true;
  Shape s = shape2(2, rows, out);
  return graph_add_output(g, n, name, DT_F32, &s, false);
}

static Graph *tiny(void) {
  Graph *g = graph_new();
  g->model_name = "tiny";
  g->cfg.optimizer = OPTIM_SGD;
  g->cfg.workspace = 0;
  Shape s;
  int x = graph_add_value(g, "x", VK_INPUT, DT_F32, (s = shape2(2, 2, 3), &s), NOLOC);
  int y = graph_add_value(g, "y", VK_INPUT, DT_I32, (s = shape2(1, 2, 0), &s), NOLOC);
  int a = linear(g, "l1", x, 3, 4, 2);
  int n = graph_add_node(g, OP_RELU, "h", (int[]){a}, 1, NOLOC);
  int h = graph_add_output(g, n, "h", DT_F32, (s = shape2(2, 2, 4), &s), false);
  int lg = linear(g, "l2", h, 4, 2, 2);
  n = graph_add_node(g, OP_CROSS_ENTROPY, "loss", (int[]){lg, y}, 2, NOLOC);
  Shape scalar = {0};
  g->loss = graph_add_output(g, n, "loss", DT_F32, &scalar, false);
  graph_add_output(g, n, "logprobs", DT_F32, (s = shape2(2, 2, 2), &s), true);
  g->vals[g->loss].is_output = true;
  plan_step(g);
  return g;
}

/* x[R, D] -> h = l0(x); a = l2(dropout(gelu(l1(layernorm(h))))); h + a ->
 * logits -> cross_entropy. With seg, layernorm..l2 is segment 0. */
static Graph *block(bool seg, Precision prec, Optimizer opt) {
  enum { R = 6, D = 8, H = 12, C = 5 };
  Graph *g = graph_new();
  g->model_name = "block";
  g->cfg.optimizer = opt;
  g->cfg.precision = prec;
  g->cfg.workspace = 1024;
  Shape s;
  int x = graph_add_value(g, "x", VK_INPUT, DT_F32, (s = shape2(2, R, D), &s), NOLOC);
  int y = graph_add_value(g, "y", VK_INPUT, DT_I32, (s = shape2(1, R, 0), &s), NOLOC);
  int h = linear(g, "l0", x, D, H, R);
  int first = g->nnodes;
  int lw = param(g, "ln.weight", shape2(1, H, 0));
  int lb = param(g, "ln.bias", shape2(1, H, 0));
  int n = graph_add_node(g, OP_LAYERNORM, "ln", (int[]){h, lw, lb}, 3, NOLOC);
  g->nodes[n].a.norm.eps = 1e-5;
  int t = graph_add_output(g, n, "ln", DT_F32, (s = shape2(2, R, H), &s), false);
  graph_add_output(g, n, "ln.mean", DT_F32, (s = shape2(1, R, 0), &s), true);
  graph_add_output(g, n, "ln.rstd", DT_F32, (s = shape2(1, R, 0), &s), true);
  t = linear(g, "l1", t, H, H, R);
  n = graph_add_node(g, OP_GELU, "gelu", (int[]){t}, 1, NOLOC);
  t = graph_add_output(g, n, "gelu", DT_F32, (s = shape2(2, R, H), &s), false);
  n = graph_add_node(g, OP_DROPOUT, "drop", (int[]){t}, 1, NOLOC);
  g->nodes[n].a.dropout.p = 0.25;
  t = graph_add_output(g, n, "drop", DT_F32, (s = shape2(2, R, H), &s), false);
  graph_add_output(g, n, "drop.mask", DT_U8, (s = shape2(2, R, H), &s), true);
  t = linear(g, "l2", t, H, H, R);
  int last = g->nnodes;
  if (seg) {
    g->nsegments = 1;
    g->segment_loc = xalloc(sizeof(Loc));
    g->segment_loc[0] = NOLOC;
    for (int i = first; i < last; i++) g->nodes[i].segment = 0;
  }
  n = graph_add_node(g, OP_ADD, "res", (int[]){h, t}, 2, NOLOC);
  t = graph_add_output(g, n, "res", DT_F32, (s = shape2(2, R, H), &s), false);
  int lg = linear(g, "head", t, H, C, R);
  n = graph_add_node(g, OP_CROSS_ENTROPY, "loss", (int[]){lg, y}, 2, NOLOC);
  Shape scalar = {0};
  g->loss = graph_add_output(g, n, "loss", DT_F32, &scalar, false);
  graph_add_output(g, n, "logprobs", DT_F32, (s = shape2(2, R, C), &s), true);
  g->vals[g->loss].is_output = true;
  plan_step(g);
  return g;
}

static char *slurp(const char *path, long *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  *len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = calloc((size_t)*len + 1, 1);
  if (fread(s, 1, (size_t)*len, f) != (size_t)*len) *len = -1;
  fclose(f);
  return s;
}

static bool same_file(const char *a, const char *b) {
  long la = 0, lb = 0;
  char *x = slurp(a, &la), *y = slurp(b, &lb);
  bool same = x && y && la == lb && la > 0 && memcmp(x, y, (size_t)la) == 0;
  free(x);
  free(y);
  return same;
}

/* Runs g; checks the exit status and that measured == predicted. */
static int run(Graph *g, RunOpts o, float *losses, const char *what) {
  CpuStats st = {.losses = losses, .perturb_value = -1, .probe_value = -1};
  o.quiet = true;
  int rc = cpu_run_stats(g, &o, &st);
  CHECK(rc == 0, "%s: cpu_run returned %d", what, rc);
  CHECK(st.measured_peak == g->peak, "%s: measured %lld, predicted %lld",
        what, (long long)st.measured_peak, (long long)g->peak);
  return rc;
}

int main(void) {
  char tmpl[] = "/tmp/cpu_exec.XXXXXX";
  const char *dir = mkdtemp(tmpl);
  if (!dir) return 2;
  char p1[256], p2[256];
  snprintf(p1, sizeof p1, "%s/a", dir);
  snprintf(p2, sizeof p2, "%s/b", dir);

  /* 1. tiny learns */
  float loss[30];
  Graph *g = tiny();
  CHECK(g->peak == 276, "tiny predicted peak %lld, memory.md says 276",
        (long long)g->peak);
  run(g, (RunOpts){.steps = 30, .lr = 0.5}, loss, "tiny");
  CHECK(isfinite(loss[0]) && loss[29] < 0.5f * loss[0],
        "tiny: loss %g -> %g, want below half", loss[0], loss[29]);
  printf("tiny: loss %.6f -> %.6f, peak %lld B\n", loss[0], loss[29],
         (long long)g->peak);

  /* 2. arena vs pool */
  float la[4], lp[4];
  g = block(false, PREC_FP32, OPTIM_ADAMW);
  run(g, (RunOpts){.steps = 4, .arena = true, .out_path = p1}, la, "arena");
  g = block(false, PREC_FP32, OPTIM_ADAMW);
  run(g, (RunOpts){.steps = 4, .arena = false, .out_path = p2}, lp, "pool");
  CHECK(memcmp(la, lp, sizeof la) == 0, "arena and pool losses differ");
  CHECK(same_file(p1, p2), "arena and pool final state differ (%s, %s)", p1,
        p2);
  CHECK(la[3] < la[0], "block: loss %g -> %g does not decrease", la[0],
        la[3]);
  printf("block: arena = pool, loss %.6f -> %.6f\n", la[0], la[3]);

  /* 3. checkpointed = unsegmented, bit for bit */
  float ls[4];
  Graph *gs = block(true, PREC_FP32, OPTIM_ADAMW);
  run(gs, (RunOpts){.steps = 4, .arena = true, .out_path = p2}, ls,
      "segmented");
  CHECK(memcmp(la, ls, sizeof la) == 0, "segmented losses differ");
  CHECK(same_file(p1, p2), "segmented final state differs");
  int nrec = 0;
  for (int i = 0; i < gs->nins; i++) nrec += gs->ins[i].kind == IK_RECOMPUTE;
  CHECK(nrec == 5, "segmented schedule has %d recomputations, want 5", nrec);
  printf("checkpointed = unsegmented; peaks %lld vs %lld B\n",
         (long long)gs->peak, (long long)g->peak);

  /* 4. precision policies */
  static const Precision precs[] = {PREC_BF16_MIXED, PREC_FP16,
                                    PREC_BF16_MASTER, PREC_FP16_MIXED};
  for (size_t i = 0; i < sizeof precs / sizeof *precs; i++) {
    float l[6];
    g = block(i == 2, precs[i], OPTIM_ADAMW);
    run(g, (RunOpts){.steps = 6, .lr = 0.01, .arena = i % 2}, l,
        precision_name[precs[i]]);
    CHECK(isfinite(l[5]) && l[5] < l[0], "%s: loss %g -> %g",
          precision_name[precs[i]], l[0], l[5]);
    printf("%s: loss %.6f -> %.6f, peak %lld B\n", precision_name[precs[i]],
           l[0], l[5], (long long)g->peak);
  }

  /* 5. a broken plan is caught */
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    if (!freopen("/dev/null", "w", stdout)) _exit(2);
    if (!freopen(p1, "w", stderr)) _exit(2);
    setenv("MDLC_BREAK_PLAN", "1", 1);
    g = block(false, PREC_FP32, OPTIM_ADAMW);
    int rc = cpu_run(g, &(RunOpts){.steps = 1, .arena = true});
    fflush(stderr);
    _exit(rc);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  long len = 0;
  char *msg = slurp(p1, &len);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1,
        "broken plan: exit status %d, want 1", WEXITSTATUS(status));
  CHECK(msg && strstr(msg, "overlaps live buffer"),
        "broken plan: no overlap message: %s", msg ? msg : "(none)");
  if (msg) printf("broken plan caught: %s", strstr(msg, "mdlc: error") ?
                  strstr(msg, "mdlc: error") : msg);
  free(msg);
  remove(p1);
  remove(p2);
  rmdir(dir);
  printf("%s: %d failure(s)\n", failures ? "FAIL" : "ok", failures);
  return failures != 0;
}
