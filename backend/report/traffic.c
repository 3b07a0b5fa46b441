/* backend/report/traffic.c: the DRAM traffic and FLOPs of every
 * instruction of the step, and its roofline floor on a named GPU.
 *
 * The traffic of an instruction is the least an implementation of it must
 * move to and from device memory: each operand once, however often the
 * op's arithmetic touches it (the rules are in docs/cli-notes.md):
 *   forward, recompute: every input read, every output (extras included)
 *     written; an operand read through a view counts the view's elements.
 *   backward: if it writes any gradient, it reads what its op's save rule
 *     keeps (op_saves_input, op_saves_output) and the output gradients
 *     that arrived; it writes each wanted input gradient, and one it
 *     accumulates into counts as read and written. A gradient handed off
 *     (the output gradient's own buffer) costs nothing.
 *   seed: writes the loss gradient. reduce-scatter: reads the full
 *     gradient, writes the shard.
 *   optimizer: reads the gradient, the parameter (its master copy when
 *     there is one) and the state; writes the parameter, the master copy
 *     and the state; the element count is the smallest operand's (a ZeRO
 *     shard).
 * FLOPs: op_flops for a forward or a recomputation, twice that for a
 * backward, and per element of a parameter for the optimizer (below).
 *
 * The roofline floor of an instruction on a GPU is the larger of its
 * bytes over the DRAM bandwidth and its FLOPs over the rate it runs at:
 * the 16-bit tensor-core rate for matmul-class ops (linear, matmul,
 * conv2d, sdpa) whose operands are 16-bit, the f32 rate otherwise. The
 * floor of the step is the sum over instructions: no instruction can be
 * faster than its floor, and mdlc runs them one after another.
 *
 *   tiny's first linear: x f32[2, 3] (24 B), weight [4, 3] (48 B), bias
 *   [4] (16 B) read = 88 B; output [2, 4] written = 32 B; 56 FLOPs.
 */
#include "mdlc.h"

#include <string.h>

const char *const traffic_phase_name[PH_COUNT] = {
    [PH_FWD] = "forward", [PH_RECOMPUTE] = "recompute",
    [PH_BWD] = "backward", [PH_OPT] = "optimizer"};

int traffic_phase(InstrKind k) {
  switch (k) {
  case IK_FWD: return PH_FWD;
  case IK_RECOMPUTE: return PH_RECOMPUTE;
  case IK_SEED:
  case IK_BWD:
  case IK_REDUCE: return PH_BWD;
  case IK_OPT: return PH_OPT;
  case IK_COUNT: break;
  }
  ICE("traffic_phase: instruction kind %d", (int)k);
}

/* FLOPs of one optimizer update per element, counted from docs/ops.md's
 * formulas: sgd p -= lr g (2); momentum s = 0.9 s + g, p -= lr s (4);
 * adam s0 (3), s1 (4), denominator sqrt(s1) / c + eps (3), p -= step s0 /
 * denominator (3): 13; adamw adds the decay p *= 1 - lr wd (14). */
static int64_t optim_flops_per_element(Optimizer o) {
  switch (o) {
  case OPTIM_SGD: return 2;
  case OPTIM_MOMENTUM: return 4;
  case OPTIM_ADAM: return 13;
  case OPTIM_ADAMW: return 14;
  case OPTIM_COUNT: break;
  }
  ICE("optim_flops_per_element: optimizer %d", (int)o);
}

/* Elements an operand covers: its value's (a view's own elements), but no
 * more than its buffer holds (a ZeRO shard of a parameter's state). */
static int64_t ref_numel(const Graph *g, Ref r) {
  int64_t b = g->bufs[r.buf].numel;
  if (r.value < 0) return b;
  int64_t v = op_numel(g, r.value);
  return v < b ? v : b;
}

static int64_t ref_bytes(const Graph *g, Ref r) {
  return ref_numel(g, r) * dtype_size(g->bufs[r.buf].dtype);
}

/* The same elements of the same buffer: the same value, or two contiguous
 * values at one offset with one element count (a reshape of it). */
static bool same_region(const Graph *g, Ref a, Ref b) {
  if (a.buf != b.buf) return false;
  if (a.value == b.value) return true;
  if (a.value < 0 || b.value < 0) return false;
  const Value *x = &g->vals[a.value], *y = &g->vals[b.value];
  return value_is_contiguous(x) && value_is_contiguous(y) &&
         x->view_offset == y->view_offset &&
         op_numel(g, a.value) == op_numel(g, b.value);
}

/* The operands counted so far in one direction (read or written). */
typedef struct {
  Ref r[64];
  int n;
  int64_t bytes;
} Seen;

