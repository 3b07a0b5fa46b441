/* driver.c: mdlc's command line.
 *
 * The options become a Pipeline (passes/pipeline.c: the compiler as one
 * list); each action then reads the finished graph.
 * Exit status: 0 success, 1 user error or failed check, 2 bad command
 * line, 3 machine failure.
 */
#include "mdlc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
  ACT_PEAK, ACT_BUDGET, ACT_MAX_BATCH, ACT_EMIT_MDL, ACT_EMIT_CUDA, ACT_RUN,
  ACT_OPS,
} Action;

typedef struct {
  Action action;          /* what to do (default --peak) */
  bool action_set;        /* an action option was given */
  const char *file;       /* the model, or "-" */
  Define *defs;           /* -D overrides */
  int ndefs, capdefs;
  Config cfg;             /* settings from the command line */
  unsigned cfg_set;       /* which of cfg the command line set */
  bool budget_given;      /* --budget SIZE (in cfg.budget) */
  int64_t size_arg;       /* --max-batch SIZE */
  bool device_memory_given; /* --device-memory SIZE (in cfg) */
  const char *emit_path;  /* --emit-cuda FILE */
  const char *timeline;   /* --timeline FILE */
  const char *dump_after; /* --dump-after=PASS */
  bool device_cpu;        /* --device cpu */
  RunOpts run;            /* --run settings */
} Options;

static void usage(FILE *f) {
  fputs(
      "usage: mdlc [OPTIONS] FILE.mdl   (or - for standard input)\n"
      "\n"
      "actions (default --peak):\n"
      "  --peak                 the memory plan of one training step\n"
      "  --budget SIZE          place checkpoints so the step fits in SIZE\n"
      "                         (alone: the placement report; with another\n"
      "                         action: that action on the placed plan)\n"
      "  --max-batch SIZE       the largest `let batch` that fits in SIZE\n"
      "  --emit-mdl             the model with the placed checkpoints\n"
      "  --emit-cuda FILE.cu    write the CUDA program of the step\n"
      "  --run                  run the step (--device cuda|cpu)\n"
      "  --timeline FILE        live memory over the step (.svg or .json)\n"
      "  --ops                  the operator table\n"
      "\n"
      "settings:\n"
      "  -D NAME=VALUE          override a top-level `let`\n"
      "  --precision P          fp32 fp16 bf16 fp16_mixed bf16_mixed\n"
      "                         fp16_master bf16_master\n"
      "  --optimizer O          sgd momentum adam adamw\n"
      "  --state-dtype D        f32 bf16 f16\n"
      "  --workspace SIZE       the shared scratch buffer (default 32MiB)\n"
      "  --infer                forward only\n"
      "  --optimizer-in-backward  update each parameter when its gradient is done\n"
      "  --gpus N --zero S      data parallel over N devices, ZeRO stage S\n"
      "  --device-memory SIZE   the device's memory: every action fits the\n"
      "                         peak plus the CUDA context estimate into it\n"
      "  --gpu NAME             a card from mdlc's table (docs/gpus.md): its\n"
      "                         memory, and the roofline of traffic figures\n"
      "  --device cuda|cpu      where --run runs (cpu: the reference executor)\n"
      "  --steps N --seed N --lr X --data fixed|fresh --alloc pool|arena\n"
      "  --check                compare the GPU steps with the CPU reference\n"
      "  --eager                every GPU step eager (no CUDA graph replay)\n"
      "  --json  -o FILE  -q  --dump-after=PASS  --version  --help\n"
      "\n"
      "SIZE: plain bytes or with a unit, any case, a decimal fraction\n"
      "allowed: 512MiB, 1.5GiB, 47.4GB, 15gb (GB = 10^9 B, GiB = 2^30 B).\n",
      f);
}

static const char *need_arg(int argc, char **argv, int *i) {
  if (*i + 1 >= argc) die_usage("option '%s' needs a value", argv[*i]);
  return argv[++*i];
}

/* A size as people type it (util.c's size_parse: 1.5GiB, 47.4GB, 15gb);
 * exit 2 saying what is wrong with it. */
static int64_t size_arg(const char *opt, const char *s) {
  int64_t v;
  const char *why;
  if (!size_parse(s, &v, &why)) {
    if (strcmp(why, "is not a size") == 0)
      die_usage("%s: '%s' is not a size (try 1.5GiB, 47.4GB, 512MiB or plain "
                "bytes)", opt, s);
    die_usage("%s: '%s' %s", opt, s, why);
  }
  return v;
}

