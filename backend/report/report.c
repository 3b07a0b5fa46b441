/* backend/report/report.c: the memory plan as a person reads it, or as JSON.
 *
 * Everything printed is read off the finished graph (liveness and arena
 * have run); nothing is recomputed here, so the report and the schedule
 * cannot disagree. Bytes are always shown exactly, units beside them.
 */
#include "mdlc.h"

#include <stdlib.h>
#include <string.h>


int64_t graph_param_count(const Graph *g) {
  int64_t n = 0;
  for (int v = 0; v < g->nvals; v++)
    if (g->vals[v].kind == VK_PARAM) n += shape_numel_ok(&g->vals[v].shape);
  return n;
}

/* Model states per device, as the ZeRO paper counts them: parameters,
 * gradients (as kept between backward and update), optimizer state and
 * master weights, each sharded as the ZeRO stage says. */
static int64_t model_state_bytes(const Graph *g) {
  int64_t n = 0;
  for (int b = 0; b < g->nbufs; b++) {
    const Buf *x = &g->bufs[b];
    if (!x->persistent) continue;
    bool param = x->cat == CAT_PARAM && g->vals[x->value].kind == VK_PARAM;
    if (param || x->cat == CAT_OPT_STATE || x->cat == CAT_MASTER)
      n += x->bytes;
  }
  int stage = g->cfg.gpus > 1 ? g->cfg.zero : 0;
  for (int v = 0; v < g->nvals; v++) {
    if (g->vals[v].kind != VK_PARAM || !g->grad_buf || g->grad_buf[v] < 0)
      continue;
    int64_t e = shape_numel_ok(&g->vals[v].shape);
    if (stage >= 2) e = (e + g->cfg.gpus - 1) / g->cfg.gpus;
    n += e * dtype_size(g->vals[v].dtype);
  }
  return n;
}


const char *instr_describe(const Graph *g, int i) {
  if (i < 0) return "before the first instruction (persistent buffers only)";
  const Instr *in = &g->ins[i];
  switch (in->kind) {
  case IK_SEED:
    return xsprintf("the seed gradient of the loss '%s'", g->vals[in->node].name);
  case IK_OPT:
    return xsprintf("the %s update of '%s'", optimizer_name[g->cfg.optimizer],
                    g->vals[in->node].name);
  case IK_REDUCE:
    return xsprintf("the reduce-scatter of the gradient of '%s'",
                    g->vals[in->node].name);
  case IK_FWD:
  case IK_RECOMPUTE:
  case IK_BWD: {
    const Node *n = &g->nodes[in->node];
    const char *what = in->kind == IK_FWD ? "forward" : in->kind == IK_BWD
                                                            ? "backward"
                                                            : "recomputation";
    return xsprintf("%s of %s '%s' (%s)", what, op_info[n->op].name, n->name,
                    loc_str(n->loc, ""));
  }
  case IK_COUNT:
    break;
  }
  ICE("instr_describe: instruction kind %d", (int)in->kind);
}

typedef struct {
  int buf;       /* Buf index */
  int64_t bytes; /* its size */
} Ranked;

static int by_bytes_desc(const void *pa, const void *pb) {
  const Ranked *a = pa, *b = pb;
  if (a->bytes != b->bytes) return a->bytes > b->bytes ? -1 : 1;
  return a->buf - b->buf;
}

int largest_at_peak(const Graph *g, int *bufs, int max) {
  Ranked *all = xalloc(sizeof(Ranked) * (size_t)(g->nbufs ? g->nbufs : 1));
  int n = 0;
  for (int b = 0; b < g->nbufs; b++)
    if (buf_live_at(&g->bufs[b], g->peak_at) && g->bufs[b].bytes > 0)
      all[n++] = (Ranked){b, g->bufs[b].bytes};
  qsort(all, (size_t)n, sizeof(Ranked), by_bytes_desc);
  if (n > max) n = max;
  for (int i = 0; i < n; i++) bufs[i] = all[i].buf;
  return n;
}

/* Live bytes once the forward pass is over (after the last forward
 * instruction's frees): the persistent bytes plus everything saved for the
 * backward. -1 when there is no forward instruction. */
static int64_t live_after_forward(const Graph *g) {
  int last = -1;
  for (int i = 0; i < g->nins; i++)
    if (g->ins[i].kind == IK_FWD) last = i;
  if (last < 0) return -1;
  int64_t live = g->ins[last].live;
  for (int k = 0; k < g->ins[last].nfree; k++)
    live -= g->bufs[g->ins[last].free[k]].bytes;
  return live;
}