static void count(const Graph *g, Seen *s, Ref r) {
  if (r.buf < 0) return;
  for (int k = 0; k < s->n; k++)
    if (same_region(g, s->r[k], r)) return;
  if (s->n < (int)(sizeof s->r / sizeof *s->r)) s->r[s->n++] = r;
  s->bytes += ref_bytes(g, r);
}

Traffic instr_traffic(const Graph *g, int i) {
  const Instr *in = &g->ins[i];
  Seen rd = {.n = 0}, wr = {.n = 0};
  int64_t flops = 0;
  switch (in->kind) {
  case IK_FWD:
  case IK_RECOMPUTE:
    for (int k = 0; k < in->nin; k++) count(g, &rd, in->in[k]);
    for (int k = 0; k < in->nout; k++) count(g, &wr, in->out[k]);
    flops = op_flops(g, in->node);
    break;
  case IK_BWD: {
    const Node *n = &g->nodes[in->node];
    int dy0 = n->nin + n->nout;
    for (int k = 0; k < in->nout; k++) {
      Ref o = in->out[k];
      bool handed = false;
      for (int d = dy0; d < in->nin; d++)
        if (o.buf >= 0 && in->in[d].buf == o.buf) handed = true;
      if (o.buf < 0 || handed) continue;
      count(g, &wr, o);
      if (in->accum[k]) count(g, &rd, o);
    }
    if (wr.n == 0) break; /* every gradient handed off: nothing runs */
    for (int k = 0; k < n->nin; k++)
      if (op_saves_input(n, k)) count(g, &rd, in->in[k]);
    for (int o = 0; o < n->nout; o++)
      if (op_saves_output(g, n, o)) count(g, &rd, in->in[n->nin + o]);
    for (int d = dy0; d < in->nin; d++) count(g, &rd, in->in[d]);
    flops = flops_mul(2, op_flops(g, in->node));
    break;
  }
  case IK_SEED:
    for (int k = 0; k < in->nout; k++) count(g, &wr, in->out[k]);
    break;
  case IK_REDUCE:
    count(g, &rd, in->in[0]);
    count(g, &wr, in->out[0]);
    break;
  case IK_OPT: {
    /* in = {param, grad, master, state0, state1}: one element count */
    int64_t e = INT64_MAX;
    for (int k = 0; k < in->nin; k++)
      if (in->in[k].buf >= 0 && ref_numel(g, in->in[k]) < e)
        e = ref_numel(g, in->in[k]);
    if (e == INT64_MAX) break;
    bool master = in->nin > 2 && in->in[2].buf >= 0;
    for (int k = 0; k < in->nin; k++) {
      Ref r = in->in[k];
      if (r.buf < 0) continue;
      int64_t b = e * dtype_size(g->bufs[r.buf].dtype);
      if (k != 0 || !master) rd.bytes += b;  /* the master is read instead */
      if (k != 1) wr.bytes += b;             /* the gradient is not written */
    }
    flops = flops_mul(e, optim_flops_per_element(g->cfg.optimizer));
    break;
  }
  case IK_COUNT:
    ICE("instr_traffic: instruction kind %d", (int)in->kind);
  }
  return (Traffic){rd.bytes, wr.bytes, flops};
}

bool instr_tensor16(const Graph *g, int i) {
  const Instr *in = &g->ins[i];
  if (in->kind != IK_FWD && in->kind != IK_RECOMPUTE && in->kind != IK_BWD)
    return false;
  const Node *n = &g->nodes[in->node];
  if (op_info[n->op].cls != PC_MATMUL || n->nin < 1) return false;
  DType t = g->vals[n->in[0]].dtype;
  return t == DT_F16 || t == DT_BF16;
}

double traffic_floor(const Gpu *gpu, Traffic t, bool tensor16) {
  double mem = (double)(t.read + t.written) / gpu->bandwidth;
  double math = (double)t.flops / (tensor16 ? gpu->flops16 : gpu->flops32);
  return mem > math ? mem : math;
}

double instr_floor(const Graph *g, int i, const Gpu *gpu) {
  return traffic_floor(gpu, instr_traffic(g, i), instr_tensor16(g, i));
}