static int64_t int_arg(const char *opt, const char *s, int64_t lo,
                       int64_t hi) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || end == s || v < lo || v > hi)
    die_usage("%s: '%s' is not an integer in [%lld, %lld]", opt, s,
              (long long)lo, (long long)hi);
  return v;
}

static int word_arg(const char *opt, const char *s, const char *const *words,
                    int n) {
  for (int i = 0; i < n; i++)
    if (strcmp(s, words[i]) == 0) return i;
  const char *near = closest_word(s, words, n);
  if (near) die_usage("%s: unknown value '%s'; did you mean '%s'?", opt, s, near);
  die_usage("%s: unknown value '%s'", opt, s);
}

static void set_action(Options *o, Action a, const char *opt) {
  if (o->action_set && o->action != a)
    die_usage("%s: only one action at a time", opt);
  o->action = a;
  o->action_set = true;
}

static const char *const long_opts[] = {
    "--peak", "--budget", "--max-batch", "--emit-mdl", "--emit-cuda", "--run",
    "--timeline", "--ops", "--precision", "--optimizer", "--state-dtype",
    "--workspace", "--infer", "--optimizer-in-backward", "--gpus", "--zero",
    "--device-memory", "--device", "--steps", "--seed", "--alloc", "--json",
    "--version", "--help", "--dump-after", "--check", "--lr", "--data",
    "--profile", "--eager", "--gpu",
};