bool report_fits(const Graph *g, int64_t device_memory) {
  return g->peak + CONTEXT_ESTIMATE_BYTES <= device_memory;
}

const char *device_memory_text(const Config *c) {
  char u1[32], u2[32], u3[32];
  const Gpu *gpu = cfg_gpu(c);
  if (gpu && gpu->memory != c->device_memory) gpu = NULL; /* not its size */
  int64_t room = c->device_memory - CONTEXT_ESTIMATE_BYTES;
  if (room < 0) room = 0;
  return xsprintf("device memory %lld B (%s%s%s) less the CUDA context "
                  "estimate %lld B (%s) = %lld B (%s)",
                  (long long)c->device_memory, fmt_bytes(c->device_memory, u1),
                  gpu ? ", " : "", gpu ? gpu->name : "",
                  (long long)CONTEXT_ESTIMATE_BYTES,
                  fmt_bytes(CONTEXT_ESTIMATE_BYTES, u2), (long long)room,
                  fmt_bytes(room, u3));
}

/* The checkpoints a budget placed, for --peak (and --budget with another
 * action): the plan reported is the placed one. */
static void print_placement(const Graph *g, const Placement *r, FILE *f) {
  char u[32];
  fprintf(f, "  checkpoints placed for the budget %lld B (%s): %d segment%s, "
          "%lld FLOPs recomputed (%.2f%% of the forward)%s\n",
          (long long)g->cfg.budget, fmt_bytes(g->cfg.budget, u),
          r->nsegments, r->nsegments == 1 ? "" : "s",
          (long long)r->extra_flops,
          100.0 * (double)r->extra_flops /
              (double)(r->fwd_flops > 0 ? r->fwd_flops : 1),
          r->fits ? "" : "; the budget cannot be met, this is the smallest "
                         "peak found");
}

static void placement_json(const Graph *g, const Placement *r, FILE *f) {
  fprintf(f, "  \"placement\": {\"budget\": %lld, \"fits\": %s, "
          "\"segments\": %d, \"extra_flops\": %lld},\n",
          (long long)g->cfg.budget, r->fits ? "true" : "false", r->nsegments,
          (long long)r->extra_flops);
}

static void report_json(const Graph *g, const ReportOpts *o, FILE *f) {
  int top[10];
  int ntop = largest_at_peak(g, top, 10);
  fprintf(f, "{\n  \"model\": ");
  json_str(f, g->model_name ? g->model_name : "");
  fprintf(f, ",\n  \"precision\": \"%s\",\n  \"optimizer\": \"%s\",\n",
          precision_name[g->cfg.precision], optimizer_name[g->cfg.optimizer]);
  fprintf(f, "  \"mode\": \"%s\",\n", g->cfg.infer ? "infer" : "train");
  fprintf(f, "  \"param_count\": %lld,\n", (long long)graph_param_count(g));
  fprintf(f, "  \"gpus\": %d,\n  \"zero\": %d,\n", g->cfg.gpus, g->cfg.zero);
  fprintf(f, "  \"model_state_bytes\": %lld,\n", (long long)model_state_bytes(g));
  fprintf(f, "  \"peak_bytes\": %lld,\n", (long long)g->peak);
  fprintf(f, "  \"peak_at\": {\"instruction\": %d, \"of\": %d", g->peak_at + 1,
          g->nins);
  if (g->peak_at >= 0) {
    const Instr *in = &g->ins[g->peak_at];
    fprintf(f, ", \"phase\": \"%s\", \"what\": ", instr_phase[in->kind]);
    json_str(f, instr_describe(g, g->peak_at));
  }
  fprintf(f, "},\n");
  if (o->placement) placement_json(g, o->placement, f);
  fprintf(f, "  \"persistent_bytes\": %lld,\n",
          (long long)g->persistent_bytes);
  fprintf(f, "  \"live_after_forward\": %lld,\n",
          (long long)live_after_forward(g));
  report_traffic_json(g, f);
  fprintf(f, "  \"arena_bytes\": %lld,\n", (long long)g->arena_bytes);
  fprintf(f, "  \"planned_bytes\": %lld,\n",
          (long long)(g->arena_bytes + g->persistent_bytes));
  fprintf(f, "  \"categories\": {");
  for (int c = 0; c < CAT_COUNT; c++)
    fprintf(f, "%s\n    \"%s\": %lld", c ? "," : "", category_name[c],
            (long long)g->by_cat[c]);
  fprintf(f, "\n  },\n  \"largest_at_peak\": [");
  for (int i = 0; i < ntop; i++) {
    const Buf *b = &g->bufs[top[i]];
    fprintf(f, "%s\n    {\"name\": ", i ? "," : "");
    json_str(f, b->name);
    fprintf(f, ", \"bytes\": %lld, \"category\": \"%s\", \"dtype\": \"%s\"}",
            (long long)b->bytes, category_name[b->cat], dtype_name(b->dtype));
  }
  fprintf(f, "\n  ],\n  \"instructions\": %d,\n  \"buffers\": %d", g->nins,
          g->nbufs);
  int64_t dm = g->cfg.device_memory;
  if (dm >= 0)
    fprintf(f, ",\n  \"device_memory\": %lld,\n  \"context_estimate\": %lld,\n"
               "  \"fits\": %s",
            (long long)dm, (long long)CONTEXT_ESTIMATE_BYTES,
            report_fits(g, dm) ? "true" : "false");
  fprintf(f, "\n}\n");
}