void step_traffic(const Graph *g, const Gpu *gpu, StepTraffic *st) {
  memset(st, 0, sizeof *st);
  for (int i = 0; i < g->nins; i++) {
    Traffic t = instr_traffic(g, i);
    int ph = traffic_phase(g->ins[i].kind);
    PhaseTraffic *p = &st->phase[ph];
    p->instrs++;
    p->t.read += t.read;
    p->t.written += t.written;
    p->t.flops = flops_add(p->t.flops, t.flops);
    if (gpu) {
      bool tc = instr_tensor16(g, i);
      double f = traffic_floor(gpu, t, tc);
      p->floor += f;
      double mem = (double)(t.read + t.written) / gpu->bandwidth;
      if (mem >= f) p->mem_bound++, p->mem_floor += f;
    }
  }
  for (int ph = 0; ph < PH_COUNT; ph++) {
    const PhaseTraffic *p = &st->phase[ph];
    st->total.instrs += p->instrs;
    st->total.t.read += p->t.read;
    st->total.t.written += p->t.written;
    st->total.t.flops = flops_add(st->total.t.flops, p->t.flops);
    st->total.floor += p->floor;
    st->total.mem_bound += p->mem_bound;
    st->total.mem_floor += p->mem_floor;
  }
}

/* FLOPs per byte moved; 0 when nothing moves. */
static double intensity(Traffic t) {
  int64_t b = t.read + t.written;
  return b > 0 ? (double)t.flops / (double)b : 0.0;
}

void print_gpu(const Gpu *gpu, FILE *f) {
  char u[32];
  fprintf(f, "%s (%s, %.0f GB/s, %.1f TFLOP/s 16-bit tensor, %.1f TFLOP/s "
          "f32; ridge at %.0f FLOP/byte 16-bit, %.1f f32)", gpu->name,
          fmt_bytes(gpu->memory, u), gpu->bandwidth / 1e9,
          gpu->flops16 / 1e12, gpu->flops32 / 1e12,
          gpu->flops16 / gpu->bandwidth, gpu->flops32 / gpu->bandwidth);
}

void report_traffic(const Graph *g, FILE *f) {
  const Gpu *gpu = cfg_gpu(&g->cfg);
  StepTraffic st;
  step_traffic(g, gpu, &st);
  fprintf(f, "\ntraffic of the step (device-memory bytes each instruction "
          "reads and writes, each operand once):\n");
  fprintf(f, "  %-10s %7s %16s %16s %20s %10s", "phase", "instrs",
          "bytes read", "bytes written", "FLOPs", "FLOP/byte");
  if (gpu) fprintf(f, " %12s", "floor ms");
  fputc('\n', f);
  for (int ph = 0; ph <= PH_COUNT; ph++) {
    const PhaseTraffic *p = ph < PH_COUNT ? &st.phase[ph] : &st.total;
    if (ph < PH_COUNT && p->instrs == 0) continue;
    fprintf(f, "  %-10s %7d %16lld %16lld %20lld %10.2f",
            ph < PH_COUNT ? traffic_phase_name[ph] : "total", p->instrs,
            (long long)p->t.read, (long long)p->t.written,
            (long long)p->t.flops, intensity(p->t));
    if (gpu) fprintf(f, " %12.4f", p->floor * 1e3);
    fputc('\n', f);
  }
  fprintf(f, "arithmetic intensity of the step: %.2f FLOP/byte\n",
          intensity(st.total.t));
  if (!gpu) return;
  fprintf(f, "roofline on ");
  print_gpu(gpu, f);
  fprintf(f, ":\n  floor of the step %.4f ms (each instruction at the "
          "larger of bytes / bandwidth and FLOPs / rate, summed); %d of %d "
          "instructions bound by memory, %.4f ms of it\n",
          st.total.floor * 1e3, st.total.mem_bound, st.total.instrs,
          st.total.mem_floor * 1e3);
}

static void traffic_obj(FILE *f, const PhaseTraffic *p, bool gpu) {
  fprintf(f, "{\"instructions\": %d, \"bytes_read\": %lld, "
          "\"bytes_written\": %lld, \"flops\": %lld, \"intensity\": %.6g",
          p->instrs, (long long)p->t.read, (long long)p->t.written,
          (long long)p->t.flops, intensity(p->t));
  if (gpu)
    fprintf(f, ", \"floor_ms\": %.6g, \"memory_bound\": %d", p->floor * 1e3,
            p->mem_bound);
  fputc('}', f);
}

void report_traffic_json(const Graph *g, FILE *f) {
  const Gpu *gpu = cfg_gpu(&g->cfg);
  StepTraffic st;
  step_traffic(g, gpu, &st);
  fprintf(f, "  \"traffic\": {");
  for (int ph = 0; ph < PH_COUNT; ph++) {
    fprintf(f, "\n    \"%s\": ", traffic_phase_name[ph]);
    traffic_obj(f, &st.phase[ph], gpu != NULL);
    fputc(',', f);
  }
  fprintf(f, "\n    \"total\": ");
  traffic_obj(f, &st.total, gpu != NULL);
  fprintf(f, "\n  },\n");
  if (gpu) {
    fprintf(f, "  \"gpu\": {\"name\": ");
    json_str(f, gpu->name);
    fprintf(f, ", \"memory\": %lld, \"bandwidth\": %.6g, \"flops16\": %.6g, "
            "\"flops32\": %.6g},\n  \"roofline_ms\": %.6g,\n",
            (long long)gpu->memory, gpu->bandwidth, gpu->flops16,
            gpu->flops32, st.total.floor * 1e3);
  }
}

