/* tests/unit/ops_saves.c: the operator table is complete, and every op's
 * save rule is exactly what its backward needs.
 *
 *  1. Every op of ir/ops.def has its OpDef and the hooks every op must
 *     have (a lower hook unless it is internal, flops, the CPU and CUDA
 *     forward and backward); its signature starts with its name.
 *  2. exp and softplus forward against values worked by hand.
 *  3. Two models that use every callable op (tests/unit/data/zoo*.mdl)
 *     train one step on the CPU reference with `strict_saves`: each
 *     backward sees only the operands its op's save rule declares (plus
 *     the resident parameters, states and inputs), every other forward
 *     operand reads as absent. Under fp32 and bf16_mixed (casts in between).
 *  4. The same run with one op's rule taken as empty must fail, for every
 *     op whose rule is not empty: so (3) can fail, and no rule declares
 *     more than nothing where something is read.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/check.h"

static Graph *load(const char *path, Precision p) {
  Config cfg = graph_new()->cfg;
  cfg.precision = p;
  cfg.workspace = 0;
  Graph *g = frontend_load(path, NULL, 0, &cfg, CFG_PRECISION | CFG_WORKSPACE);
  if (!g) {
    printf("FAIL %s: does not compile\n", path);
    failures++;
    return NULL;
  }
  plan_step(g);
  return g;
}

static int run(Graph *g, bool narrow, Op op) {
  CpuStats st = {.perturb_value = -1, .probe_value = -1,
                 .strict_saves = true, .narrow = narrow, .narrow_op = op};
  RunOpts o = {.steps = 1, .lr = 1e-3, .quiet = true};
  /* the run's own report goes nowhere */
  fflush(stdout);
  int out = dup(1);
  if (!freopen("/dev/null", "w", stdout)) return 2;
  int rc = cpu_run_stats(g, &o, &st);
  fflush(stdout);
  dup2(out, 1);
  close(out);
  return rc;
}

/* Whether op's rule keeps, somewhere in g, an operand that is not resident
 * (parameters, states and inputs are there anyway). */
static bool keeps_activation(const Graph *g, Op op) {
  int sv = op_info[op].save;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op != op) continue;
    for (int k = 0; k < n->nin; k++)
      if (op_saves_input(n, k) && g->vals[n->in[k]].kind == VK_ACT)
        return true;
    if (sv & (SV_OUT | SV_EXTRA)) return true;
  }
  return false;
}

static bool uses(const Graph *g, Op op) {
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == op) return true;
  return false;
}

int main(void) {
  /* 1 */
  for (int op = 0; op < OP_COUNT; op++) {
    const OpDef *d = op_def[op];
    const char *name = op_info[op].name;
    CHECK(d, "%s has no OpDef", name);
    if (!d) continue;
    bool internal = op_info[op].flags & OF_INTERNAL;
    CHECK(internal || d->lower, "%s has no lower hook", name);
    CHECK(d->flops && d->cpu_fwd && d->cpu_bwd && d->cuda_fwd && d->cuda_bwd,
          "%s lacks a hook", name);
    CHECK(internal || (strncmp(d->sig, name, strlen(name)) == 0 &&
                       d->sig[strlen(name)] == '('),
          "%s's signature '%s' does not start with its name", name, d->sig);
    CHECK(internal || d->args[0].name, "%s has no arguments", name);
  }

  /* 2 */
  float x[5] = {-30, 0, 1, 25, -1}, y[5];
  cpu_act_fwd(&cpu_softplus, x, y, 5);
  CHECK(fabsf(y[0] - 9.3576230e-14f) < 1e-19f, "softplus(-30) = %g", y[0]);
  CHECK(fabsf(y[1] - 0.69314718f) < 2e-7f, "softplus(0) = %g", y[1]);
  CHECK(fabsf(y[2] - 1.3132617f) < 2e-7f, "softplus(1) = %g", y[2]);
  CHECK(y[3] == 25.0f, "softplus(25) = %g (linear above 20)", y[3]);
  cpu_act_fwd(&cpu_exp, x, y, 5);
  CHECK(y[1] == 1.0f && fabsf(y[2] - 2.7182817f) < 1e-6f &&
            fabsf(y[4] - 0.36787945f) < 1e-7f,
        "exp(0, 1, -1) = %g %g %g", y[1], y[2], y[4]);

  /* 3 and 4 */
  static const char *const zoo[] = {"tests/unit/data/zoo.mdl",
                                    "tests/unit/data/zoo_mse.mdl",
                                    "tests/unit/data/mamba_tiny.mdl"};
  bool seen[OP_COUNT] = {0};
  int narrowed = 0;
  for (int z = 0; z < 3; z++) {
    for (int p = 0; p < 2; p++) {
      Precision pol = p ? PREC_BF16_MIXED : PREC_FP32;
      Graph *g = load(zoo[z], pol);
      if (!g) continue;
      CHECK(run(g, false, OP_COUNT) == 0, "%s (%s): a backward read what "
            "its op does not declare", zoo[z], precision_name[pol]);
      if (p) continue;
      for (int op = 0; op < OP_COUNT; op++) {
        if (!uses(g, (Op)op)) continue;
        seen[op] = true;
        if (!keeps_activation(g, (Op)op)) continue;
        /* the failing runs print their plan errors: keep them quiet */
        FILE *keep = stderr;
        stderr = fopen("/dev/null", "w");
        int rc = run(g, true, (Op)op);
        fclose(stderr);
        stderr = keep;
        CHECK(rc != 0, "%s: with its save rule emptied its backward still "
              "ran", op_info[op].name);
        narrowed++;
      }
    }
  }
  for (int op = 0; op < OP_COUNT; op++)
    CHECK(seen[op] || (op_info[op].flags & OF_INTERNAL),
          "the zoo does not use %s", op_info[op].name);
  CHECK(narrowed >= 15, "only %d save rules were narrowed", narrowed);
  if (!failures) printf("ok: %d ops, %d save rules narrowed and caught\n",
                        OP_COUNT, narrowed);
  return failures ? 1 : 0;
}