static void parse_args(int argc, char **argv, Options *o) {
  static const char *const dtypes16[] = {"f32", "f16", "bf16"};
  static const DType dtype16_val[] = {DT_F32, DT_F16, DT_BF16};
  static const char *const devices[] = {"cuda", "cpu"};
  static const char *const allocs[] = {"pool", "arena"};
  static const char *const datas[] = {"fixed", "fresh"};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--peak") == 0) set_action(o, ACT_PEAK, a);
    else if (strcmp(a, "--budget") == 0) {
      /* a setting (placement for the action), or alone the action */
      o->cfg.budget = size_arg(a, need_arg(argc, argv, &i));
      o->cfg_set |= CFG_BUDGET;
      o->budget_given = true;
    } else if (strcmp(a, "--max-batch") == 0) {
      set_action(o, ACT_MAX_BATCH, a);
      o->size_arg = size_arg(a, need_arg(argc, argv, &i));
    } else if (strcmp(a, "--emit-mdl") == 0) set_action(o, ACT_EMIT_MDL, a);
    else if (strcmp(a, "--emit-cuda") == 0) {
      set_action(o, ACT_EMIT_CUDA, a);
      o->emit_path = need_arg(argc, argv, &i);
    } else if (strcmp(a, "--run") == 0) set_action(o, ACT_RUN, a);
    else if (strcmp(a, "--ops") == 0) set_action(o, ACT_OPS, a);
    else if (strcmp(a, "--timeline") == 0) o->timeline = need_arg(argc, argv, &i);
    else if (strcmp(a, "-D") == 0 || strncmp(a, "-D", 2) == 0) {
      const char *d = a[2] ? a + 2 : need_arg(argc, argv, &i);
      const char *eq = strchr(d, '=');
      if (!eq || eq == d) die_usage("-D expects NAME=VALUE, got '%s'", d);
      Define *df = VEC_PUSH(o->defs, o->ndefs, o->capdefs);
      df->name = xstrndup(d, (size_t)(eq - d));
      df->value = int_arg("-D", eq + 1, INT64_MIN, INT64_MAX);
    } else if (strcmp(a, "--precision") == 0) {
      o->cfg.precision = (Precision)word_arg(a, need_arg(argc, argv, &i),
                                             precision_name, PREC_COUNT);
      o->cfg_set |= CFG_PRECISION;
    } else if (strcmp(a, "--optimizer") == 0) {
      o->cfg.optimizer = (Optimizer)word_arg(a, need_arg(argc, argv, &i),
                                             optimizer_name, OPTIM_COUNT);
      o->cfg_set |= CFG_OPTIMIZER;
    } else if (strcmp(a, "--state-dtype") == 0) {
      o->cfg.state_dtype =
          dtype16_val[word_arg(a, need_arg(argc, argv, &i), dtypes16, 3)];
      o->cfg_set |= CFG_STATE_DTYPE;
    } else if (strcmp(a, "--workspace") == 0) {
      o->cfg.workspace = size_arg(a, need_arg(argc, argv, &i));
      o->cfg_set |= CFG_WORKSPACE;
    } else if (strcmp(a, "--infer") == 0) o->cfg.infer = true;
    else if (strcmp(a, "--optimizer-in-backward") == 0)
      o->cfg.opt_in_backward = true;
    else if (strcmp(a, "--gpus") == 0)
      o->cfg.gpus = (int)int_arg(a, need_arg(argc, argv, &i), 1, 1 << 20);
    else if (strcmp(a, "--zero") == 0)
      o->cfg.zero = (int)int_arg(a, need_arg(argc, argv, &i), 0, 3);
    else if (strcmp(a, "--device-memory") == 0) {
      o->cfg.device_memory = size_arg(a, need_arg(argc, argv, &i));
      o->cfg_set |= CFG_DEVICE_MEMORY;
      o->device_memory_given = true;
    } else if (strcmp(a, "--gpu") == 0) {
      const char *name = need_arg(argc, argv, &i);
      o->cfg.gpu = gpu_lookup(name);
      if (o->cfg.gpu < 0) {
        const char *near = gpu_suggest(name);
        die_usage("--gpu: unknown card '%s'%s%s%s (mdlc knows %s)", name,
                  near ? "; did you mean " : "", near ? near : "",
                  near ? "?" : "", gpu_names());
      }
    }
    else if (strcmp(a, "--device") == 0)
      o->device_cpu = word_arg(a, need_arg(argc, argv, &i), devices, 2) == 1;
    else if (strcmp(a, "--steps") == 0)
      o->run.steps = (int)int_arg(a, need_arg(argc, argv, &i), 1, 1000000);
    else if (strcmp(a, "--seed") == 0)
      o->run.seed = (uint64_t)int_arg(a, need_arg(argc, argv, &i), 0, INT64_MAX);
    else if (strcmp(a, "--lr") == 0) {
      const char *s = need_arg(argc, argv, &i);
      char *end;
      o->run.lr = strtod(s, &end);
      if (*end || end == s || !(o->run.lr > 0))
        die_usage("--lr: '%s' is not a positive number", s);
    } else if (strcmp(a, "--data") == 0)
      o->run.fresh_data = word_arg(a, need_arg(argc, argv, &i), datas, 2) == 1;
    else if (strcmp(a, "--alloc") == 0)
      o->run.arena = word_arg(a, need_arg(argc, argv, &i), allocs, 2) == 1;
    else if (strcmp(a, "--check") == 0) o->run.check = true;
    else if (strcmp(a, "--profile") == 0) o->run.profile = true;
    else if (strcmp(a, "--eager") == 0) o->run.eager = true;
    else if (strcmp(a, "--json") == 0) o->run.json = true;
    else if (strcmp(a, "-q") == 0) o->run.quiet = true;
    else if (strcmp(a, "-o") == 0) o->run.out_path = need_arg(argc, argv, &i);
    else if (strncmp(a, "--dump-after=", 13) == 0) o->dump_after = a + 13;
    else if (strcmp(a, "--version") == 0) {
      printf("mdlc %s\n", MDLC_VERSION);
      exit(0);
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      exit(0);
    } else if (a[0] == '-' && a[1]) {
      const char *near = closest_word(a, long_opts,
                                      (int)(sizeof long_opts / sizeof *long_opts));
      if (near) die_usage("unknown option '%s'; did you mean '%s'?", a, near);
      die_usage("unknown option '%s' (see mdlc --help)", a);
    } else {
      if (o->file) die_usage("one model at a time ('%s' and '%s')", o->file, a);
      o->file = a;
    }
  }
  if (!o->file) die_usage("no model file given (see mdlc --help)");
  /* --gpu gives the device memory unless --device-memory says otherwise */
  if (o->cfg.gpu >= 0 && !o->device_memory_given) {
    o->cfg.device_memory = gpu_table[o->cfg.gpu].memory;
    o->cfg_set |= CFG_DEVICE_MEMORY;
  }
  /* --budget alone is the placement report; with an action, a setting */
  if (o->budget_given && !o->action_set) o->action = ACT_BUDGET;
  if (o->budget_given && o->action == ACT_MAX_BATCH)
    die_usage("--max-batch SIZE searches with its own size; it does not "
              "take --budget");
  if (o->action == ACT_RUN && o->cfg.gpus > 1)
    die_usage("--run executes one device; --gpus %d is for --peak",
              o->cfg.gpus);
  if (o->cfg.zero && o->cfg.gpus < 2)
    die_usage("--zero %d shards over devices: give --gpus N with N >= 2",
              o->cfg.zero);
}

