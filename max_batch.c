/* max_batch.c: --max-batch SIZE, the largest `let batch` whose step fits.
 *
 * Two searches, one without checkpoints (the plain peak must be at most
 * SIZE) and one with checkpoint placement (pass_placement at SIZE must
 * fit). Each compiles the model at batch 1, 2, 4, ... until one does not
 * fit (at most 2^40), then bisects between the last that fit and the
 * first that did not; the answer is the largest batch seen to fit, with
 * the peak (and, with placement, the segments and recomputation) of the
 * compile that last fit. A compile lowers the parsed file again
 * (Pipeline.src) with -D batch=N and no budget of its own; with --gpus N
 * every batch must divide over the devices, as for any compile. With a
 * device memory (--device-memory, --gpu, train `device_memory`) the peak
 * must also fit into it less the CUDA context estimate: the search runs
 * at the smaller of the two (fit_limit).
 *
 *   mlp at 1GiB: batch 1 .. 65536 fit, 131072 does not; bisection between
 *   them finds 92996 without checkpoints.
 */
#include "mdlc.h"

#include <string.h>

/* What one search found. */
typedef struct {
  int64_t batch;   /* the largest batch that fit, 0 if batch 1 did not */
  int64_t peak;    /* its peak (with placement: the placed peak) */
  int64_t flops;   /* with placement: FLOPs recomputed */
  int64_t fwd;     /* with placement: FLOPs of the forward */
  int segs;        /* with placement: segments placed */
} Found;

/* Compiles q at `batch` (the last -D of q is batch's) and says whether it
 * fits in size, without (place false) or with placement; on a fit, *f
 * gets its figures. */
static bool fits(Pipeline *q, Define *slot, int64_t batch, bool place,
                 int64_t size, Found *f) {
  *slot = (Define){"batch", batch};
  Graph *h = pipeline_compile(q);
  if (!h) return false;
  Placement r;
  bool ok = place ? pass_placement(h, size, NULL, &r) : h->peak <= size;
  if (ok) {
    f->peak = place ? r.peak : h->peak;
    f->flops = place ? r.extra_flops : 0;
    f->fwd = place ? r.fwd_flops : 1;
    f->segs = place ? r.nsegments : 0;
  }
  return ok;
}

/* The largest batch that fits, doubling then bisecting. */
static Found search(Pipeline *q, Define *slot, bool place, int64_t size) {
  Found f = {.fwd = 1};
  int64_t lo = 0, hi = 1;
  for (;;) {
    bool ok = fits(q, slot, hi, place, size, &f);
    if (!ok || hi >= ((int64_t)1 << 40)) break;
    lo = hi;
    hi *= 2;
  }
  while (hi - lo > 1) {
    int64_t mid = lo + (hi - lo) / 2;
    if (fits(q, slot, mid, place, size, &f)) lo = mid;
    else hi = mid;
  }
  f.batch = lo;
  return f;
}

int max_batch(const Pipeline *p, const Graph *g, int64_t size, bool json,
              FILE *out) {
  char b1[32];
  int64_t asked = size;
  if (g->cfg.device_memory >= 0) {
    Config c = g->cfg;
    c.budget = size;
    size = fit_limit(&c);
  }
  if (g->batch < 0)
    die_usage("--max-batch varies `let batch`, but the model has no "
              "top-level `let batch`");
  /* the compiles: p's settings, -D batch=N last, no budget, no dump */
  Pipeline q = *p;
  Define *defs = xalloc(sizeof(Define) * (size_t)(p->ndefs + 1));
  q.defs = defs;
  q.ndefs = 0;
  for (int i = 0; i < p->ndefs; i++)
    if (strcmp(p->defs[i].name, "batch") != 0) defs[q.ndefs++] = p->defs[i];
  Define *slot = &defs[q.ndefs++];
  q.dump_after = NULL;
  q.cfg.budget = -1; /* placement, when wanted, runs here at `size` */
  q.cfg_set |= CFG_BUDGET;
  int rc = 0;
  Found res[2];
  for (int mode = 0; mode < 2; mode++) {
    const Found *f = &res[mode];
    res[mode] = search(&q, slot, mode == 1, size);
    if (f->batch == 0) rc = 1;
    if (json) continue;
    if (f->batch == 0) {
      fprintf(out, "%s: batch 1 does not fit in %lld B (%s)\n",
              mode ? "with checkpoint placement" : "without checkpoints",
              (long long)size, fmt_bytes(size, b1));
      continue;
    }
    fprintf(out, "%s: max batch %lld, peak %lld B (%s)",
            mode ? "with checkpoint placement" : "without checkpoints",
            (long long)f->batch, (long long)f->peak, fmt_bytes(f->peak, b1));
    if (mode)
      fprintf(out, ", %d segment%s, %lld FLOPs recomputed (%.2f%% of the "
              "forward)", f->segs, f->segs == 1 ? "" : "s",
              (long long)f->flops, 100.0 * (double)f->flops / (double)f->fwd);
    fputc('\n', out);
  }
  if (json) {
    fprintf(out, "{\"model\": ");
    json_str(out, g->model_name);
    fprintf(out, ", \"size\": %lld, \"batch_was\": %lld", (long long)asked,
            (long long)g->batch);
    if (g->cfg.device_memory >= 0)
      fprintf(out, ", \"device_memory\": %lld, \"context_estimate\": %lld, "
              "\"limit\": %lld", (long long)g->cfg.device_memory,
              (long long)CONTEXT_ESTIMATE_BYTES, (long long)size);
    for (int mode = 0; mode < 2; mode++) {
      const Found *f = &res[mode];
      fprintf(out, ",\n \"%s\": {\"max_batch\": %lld, \"peak\": %lld",
              mode ? "with_placement" : "without_checkpoints",
              (long long)f->batch, (long long)f->peak);
      if (mode)
        fprintf(out, ", \"segments\": %d, \"extra_flops\": %lld, "
                "\"extra_pct_forward\": %.4f", f->segs, (long long)f->flops,
                100.0 * (double)f->flops / (double)f->fwd);
      fputc('}', out);
    }
    fprintf(out, "}\n");
    return rc;
  }
  fprintf(out, "(budget %lld B (%s); model %s, `let batch` was %lld)\n",
          (long long)asked, fmt_bytes(asked, b1), g->model_name,
          (long long)g->batch);
  if (g->cfg.device_memory >= 0)
    fprintf(out, "(%s: every peak above fits in %lld B (%s), %s)\n",
            device_memory_text(&g->cfg), (long long)size,
            fmt_bytes(size, b1),
            size < asked ? "less than the budget" : "the budget");
  return rc;
}