static void line_bytes(FILE *f, const char *label, int64_t bytes) {
  char u[32];
  fprintf(f, "  %-22s %16lld B  %12s\n", label, (long long)bytes,
          fmt_bytes(bytes, u));
}

void report_peak(const Graph *g, const ReportOpts *o, FILE *f) {
  if (o->json) {
    report_json(g, o, f);
    return;
  }
  char u[32], u2[32];
  fprintf(f, "model %s: one %s step, precision %s, optimizer %s\n",
          g->model_name ? g->model_name : "?",
          g->cfg.infer ? "inference" : "training",
          precision_name[g->cfg.precision], optimizer_name[g->cfg.optimizer]);
  fprintf(f, "parameters: %lld\n", (long long)graph_param_count(g));
  if (g->cfg.gpus > 1)
    fprintf(f, "data parallel: %d devices, ZeRO stage %d, batch %lld per "
               "device; figures are per device\n",
            g->cfg.gpus, g->cfg.zero, (long long)g->batch);
  int64_t ms = model_state_bytes(g);
  fprintf(f, "model states (parameters, gradients, optimizer state, master "
             "weights): %lld B (%s)\n\n", (long long)ms, fmt_bytes(ms, u));
  fprintf(f, "peak: %lld B (%s)\n", (long long)g->peak, fmt_bytes(g->peak, u));
  fprintf(f, "  at instruction %d of %d: %s\n", g->peak_at + 1, g->nins,
          instr_describe(g, g->peak_at));
  if (o->placement) print_placement(g, o->placement, f);
  fprintf(f, "\nat the peak, by category:\n");
  for (int c = 0; c < CAT_COUNT; c++)
    if (g->by_cat[c]) line_bytes(f, category_name[c], g->by_cat[c]);
  line_bytes(f, "total", g->peak);

  int top[8];
  int ntop = largest_at_peak(g, top, 8);
  fprintf(f, "\nlargest tensors alive at the peak:\n");
  for (int i = 0; i < ntop; i++) {
    const Buf *b = &g->bufs[top[i]];
    fprintf(f, "  %14lld B %11s  %-20s %s\n", (long long)b->bytes,
            fmt_bytes(b->bytes, u), category_name[b->cat], b->name);
  }
  int64_t planned = g->arena_bytes + g->persistent_bytes;
  fprintf(f, "\nplanned memory: arena %lld B + persistent %lld B = %lld B (%s)\n",
          (long long)g->arena_bytes, (long long)g->persistent_bytes,
          (long long)planned, fmt_bytes(planned, u));
  int64_t over = planned - g->peak;
  fprintf(f, "  %lld B (%s, %.2f%%) above the peak of live bytes\n",
          (long long)over, fmt_bytes(over, u2),
          g->peak ? 100.0 * (double)over / (double)g->peak : 0.0);
  report_traffic(g, f);
  int64_t dm = g->cfg.device_memory;
  if (dm >= 0) {
    const Gpu *gpu = cfg_gpu(&g->cfg);
    if (gpu && gpu->memory != dm) gpu = NULL; /* --device-memory won */
    int64_t need = g->peak + CONTEXT_ESTIMATE_BYTES;
    fprintf(f, "\ndevice memory %lld B (%s%s%s): %s\n", (long long)dm,
            fmt_bytes(dm, u), gpu ? ", " : "", gpu ? gpu->name : "",
            report_fits(g, dm) ? "fits" : "does NOT fit");
    fprintf(f, "  peak %lld B + CUDA context and library handles, estimated "
               "%lld B = %lld B (%s)\n",
            (long long)g->peak, (long long)CONTEXT_ESTIMATE_BYTES,
            (long long)need, fmt_bytes(need, u2));
  }
}