/* The pipeline (passes/pipeline.c) as the command line asks for it. */
static Pipeline pipeline_of(const Options *o) {
  Action a = o->action;
  return (Pipeline){
      .path = o->file, .defs = o->defs, .ndefs = o->ndefs, .cfg = o->cfg,
      .cfg_set = o->cfg_set, .dump_after = o->dump_after,
      .source_cuts = a == ACT_EMIT_MDL,
      .note_unmet = a != ACT_BUDGET && a != ACT_MAX_BATCH && a != ACT_EMIT_MDL};
}

/* --budget: the segments placed (first and last op by path name and source
 * line), the new peak and where, the extra FLOPs; exit 1 when nothing
 * fits, with the smallest peak found and its breakdown. */
static int report_budget(const Graph *g, const Placement *r, bool json,
                         FILE *out) {
  char b1[32], b2[32];
  int64_t budget = g->cfg.budget, limit = fit_limit(&g->cfg);
  bool fits = r->fits;
  double fw = r->fwd_flops > 0 ? (double)r->fwd_flops : 1;
  double pf = 100.0 * (double)r->extra_flops / fw;
  double ps = 100.0 * (double)r->extra_flops / (3 * fw);
  if (json) {
    fprintf(out, "{\"model\": ");
    json_str(out, g->model_name);
    fprintf(out, ", \"budget\": %lld, \"peak_without_checkpoints\": %lld, "
            "\"fits\": %s, \"peak\": %lld,\n \"peak_at\": {\"instruction\": "
            "%d, \"of\": %d, \"what\": ", (long long)budget,
            (long long)r->base_peak, fits ? "true" : "false",
            (long long)r->peak, g->peak_at + 1, g->nins);
    json_str(out, g->peak_at >= 0 ? instr_describe(g, g->peak_at) : "");
    fprintf(out, "},\n");
    if (g->cfg.device_memory >= 0)
      fprintf(out, " \"device_memory\": %lld, \"context_estimate\": %lld, "
              "\"limit\": %lld,\n", (long long)g->cfg.device_memory,
              (long long)CONTEXT_ESTIMATE_BYTES, (long long)limit);
    fprintf(out, " \"segments\": [");
  } else {
    fprintf(out, "model %s: budget %lld B (%s)\n", g->model_name,
            (long long)budget, fmt_bytes(budget, b1));
    if (g->cfg.device_memory >= 0)
      fprintf(out, "%s: the step's peak may take %lld B (%s), %s\n",
              device_memory_text(&g->cfg), (long long)limit,
              fmt_bytes(limit, b2),
              limit < budget ? "less than the budget: placing for that"
                             : "the budget is the smaller");
    fprintf(out, "without checkpoints: peak %lld B (%s)\n",
            (long long)r->base_peak, fmt_bytes(r->base_peak, b2));
  }
  for (int s = 0; s < g->nsegments; s++) {
    int lo = -1, hi = -1;
    int64_t fl = 0;
    for (int i = 0; i < g->nnodes; i++)
      if (g->nodes[i].segment == s) {
        if (lo < 0) lo = i;
        hi = i;
        fl += op_flops(g, i);
      }
    if (lo < 0) continue;
    int l1 = 0, c1 = 0, l2 = 0, c2 = 0;
    Loc a = g->nodes[lo].loc, z = g->nodes[hi].loc;
    if (a.file >= 0) src_linecol(a.file, a.begin, &l1, &c1);
    if (z.file >= 0) src_linecol(z.file, z.begin, &l2, &c2);
    if (json) {
      fprintf(out, "%s\n  {\"first\": ", s ? "," : "");
      json_str(out, g->nodes[lo].name);
      fprintf(out, ", \"first_line\": %d, \"last\": ", l1);
      json_str(out, g->nodes[hi].name);
      fprintf(out, ", \"last_line\": %d, \"ops\": %d, \"flops\": %lld}", l2,
              hi - lo + 1, (long long)fl);
    } else {
      fprintf(out, "  segment %d: '%s' (line %d) .. '%s' (line %d), %d ops, "
              "recomputes %lld FLOPs\n", s, g->nodes[lo].name, l1,
              g->nodes[hi].name, l2, hi - lo + 1, (long long)fl);
    }
  }
  if (json) {
    fprintf(out, "],\n \"extra_flops\": %lld, \"extra_pct_forward\": %.4f, "
            "\"extra_pct_step\": %.4f, \"forward_flops\": %lld,\n "
            "\"stages\": %d, \"chain\": %s, \"model_exact\": %s",
            (long long)r->extra_flops, pf, ps, (long long)r->fwd_flops,
            r->stages, r->chain ? "true" : "false",
            r->verified_model ? "true" : "false");
    if (!fits) fprintf(out, ", \"smallest_peak\": %lld", (long long)r->peak);
    fprintf(out, "}\n");
    return fits ? 0 : 1;
  }
  fprintf(out, "%s: %d segment%s, peak %lld B (%s)\n",
          fits ? "placed" : "cannot fit; smallest peak found",
          g->nsegments, g->nsegments == 1 ? "" : "s", (long long)r->peak,
          fmt_bytes(r->peak, b1));
  if (g->peak_at >= 0)
    fprintf(out, "  at instruction %d of %d: %s\n", g->peak_at + 1, g->nins,
            instr_describe(g, g->peak_at));
  if (g->cfg.device_memory >= 0)
    fprintf(out, "  with the context: %lld B + %lld B = %lld B (%s) of the "
            "device's %lld B: %s\n", (long long)r->peak,
            (long long)CONTEXT_ESTIMATE_BYTES,
            (long long)(r->peak + CONTEXT_ESTIMATE_BYTES),
            fmt_bytes(r->peak + CONTEXT_ESTIMATE_BYTES, b2),
            (long long)g->cfg.device_memory,
            report_fits(g, g->cfg.device_memory) ? "fits" : "does NOT fit");
  fprintf(out, "extra work: %lld FLOPs recomputed = %.2f%% of the forward, "
          "%.2f%% of the step (forward + backward taken as 3x forward)\n",
          (long long)r->extra_flops, pf, ps);
  fprintf(out, "search: %d chain stages%s; placement model %s the "
          "verified peak\n", r->stages,
          r->chain ? "" : " (not every op boundary is a one-tensor boundary: "
                         "segments start and end at chain boundaries only; "
                         "optimal among those, not proven over all)",
          r->verified_model ? "equals" : "differs from");
  if (fits) return 0;
  int64_t states = g->by_cat[CAT_PARAM] + g->by_cat[CAT_OPT_STATE] +
                   g->by_cat[CAT_MASTER] + g->by_cat[CAT_GRAD];
  fprintf(out, "at that peak, by category:\n");
  for (int c = 0; c < CAT_COUNT; c++)
    if (g->by_cat[c])
      fprintf(out, "  %-22s %14lld B  %s\n", category_name[c],
              (long long)g->by_cat[c], fmt_bytes(g->by_cat[c], b1));
  fprintf(out, "parameters, gradients and optimizer state take %lld B "
          "(%s) of it: checkpoints cannot shrink them; a 16-bit "
          "--precision, --state-dtype bf16, --optimizer sgd, or "
          "--gpus N --zero 1..3 can\n",
          (long long)states, fmt_bytes(states, b1));
  return 1;
}

