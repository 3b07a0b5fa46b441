/* passes/pipeline.c: the compiler as one list.
 *
 * The table `passes` below is the whole pipeline, in the order it runs:
 *
 *   frontend   .mdl -> forward graph (frontend/); --gpus N: per device
 *   precision  dtypes by policy, explicit casts
 *   placement  checkpoint segments under the budget; builds the step
 *              itself (only when a budget is in force and the step trains)
 *   autodiff   the step: buffers and instructions     } not run again when
 *   liveness   allocation and free points, the peak   } placement built them
 *   arena      offsets of every non-persistent buffer
 *
 * and one loop, run(), runs any stretch of it: after each pass that ran,
 * graph_verify in MDLC_VERIFY builds (`make check`); after the pass that
 * --dump-after names, the IR on stdout and exit 0. Every pass but
 * placement can be named; after placement, `autodiff` and `liveness` dump
 * the placed step.
 *
 * Contract of pipeline_compile:
 *   Requires: p->path and the settings; p->dump_after, if set,
 *     names a pass (checked first: exit 2 with a did-you-mean if not).
 *   Does: every pass of the table, each under its own contract (the
 *     comment atop each pass's file). The file is read and parsed once,
 *     into p->src; a compile that finds p->src set lowers that tree again
 *     (--max-batch). --gpus N lowers that tree a second time, with
 *     `batch` divided by N, and keeps the second graph: the second
 *     lowering cannot be avoided without changing what mdlc reports,
 *     since the first, at the batch as written, is what finds the batch
 *     (it may be computed from other lets) and reports the model's
 *     errors, before the batch is checked to divide.
 *   Leaves: p->g, the step planned to the arena; p->placed and
 *     p->placement (zero when placement did not run). NULL after a user
 *     error was reported.
 * pipeline_plan and pipeline_rebuild_step run stretches of the same table
 * on a graph made some other way (tests, benchmarks) or re-segmented
 * (placement).
 */
#include "mdlc.h"

#include <stdlib.h>
#include <string.h>

/* ---- the passes, as the table calls them --------------------------------- */

/* Data parallel: each of N devices runs the whole model on batch / N
 * samples, so the parsed model is lowered again with `batch` divided (the
 * first lowering, with the whole batch, finds the batch and reports the
 * model's errors; the file is not read or parsed again). */
static Graph *per_device(const Pipeline *p, Graph *g) {
  int n = p->cfg.gpus;
  if (g->batch < 0)
    die_usage("--gpus %d splits the batch, but the model has no top-level "
              "`let batch`", n);
  if (g->batch % n)
    die_usage("--gpus %d: batch %lld does not divide evenly over %d devices",
              n, (long long)g->batch, n);
  Define *defs = xalloc(sizeof(Define) * (size_t)(p->ndefs + 1));
  int nd = 0;
  for (int i = 0; i < p->ndefs; i++)
    if (strcmp(p->defs[i].name, "batch") != 0) defs[nd++] = p->defs[i];
  defs[nd++] = (Define){"batch", g->batch / n};
  return frontend_lower(p->src, defs, nd, &p->cfg, p->cfg_set);
}

/* The file is read and parsed by the first compile only. */
static void run_frontend(Pipeline *p) {
  if (!p->src) p->src = frontend_read(p->path);
  p->g = frontend_lower(p->src, p->defs, p->ndefs, &p->cfg, p->cfg_set);
  if (p->g && p->cfg.gpus > 1) p->g = per_device(p, p->g);
}

static void run_precision(Pipeline *p) { pass_precision(p->g); }

/* Placement fits the peak into fit_limit: the budget, or the device
 * memory less the CUDA context when that is smaller. --emit-mdl allows
 * only the boundaries the source can write. */