/* ---- the operator table ------------------------------------------------- */

static const char *saved_text(const Node *n) {
  int sv = op_info[n->op].save;
  if (!sv) return "nothing";
  StrBuf sb = {0};
  for (int k = 0; k < 8; k++)
    if (sv & SV_IN(k)) sb_printf(&sb, "%sinput %d", sb.n ? ", " : "", k);
  if (sv & SV_OUT) sb_printf(&sb, "%soutput", sb.n ? ", " : "");
  if (sv & SV_EXTRA) sb_printf(&sb, "%sextras", sb.n ? ", " : "");
  return sb.s;
}

/* The forward and backward instruction of each node, -1 where none. */
static void node_instrs(const Graph *g, int *fwd, int *bwd) {
  for (int i = 0; i < g->nnodes; i++) fwd[i] = bwd[i] = -1;
  for (int i = 0; i < g->nins; i++) {
    const Instr *in = &g->ins[i];
    if (in->kind == IK_FWD) fwd[in->node] = i;
    else if (in->kind == IK_BWD) bwd[in->node] = i;
  }
}

void report_ops(const Graph *g, bool json, FILE *f) {
  char s1[160];
  const Gpu *gpu = cfg_gpu(&g->cfg);
  int *fwd = xalloc(sizeof(int) * (size_t)(g->nnodes ? g->nnodes : 1));
  int *bwd = xalloc(sizeof(int) * (size_t)(g->nnodes ? g->nnodes : 1));
  node_instrs(g, fwd, bwd);
  if (json) fprintf(f, "[");
  else {
    fprintf(f, "%5s  %-14s %-34s %-22s %12s %14s %12s %12s %14s %12s %12s",
            "#", "op", "name", "output", "parameters", "flops", "read",
            "written", "bwd flops", "bwd read", "bwd written");
    if (gpu) fprintf(f, " %11s %11s", "floor us", "bwd floor");
    fprintf(f, "  %s\n", "saves");
  }
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    const Value *y = &g->vals[n->out[0]];
    int64_t params = 0;
    for (int k = 0; k < n->nin; k++)
      if (g->vals[n->in[k]].kind == VK_PARAM)
        params += shape_numel_ok(&g->vals[n->in[k]].shape);
    Traffic tf = fwd[i] >= 0 ? instr_traffic(g, fwd[i]) : (Traffic){0, 0, 0};
    Traffic tb = bwd[i] >= 0 ? instr_traffic(g, bwd[i]) : (Traffic){0, 0, 0};
    double ff = gpu && fwd[i] >= 0 ? instr_floor(g, fwd[i], gpu) : 0;
    double fb = gpu && bwd[i] >= 0 ? instr_floor(g, bwd[i], gpu) : 0;
    if (json) {
      fprintf(f, "%s\n  {\"index\": %d, \"op\": \"%s\", \"name\": ", i ? "," : "",
              i, op_info[n->op].name);
      json_str(f, n->name);
      fprintf(f, ", \"dtype\": \"%s\", \"shape\": \"%s\", \"params\": %lld, "
                 "\"flops\": %lld, \"bytes_read\": %lld, \"bytes_written\": "
                 "%lld, \"bwd_flops\": %lld, \"bwd_bytes_read\": %lld, "
                 "\"bwd_bytes_written\": %lld",
              dtype_name(y->dtype), shape_str(&y->shape, s1), (long long)params,
              (long long)op_flops(g, i), (long long)tf.read,
              (long long)tf.written, (long long)tb.flops, (long long)tb.read,
              (long long)tb.written);
      if (gpu)
        fprintf(f, ", \"floor_us\": %.6g, \"bwd_floor_us\": %.6g", ff * 1e6,
                fb * 1e6);
      fprintf(f, ", \"saves\": \"%s\"}", saved_text(n));
    } else {
      char out[200];
      snprintf(out, sizeof out, "%s%s", dtype_name(y->dtype),
               shape_str(&y->shape, s1));
      fprintf(f, "%5d  %-14s %-34s %-22s %12lld %14lld %12lld %12lld %14lld "
              "%12lld %12lld", i, op_info[n->op].name, n->name, out,
              (long long)params, (long long)op_flops(g, i), (long long)tf.read,
              (long long)tf.written, (long long)tb.flops, (long long)tb.read,
              (long long)tb.written);
      if (gpu) fprintf(f, " %11.3f %11.3f", ff * 1e6, fb * 1e6);
      fprintf(f, "  %s\n", saved_text(n));
    }
  }
  fprintf(f, json ? "\n]\n" : "");
}