/* --run and --emit-cuda on a device too small for the step: an error
 * naming the sizes (exit 1), before anything is built. */
static bool fits_device(const Graph *g) {
  if (g->cfg.device_memory < 0 || report_fits(g, g->cfg.device_memory))
    return true;
  char b1[32], b2[32];
  int64_t need = g->peak + CONTEXT_ESTIMATE_BYTES, dm = g->cfg.device_memory;
  fprintf(stderr, "mdlc: error: the step needs %lld B (%s: peak %lld B + "
          "CUDA context estimate %lld B); the device has %lld B (%s)\n",
          (long long)need, fmt_bytes(need, b1), (long long)g->peak,
          (long long)CONTEXT_ESTIMATE_BYTES, (long long)dm,
          fmt_bytes(dm, b2));
  if (dm > CONTEXT_ESTIMATE_BYTES)
    fprintf(stderr, "  hint: --budget SIZE places checkpoints so that it "
            "fits (the peak may take %lld B); --peak shows what takes the "
            "memory\n", (long long)(dm - CONTEXT_ESTIMATE_BYTES));
  return false;
}

static int run_action(const Options *o, const Pipeline *p, Graph *g) {
  const Placement *pl = &p->placement;
  FILE *out = stdout;
  if (o->run.out_path && o->action != ACT_RUN) {
    out = fopen(o->run.out_path, "w");
    if (!out) die_usage("-o: cannot write '%s': %s", o->run.out_path,
                        strerror(errno));
  }
  int rc = 0;
  if (o->timeline) timeline_write(g, o->timeline);
  switch (o->action) {
  case ACT_PEAK:
    report_peak(g, &(ReportOpts){.json = o->run.json,
                                 .placement = p->placed ? pl : NULL},
                out);
    if (g->cfg.device_memory >= 0 && !report_fits(g, g->cfg.device_memory))
      rc = 1;
    break;
  case ACT_OPS:
    report_ops(g, o->run.json, out);
    break;
  case ACT_EMIT_CUDA: {
    if (!fits_device(g)) return 1;
    FILE *f = fopen(o->emit_path, "w");
    if (!f) die_usage("--emit-cuda: cannot write '%s': %s", o->emit_path,
                      strerror(errno));
    rc = cuda_emit(g, &o->run, f);
    if (fclose(f) != 0) die_usage("--emit-cuda: writing '%s' failed", o->emit_path);
    break;
  }
  case ACT_RUN:
    if (!fits_device(g)) return 1;
    rc = o->device_cpu ? cpu_run(g, &o->run) : cuda_run(g, &o->run);
    break;
  case ACT_BUDGET:
    if (g->cfg.infer)
      die_usage("--budget places checkpoints for training; --infer has no "
                "backward pass");
    rc = report_budget(g, pl, o->run.json, out);
    break;
  case ACT_MAX_BATCH:
    rc = max_batch(p, g, o->size_arg, o->run.json, out);
    break;
  case ACT_EMIT_MDL: {
    /* the source with the placed checkpoints; a header comment says what
     * was placed (exit 1 when the budget cannot be met: the smallest peak
     * found is written) */
    char b1[32], b2[32];
    if (g->cfg.infer)
      die_usage("--emit-mdl places checkpoints for training; --infer has "
                "no backward pass");
    if (g->cfg.budget < 0)
      die_usage("--emit-mdl writes the checkpoints placed for a budget: give "
                "--budget SIZE, or `budget` in the train block");
    StrBuf h = {0};
    sb_printf(&h, "# mdlc --emit-mdl: budget %lld B (%s): %s%d segment%s, "
              "peak %lld B (%s), %lld FLOPs recomputed (%.2f%% of the "
              "forward)\n", (long long)g->cfg.budget,
              fmt_bytes(g->cfg.budget, b1),
              pl->fits ? "" : "CANNOT FIT, smallest peak found: ",
              pl->nsegments, pl->nsegments == 1 ? "" : "s",
              (long long)pl->peak, fmt_bytes(pl->peak, b2),
              (long long)pl->extra_flops,
              100.0 * (double)pl->extra_flops /
                  (double)(pl->fwd_flops > 0 ? pl->fwd_flops : 1));
    if (g->cfg.device_memory >= 0)
      sb_printf(&h, "# %s: placed for %lld B\n", device_memory_text(&g->cfg),
                (long long)fit_limit(&g->cfg));
    sb_printf(&h, "# (segments only at boundaries the source can write: "
              "between model statements and between the calls of a "
              "repeat)\n");
    if (o->ndefs) {
      sb_printf(&h, "# placed with");
      for (int i = 0; i < o->ndefs; i++)
        sb_printf(&h, " -D %s=%lld", o->defs[i].name,
                  (long long)o->defs[i].value);
      sb_printf(&h, ": compile it with the same\n");
    }
    mdl_emit(g, p->src, h.s, out);
    if (!pl->fits) {
      fprintf(stderr, "mdlc: budget %lld B (%s) cannot be met at the "
              "boundaries the source can write; the smallest peak found is "
              "%lld B (%s)\n", (long long)g->cfg.budget,
              fmt_bytes(g->cfg.budget, b1), (long long)pl->peak,
              fmt_bytes(pl->peak, b2));
      rc = 1;
    }
    break;
  }
  }
  if (out != stdout && fclose(out) != 0)
    die_usage("-o: writing '%s' failed", o->run.out_path);
  return rc;
}

int main(int argc, char **argv) {
  atexit(mem_free_all);
  Options o = {0};
  o.cfg = graph_new()->cfg; /* the defaults */
  parse_args(argc, argv, &o);
  Pipeline p = pipeline_of(&o);
  Graph *g = pipeline_compile(&p);
  if (!g) return 1;
  return run_action(&o, &p, g);
}