/* ---- --run --profile: measured time beside the floor -------------------- */

/* One row of the profile: an op's forward (recomputations included) or
 * backward, the seed, the optimizer or the reduce-scatters. */
typedef struct {
  const char *what;   /* the op, "seed", "optimizer", "reduce-scatter" */
  const char *pass;   /* "forward", "backward", "" */
  double ms;          /* measured, per step */
  int64_t bytes;      /* read + written, per step */
  int64_t flops;
  double floor;       /* seconds, per step */
  int calls;          /* instructions per step */
} ProfRow;

static int prof_row_of(const Graph *g, int i) {
  const Instr *in = &g->ins[i];
  switch (in->kind) {
  case IK_FWD:
  case IK_RECOMPUTE: return (int)g->nodes[in->node].op;
  case IK_BWD: return OP_COUNT + (int)g->nodes[in->node].op;
  case IK_SEED: return 2 * OP_COUNT;
  case IK_OPT: return 2 * OP_COUNT + 1;
  case IK_REDUCE: return 2 * OP_COUNT + 2;
  case IK_COUNT: break;
  }
  ICE("prof_row_of: instruction kind %d", (int)in->kind);
}

void report_op_times(const Graph *g, const double *ms, FILE *f) {
  enum { NROWS = 2 * OP_COUNT + 3 };
  ProfRow row[NROWS];
  memset(row, 0, sizeof row);
  const Gpu *gpu = cfg_gpu(&g->cfg);
  double total = 0;
  for (int i = 0; i < g->nins; i++) {
    ProfRow *r = &row[prof_row_of(g, i)];
    Traffic t = instr_traffic(g, i);
    r->ms += ms[i];
    r->bytes += t.read + t.written;
    r->flops = flops_add(r->flops, t.flops);
    if (gpu) r->floor += traffic_floor(gpu, t, instr_tensor16(g, i));
    r->calls++;
    total += ms[i];
  }
  for (int k = 0; k < NROWS; k++) {
    row[k].what = k < 2 * OP_COUNT ? op_info[k % OP_COUNT].name
                  : k == 2 * OP_COUNT ? "seed"
                  : k == 2 * OP_COUNT + 1 ? "optimizer" : "reduce-scatter";
    row[k].pass = k < OP_COUNT ? "forward" : k < 2 * OP_COUNT ? "backward"
                                                                : "";
  }
  fprintf(f, "time by op (ms per step; achieved = bytes or FLOPs / measured "
          "time):\n");
  fprintf(f, "  %-16s %-8s %5s %10s %6s %10s %11s", "op", "pass", "calls",
          "ms", "share", "GB/s", "GFLOP/s");
  if (gpu) fprintf(f, " %10s %8s", "floor ms", "x floor");
  fputc('\n', f);
  bool *done = xalloc(sizeof(bool) * NROWS);
  for (;;) { /* largest first */
    int best = -1;
    for (int k = 0; k < NROWS; k++)
      if (row[k].calls && !done[k] && (best < 0 || row[k].ms > row[best].ms))
        best = k;
    if (best < 0) break;
    done[best] = true;
    const ProfRow *r = &row[best];
    double s = r->ms / 1e3;
    fprintf(f, "  %-16s %-8s %5d %10.3f %5.1f%% %10.2f %11.2f", r->what,
            r->pass, r->calls, r->ms, 100 * r->ms / (total > 0 ? total : 1),
            s > 0 ? (double)r->bytes / s / 1e9 : 0.0,
            s > 0 ? (double)r->flops / s / 1e9 : 0.0);
    if (gpu)
      fprintf(f, " %10.4f %8.2f", r->floor * 1e3,
              r->floor > 0 ? s / r->floor : 0.0);
    fputc('\n', f);
  }
  if (gpu) {
    double fl = 0;
    for (int k = 0; k < NROWS; k++) fl += row[k].floor;
    fprintf(f, "  total %.3f ms against a floor of %.4f ms on ", total,
            fl * 1e3);
    print_gpu(gpu, f);
    fprintf(f, ": %.2fx\n", fl > 0 ? total / 1e3 / fl : 0.0);
  }
}