static void run_placement(Pipeline *p) {
  Graph *g = p->g;
  const bool *cut =
      p->source_cuts ? mdl_cut_points(g, p->src) : NULL;
  int64_t limit = fit_limit(&g->cfg);
  pass_placement(g, limit, cut, &p->placement);
  p->placed = true;
  if (!p->placement.fits && p->note_unmet) {
    char b1[32], b2[32];
    fprintf(stderr, "mdlc: note: %s %lld B (%s) cannot be met; using "
            "the smallest peak found, %lld B (%s)\n",
            limit < g->cfg.budget ? "the device memory less the context,"
                                  : "budget",
            (long long)limit, fmt_bytes(limit, b1),
            (long long)p->placement.peak, fmt_bytes(p->placement.peak, b2));
  }
}

static void run_autodiff(Pipeline *p) { pass_autodiff(p->g); }
static void run_liveness(Pipeline *p) { pass_liveness(p->g); }
static void run_arena(Pipeline *p) { pass_arena(p->g); }

/* When a pass runs (NULL in the table: always). */
static bool budget_in_force(const Pipeline *p) {
  return p->g->cfg.budget >= 0 && !p->g->cfg.infer;
}
static bool step_not_built(const Pipeline *p) { return !p->placed; }

/* ---- the table ----------------------------------------------------------- */

enum { FRONTEND, PRECISION, PLACEMENT, AUTODIFF, LIVENESS, ARENA, NPASSES };

typedef struct {
  const char *name;                 /* the pass; --dump-after's word */
  void (*run)(Pipeline *p);         /* what it does to p->g */
  bool (*when)(const Pipeline *p);  /* runs only if true; NULL: always */
  bool dump;                        /* --dump-after may name it */
  bool dump_step;                   /* its dump shows the step */
} Pass;

/* clang-format off */
static const Pass passes[] = {
  /*            name         run            when             dump   dump_step */
  [FRONTEND]  = {"frontend",  run_frontend,  NULL,            true,  false},
  [PRECISION] = {"precision", run_precision, NULL,            true,  false},
  [PLACEMENT] = {"placement", run_placement, budget_in_force, false, true},
  [AUTODIFF]  = {"autodiff",  run_autodiff,  step_not_built,  true,  true},
  [LIVENESS]  = {"liveness",  run_liveness,  step_not_built,  true,  true},
  [ARENA]     = {"arena",     run_arena,     NULL,            true,  true},
};
/* clang-format on */
_Static_assert(sizeof passes / sizeof *passes == NPASSES,
               "one row of `passes` per pass");

/* Runs passes first..last on p->g (the frontend makes it); false if a user
 * error left no graph. */
static bool run(Pipeline *p, int first, int last) {
  for (int i = first; i <= last; i++) {
    const Pass *ps = &passes[i];
    if (!ps->when || ps->when(p)) {
      ps->run(p);
      if (!p->g) return false;
#ifdef MDLC_VERIFY
      graph_verify(p->g);
#endif
    }
    if (ps->dump && p->dump_after && strcmp(p->dump_after, ps->name) == 0) {
      graph_dump(p->g, stdout, ps->dump_step);
      exit(0);
    }
  }
  return true;
}

/* Exit 2 unless `name` is a pass --dump-after can name. */
static void check_dump_name(const char *name) {
  const char *names[NPASSES];
  int n = 0;
  for (int i = 0; i < NPASSES; i++) {
    if (!passes[i].dump) continue;
    if (strcmp(name, passes[i].name) == 0) return;
    names[n++] = passes[i].name;
  }
  const char *near = closest_word(name, names, n);
  die_usage("--dump-after: unknown pass '%s'%s%s%s", name,
            near ? "; did you mean '" : "", near ? near : "",
            near ? "'?" : "");
}

/* ---- the entry points ---------------------------------------------------- */

Graph *pipeline_compile(Pipeline *p) {
  if (p->dump_after) check_dump_name(p->dump_after);
  p->g = NULL;
  p->placed = false;
  memset(&p->placement, 0, sizeof p->placement);
  return run(p, FRONTEND, ARENA) ? p->g : NULL;
}

void pipeline_plan(Graph *g) {
  Pipeline p = {.g = g};
  run(&p, PRECISION, ARENA);
}

void pipeline_rebuild_step(Graph *g) {
  Pipeline p = {.g = g};
  graph_clear_step(g);
  run(&p, AUTODIFF, LIVENESS);
}
