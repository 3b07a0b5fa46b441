/* tests/unit/plan_tiny.c: memory.md's worked example, row by row.
 *
 * Builds the tiny model directly in IR (no frontend), runs precision,
 * autodiff, liveness and arena, and checks every line of the table in
 * memory.md: what each instruction allocates, what it frees, and the live
 * bytes after its allocations. The expected figures are the spec's, worked
 * out by hand there.
 */
#include "tests/unit/check.h"

#include <string.h>

/* sorted byte sizes of a list of buffers, as "32 16" */
static const char *sizes(const Graph *g, const int *bufs, int n) {
  int64_t v[16];
  for (int i = 0; i < n; i++) v[i] = g->bufs[bufs[i]].bytes;
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++)
      if (v[j] > v[i]) {
        int64_t t = v[i];
        v[i] = v[j];
        v[j] = t;
      }
  StrBuf sb = {0};
  sb_printf(&sb, "%s", "");
  for (int i = 0; i < n; i++) sb_printf(&sb, "%s%lld", i ? " " : "", (long long)v[i]);
  return sb.s;
}

static Graph *tiny(Optimizer opt, bool in_backward) {
  Graph *g = graph_new();
  g->model_name = "tiny";
  g->cfg.optimizer = opt;
  g->cfg.workspace = 0;
  g->cfg.opt_in_backward = in_backward;
  Shape s;
  int x = graph_add_value(g, "x", VK_INPUT, DT_F32, (s = shape2(2, 2, 3), &s), NOLOC);
  int y = graph_add_value(g, "y", VK_INPUT, DT_I32, (s = shape2(1, 2, 0), &s), NOLOC);
  int w1 = graph_add_value(g, "l1.weight", VK_PARAM, DT_F32, (s = shape2(2, 4, 3), &s), NOLOC);
  int b1 = graph_add_value(g, "l1.bias", VK_PARAM, DT_F32, (s = shape2(1, 4, 0), &s), NOLOC);
  int w2 = graph_add_value(g, "l2.weight", VK_PARAM, DT_F32, (s = shape2(2, 2, 4), &s), NOLOC);
  int b2 = graph_add_value(g, "l2.bias", VK_PARAM, DT_F32, (s = shape2(1, 2, 0), &s), NOLOC);

  int n = graph_add_node(g, OP_LINEAR, "l1", (int[]){x, w1, b1}, 3, NOLOC);
  g->nodes[n].a.linear.out = 4;
  int a = graph_add_output(g, n, "a", DT_F32, (s = shape2(2, 2, 4), &s), false);
  n = graph_add_node(g, OP_RELU, "h", (int[]){a}, 1, NOLOC);
  int h = graph_add_output(g, n, "h", DT_F32, (s = shape2(2, 2, 4), &s), false);
  n = graph_add_node(g, OP_LINEAR, "l2", (int[]){h, w2, b2}, 3, NOLOC);
  int lg = graph_add_output(g, n, "logits", DT_F32, (s = shape2(2, 2, 2), &s), false);
  n = graph_add_node(g, OP_CROSS_ENTROPY, "loss", (int[]){lg, y}, 2, NOLOC);
  Shape scalar = {0};
  int loss = graph_add_output(g, n, "loss", DT_F32, &scalar, false);
  graph_add_output(g, n, "logprobs", DT_F32, (s = shape2(2, 2, 2), &s), true);
  g->vals[loss].is_output = true;
  g->loss = loss;
  plan_step(g);
  return g;
}

int main(void) {
  Graph *g = tiny(OPTIM_SGD, false);
  CHECK(g->persistent_bytes == 136, "persistent %lld, want 136",
        (long long)g->persistent_bytes);
  /* memory.md's table: kind, allocations, frees, live after allocating */
  static const struct {
    InstrKind kind;
    const char *alloc, *free;
    int64_t live;
  } want[] = {
      {IK_FWD, "32", "", 168},          {IK_FWD, "32", "32", 200},
      {IK_FWD, "16", "", 184},          {IK_FWD, "16 4", "16", 204},
      {IK_SEED, "4", "", 192},          {IK_BWD, "16", "16 4", 208},
      {IK_BWD, "32 32 8", "16", 260},   {IK_BWD, "32", "32 32", 276},
      {IK_BWD, "48 16", "32", 276},     {IK_OPT, "", "48", 244},
      {IK_OPT, "", "16", 196},          {IK_OPT, "", "32", 180},
      {IK_OPT, "", "8", 148},
  };
  int nw = (int)(sizeof want / sizeof want[0]);
  CHECK(g->nins == nw, "%d instructions, want %d", g->nins, nw);
  for (int i = 0; i < g->nins && i < nw; i++) {
    const Instr *in = &g->ins[i];
    const char *al = sizes(g, in->alloc, in->nalloc);
    const char *fr = sizes(g, in->free, in->nfree);
    CHECK(in->kind == want[i].kind, "instr %d kind %d want %d", i + 1, in->kind,
          want[i].kind);
    CHECK(strcmp(al, want[i].alloc) == 0, "instr %d allocates '%s' want '%s'",
          i + 1, al, want[i].alloc);
    CHECK(strcmp(fr, want[i].free) == 0, "instr %d frees '%s' want '%s'", i + 1,
          fr, want[i].free);
    CHECK(in->live == want[i].live, "instr %d live %lld want %lld", i + 1,
          (long long)in->live, (long long)want[i].live);
  }
  CHECK(g->peak == 276 && g->peak_at == 7, "peak %lld at %d, want 276 at 8",
        (long long)g->peak, g->peak_at + 1);
  /* after the last free only the persistent bytes and the loss remain */
  int64_t end = g->ins[g->nins - 1].live - 8;
  CHECK(end == 140, "live at the end %lld, want 140", (long long)end);
  const char *bad = arena_verify(g);
  CHECK(!bad, "arena: %s", bad);
  CHECK(g->arena_bytes >= g->peak - g->persistent_bytes, "arena below peak");

  /* --optimizer-in-backward: each gradient is freed at its update, right
   * after the backward that completes it. W2, b2 complete at linear2'
   * (instruction 7, live 260 as before), so relu' no longer sees dW2, db2:
   * 276 - 40 = 236 there, and the peak moves to linear2' at 260. */
  g = tiny(OPTIM_SGD, true);
  CHECK(g->peak == 260 && g->peak_at == 6, "in-backward peak %lld at %d, "
        "want 260 at 7", (long long)g->peak, g->peak_at + 1);
  CHECK(g->ins[9].kind == IK_BWD && g->ins[9].live == 236,
        "in-backward relu' live %lld, want 236", (long long)g->ins[9].live);
  CHECK(g->nins == 13, "in-backward %d instructions", g->nins);
  CHECK(g->ins[7].kind == IK_OPT && g->ins[8].kind == IK_OPT,
        "updates of W2, b2 follow linear2'");

  /* adamw: two f32 states per parameter: 2 * 104 more persistent bytes */
  g = tiny(OPTIM_ADAMW, false);
  CHECK(g->persistent_bytes == 136 + 208, "adamw persistent %lld",
        (long long)g->persistent_bytes);
  CHECK(g->peak == 276 + 208, "adamw peak %lld", (long long)g->peak);
  if (failures) return 1;
  printf("tiny: every row of memory.md's table matches\n");
  return 0;
}
