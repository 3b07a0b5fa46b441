/* backend/cuda/run.c: `mdlc --run` on the GPU.
 *
 * Writes the step's CUDA program (cuda_emit) into a temporary folder,
 * builds it with nvcc against the runtime library that sits next to the
 * mdlc binary (libmdlrt.a, `make runtime`), runs it, and reads back the
 * `mdlrt:` lines it prints: the context bytes, and per step the loss, the
 * time and the pool's high-water mark. The first step runs eagerly, every
 * buffer allocated from the pool and freed at its point of the schedule:
 * its measured peak (the largest of the eager steps') must equal the
 * predicted one to the byte, else exit 1. Later steps replay that step as
 * a CUDA graph over the planned arena (unless --eager): there the pool
 * holds the persistent buffers and the arena and nothing else, which must
 * be exactly their planned bytes, else exit 1. The step time reported is
 * the median of the replayed steps (of all steps when none replayed). A
 * device failure inside the program (it exits 3 naming the CUDA error and
 * the op) is passed on as exit 3.
 *
 * --profile sets MDLRT_PROF=ins for the program (every op synchronizes,
 * no graph replay), which then prints each instruction's mean time per
 * step after the first ("mdlrt: prof I MS"); they are printed beside each
 * op's traffic and, with --gpu, its roofline floor (report_op_times).
 *
 * --check also runs the same steps on the CPU reference executor and
 * compares every step's loss within a tolerance per precision, every
 * gradient of the first step as the optimizer reads it, and the state after
 * the last step (parameters, master weights, optimizer state) element by
 * element (compare_state). The first step is eager on the GPU, the others
 * replayed, so the state checks the replays too.
 *
 * Environment: NVCC (default /usr/local/cuda/bin/nvcc), CUDA_ARCH (sm_90),
 * MDLRT_HOME (the repository, if the binary is not in <repo>/<build>/).
 */
#include "mdlc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

char *mkdtemp(char *tmpl); /* POSIX 2008; not declared under strict C11 */

static bool exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

/* The folder of the running mdlc binary. */
static const char *exe_dir(void) {
  static char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  buf[n] = 0;
  char *slash = strrchr(buf, '/');
  if (slash) *slash = 0;
  return buf;
}

/* The folder holding mdlrt.h. */
static const char *runtime_dir(const char *exe) {
  const char *home = getenv("MDLRT_HOME");
  const char *cands[] = {
      home ? xsprintf("%s/runtime", home) : NULL,
      xsprintf("%s/../runtime", exe),
      "runtime",
  };
  for (int i = 0; i < 3; i++)
    if (cands[i] && exists(xsprintf("%s/mdlrt.h", cands[i]))) return cands[i];
  die_machine("cannot find the runtime's header mdlrt.h (looked in "
              "$MDLRT_HOME/runtime, %s/../runtime and ./runtime)", exe);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Builds the program; returns the path of the executable. */
static const char *build(Graph *g, const RunOpts *o, const char *dir) {
  const char *exe = exe_dir();
  const char *lib = xsprintf("%s/libmdlrt.a", exe);
  if (!exists(lib))
    die_machine("the CUDA runtime library %s is missing: build it with "
                "`make runtime`", lib);
  const char *cu = xsprintf("%s/step.cu", dir);
  FILE *f = fopen(cu, "w");
  if (!f) die_machine("cannot write '%s': %s", cu, strerror(errno));
  int rc = cuda_emit(g, o, f);
  if (fclose(f) != 0 || rc != 0) {
    if (rc != 0) exit(1); /* the emitter said why */
    die_machine("writing '%s' failed", cu);
  }
  const char *nvcc = getenv("NVCC");
  if (!nvcc || !*nvcc) nvcc = "/usr/local/cuda/bin/nvcc";
  const char *arch = getenv("CUDA_ARCH");
  if (!arch || !*arch) arch = "sm_90";
  const char *bin = xsprintf("%s/step", dir);
  const char *log = xsprintf("%s/nvcc.log", dir);
  /* -O0: the program is one long straight line of runtime calls (a 500-step
   * rollout unrolls 5,500 of them), which an optimizer only slows to build;
   * the kernels are in libmdlrt.a, built with -O3. */
  const char *cmd = xsprintf(
      "'%s' -O0 -arch=%s -std=c++17 -I'%s' -I/usr/local/cuda/include "
      "-I/usr/include/x86_64-linux-gnu -o '%s' '%s' '%s' "
      "-L/usr/local/cuda/lib64 -L/usr/lib/x86_64-linux-gnu "
      "-lcublas -lcublasLt -lcudnn > '%s' 2>&1",
      nvcc, arch, runtime_dir(exe), bin, cu, lib, log);
  if (system(cmd) != 0) {
    FILE *l = fopen(log, "r");
    if (l) {
      char line[512];
      while (fgets(line, sizeof line, l)) fputs(line, stderr);
      fclose(l);
    }
    die_machine("nvcc failed on the generated program (%s)", cu);
  }
  return bin;
}

typedef struct {
  int64_t context;      /* device bytes after init (context, handles) */
  int64_t arena_used;   /* arena mode: device bytes of arena + persistent */
  int steps;            /* steps reported */
  double *loss, *ms;    /* per step */
  int64_t *peak;        /* per step, pool high-water mark (-1 in arena mode) */
  bool *replay;         /* per step, replayed as a CUDA graph */
  double *prof_ms;      /* --profile: per instruction, ms per step */
  int nprof;            /* instructions it has room for */
  char error[300];      /* "cudaErrorX op" if the program failed */
} Result;

static int run_program(const char *bin, const RunOpts *o, int steps,
                       const char *dump, const char *grads, Result *r) {
  const char *cmd = xsprintf("'%s' --steps %d --seed %llu%s%s%s%s%s%s", bin,
                             steps, (unsigned long long)o->seed,
                             o->arena ? " --arena" : "",
                             o->eager ? " --eager" : "",
                             o->fresh_data ? " --fresh" : "",
                             o->lr > 0 ? xsprintf(" --lr %.17g", o->lr) : "",
                             dump ? xsprintf(" --dump '%s'", dump) : "",
                             grads ? xsprintf(" --dump-grads '%s'", grads)
                                   : "");
  FILE *p = popen(cmd, "r");
  if (!p) die_machine("cannot run '%s'", bin);
  r->loss = xalloc(sizeof(double) * (size_t)steps);
  r->ms = xalloc(sizeof(double) * (size_t)steps);
  r->peak = xalloc(sizeof(int64_t) * (size_t)steps);
  r->replay = xalloc(sizeof(bool) * (size_t)steps);
  r->arena_used = -1;
  char line[1024];
  int pi;
  double pms;
  while (fgets(line, sizeof line, p)) {
    long long a, b;
    double loss, ms;
    char e1[128], e2[128];
    if (sscanf(line, "mdlrt: context %lld", &a) == 1) {
      r->context = a;
    } else if (sscanf(line, "mdlrt: arena_used %lld", &a) == 1) {
      r->arena_used = a;
    } else if (sscanf(line, "mdlrt: step %lld loss %lf ms %lf peak %lld", &a,
                      &loss, &ms, &b) == 4 ||
               (sscanf(line, "mdlrt: step %lld loss %127s ms %lf peak %lld",
                       &a, e1, &ms, &b) == 4 && (loss = NAN, 1))) {
      if (a >= 0 && a < steps) {
        r->loss[a] = loss, r->ms[a] = ms, r->peak[a] = b;
        r->replay[a] = strstr(line, " replay") != NULL;
        if (a + 1 > r->steps) r->steps = (int)a + 1;
      }
    } else if (sscanf(line, "mdlrt: prof %d %lf", &pi, &pms) == 2) {
      if (r->prof_ms && pi >= 0 && pi < r->nprof) r->prof_ms[pi] = pms;
    } else if (sscanf(line, "mdlrt: error %127s %127[^\n]", e1, e2) == 2) {
      snprintf(r->error, sizeof r->error, "%s in op %s", e1, e2);
    }
  }
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 3;
}

/* The tolerance of --check on the loss, by the precision in force. */
static double loss_rtol(const Graph *g) {
  return g->cfg.precision == PREC_FP32 ? 1e-4 : 3e-2;
}

/* ---- --check: the state after the last step, element by element ------
 * Both executors write parameters, master weights and optimizer state in
 * the CPU reference's `-o` format ("NAME DTYPE NUMEL", then the bytes in
 * hex). Each element must satisfy |gpu - cpu| <= atol + rtol |cpu|, with
 * the tolerance of the step's least precise float dtype (every stored value
 * derives from its arithmetic): f32 rtol 1e-3 atol 1e-5; f16 rtol 5e-3
 * atol 1e-4 (2 ulp at 2^-10, 5 ulp with the summation order); bf16 rtol
 * 3e-2 atol 1e-3 (about 2 ulp at 2^-7, with one rounding difference
 * propagated through the update). Under adam and adamw a parameter (and
 * its master copy) also gets 2 lr per step of absolute slack: the update
 * is normalised, so where a gradient is near zero and the two executors'
 * roundings give it opposite signs, that element moves by up to lr the
 * other way each step, however small the difference in the gradient. */
typedef struct {
  char name[160];          /* the Buf's name */
  DType dt;                /* its dtype */
  int64_t numel;           /* elements */
  unsigned char *bytes;    /* numel * dtype_size */
} StateBuf;

typedef struct {
  double rtol, atol;
} Tol;

static Tol check_tol(const Graph *g) {
  bool f16 = false, bf16 = false;
  for (int v = 0; v < g->nvals; v++)
    f16 |= g->vals[v].dtype == DT_F16, bf16 |= g->vals[v].dtype == DT_BF16;
  if (bf16) return (Tol){3e-2, 1e-3};
  if (f16) return (Tol){5e-3, 1e-4};
  return (Tol){1e-3, 1e-5};
}

/* Reads a state file; returns the number of buffers (-1 if unreadable). */
static int read_state(const char *path, StateBuf **out) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  StateBuf *v = NULL;
  int n = 0, cap = 0;
  char line[512], dt[32];
  long long numel;
  while (fgets(line, sizeof line, f)) {
    StateBuf b = {.dt = DT_COUNT};
    if (sscanf(line, "%159s %31s %lld", b.name, dt, &numel) != 3) break;
    for (int t = 0; t < DT_COUNT; t++)
      if (strcmp(dtype_name((DType)t), dt) == 0) b.dt = (DType)t;
    if (b.dt == DT_COUNT) break;
    b.numel = numel;
    int64_t nb = numel * dtype_size(b.dt);
    b.bytes = xalloc((size_t)(nb ? nb : 1));
    for (int64_t i = 0; i < nb; i++) {
      unsigned x;
      if (fscanf(f, "%2x", &x) != 1) { fclose(f); return -1; }
      b.bytes[i] = (unsigned char)x;
    }
    int c = fgetc(f); /* the line's end */
    if (c != '\n' && c != EOF) ungetc(c, f);
    *VEC_PUSH(v, n, cap) = b;
  }
  fclose(f);
  *out = v;
  return n;
}

static double state_elem(const StateBuf *b, int64_t i) {
  const unsigned char *p = b->bytes + i * dtype_size(b->dt);
  switch (b->dt) {
  case DT_F32: { float x; memcpy(&x, p, 4); return x; }
  case DT_F16: { uint16_t h; memcpy(&h, p, 2); return cpu_f16_to_f32(h); }
  case DT_BF16: { uint16_t h; memcpy(&h, p, 2); return cpu_bf16_to_f32(h); }
  case DT_I32: { int32_t x; memcpy(&x, p, 4); return x; }
  case DT_I64: { int64_t x; memcpy(&x, p, 8); return (double)x; }
  case DT_U8: return p[0];
  case DT_COUNT: break;
  }
  ICE("state_elem: dtype %d", (int)b->dt);
}

typedef struct {
  int64_t elements, bad; /* compared, outside the tolerance */
  int buffers;           /* compared */
  double worst;          /* largest |d| / (atol + rtol |ref|) */
  const char *where;     /* the worst element, described */
  bool ok;               /* same buffers, every element within tolerance */
} StateCheck;

/* slack: extra absolute tolerance of parameters and master weights (not of
 * buffers named "@adam": the optimizer's state). */
static StateCheck compare_state(const Graph *g, const char *gpu_path,
                                const char *cpu_path, double slack) {
  StateCheck c = {.where = "none", .ok = true};
  StateBuf *a = NULL, *b = NULL;
  int na = read_state(gpu_path, &a), nb = read_state(cpu_path, &b);
  if (na < 0 || nb < 0 || na != nb) {
    c.ok = false;
    c.where = xsprintf("the state files differ in shape (%d and %d buffers)",
                       na, nb);
    return c;
  }
  Tol t = check_tol(g);
  for (int k = 0; k < na; k++) {
    bool state = strstr(a[k].name, "@adam") != NULL;
    double atol = t.atol + (state ? 0.0 : slack);
    if (strcmp(a[k].name, b[k].name) || a[k].numel != b[k].numel ||
        a[k].dt != b[k].dt) {
      c.ok = false;
      c.where = xsprintf("buffer %d: '%s' against '%s'", k, a[k].name,
                         b[k].name);
      return c;
    }
    c.buffers++;
    for (int64_t i = 0; i < a[k].numel; i++) {
      double got = state_elem(&a[k], i), ref = state_elem(&b[k], i);
      double lim = atol + t.rtol * fabs(ref);
      double r = isnan(got) && isnan(ref) ? 0.0 : fabs(got - ref) / lim;
      if (!(r <= 1.0)) c.bad++, c.ok = false;
      if (!(r <= c.worst)) {
        c.worst = isnan(r) ? INFINITY : r;
        c.where = xsprintf("%s[%lld]: gpu %.9g, cpu %.9g (|d| %.3g, "
                           "tolerance %.3g)", a[k].name, (long long)i, got,
                           ref, fabs(got - ref), lim);
      }
      c.elements++;
    }
  }
  return c;
}

int cuda_run(Graph *g, const RunOpts *o) {
  int steps = o->steps > 0 ? o->steps : CUDA_DEFAULT_STEPS;
  if (o->profile && steps < 2)
    die_usage("--profile on the GPU times the steps after the first: give "
              "--steps 2 or more");
  char tmpl[] = "/tmp/mdlc-run-XXXXXX";
  const char *tmp = getenv("TMPDIR");
  char *dir = tmp && *tmp ? xsprintf("%s/mdlc-run-XXXXXX", tmp) : tmpl;
  if (!mkdtemp(dir)) die_machine("cannot make a temporary folder: %s",
                                 strerror(errno));
  const char *bin = build(g, o, dir);
  if (!o->quiet && !o->json)
    printf("running '%s' on the GPU: %d step%s, --alloc %s, %s, %s "
           "(program in %s; MDLC_KEEP_TMP=1 keeps it)\n", g->model_name ? g->model_name : "?", steps,
           steps == 1 ? "" : "s", o->arena ? "arena" : "pool",
           precision_name[g->cfg.precision], optimizer_name[g->cfg.optimizer],
           dir);
  fflush(stdout);
  Result r = {0};
  if (o->profile) {
    r.nprof = g->nins;
    r.prof_ms = xalloc(sizeof(double) * (size_t)(g->nins ? g->nins : 1));
    if (setenv("MDLRT_PROF", "ins", 1) != 0)
      die_machine("cannot set MDLRT_PROF: %s", strerror(errno));
  }
  const char *gpu_state = xsprintf("%s/gpu.state", dir);
  const char *cpu_state = xsprintf("%s/cpu.state", dir);
  const char *gpu_grads = xsprintf("%s/gpu.grads", dir);
  const char *cpu_grads = xsprintf("%s/cpu.grads", dir);
  int rc = run_program(bin, o, steps, o->check ? gpu_state : NULL,
                       o->check ? gpu_grads : NULL, &r);
  if (rc != 0 || r.steps != steps) {
    if (r.error[0])
      fprintf(stderr, "mdlc: error: the GPU step failed: %s\n", r.error);
    else
      fprintf(stderr, "mdlc: error: the GPU program exited with status %d "
              "after %d of %d steps\n", rc, r.steps, steps);
    return 3;
  }


  /* eager steps give the measured peak; replayed ones the pool's hold */
  int64_t measured = -1, held = -1;
  int eager = 0, first_replay = -1;
  bool same = true;
  for (int s = 0; s < steps; s++) {
    if (r.replay[s]) {
      if (first_replay < 0) first_replay = s;
      if (r.peak[s] > held) held = r.peak[s];
      continue;
    }
    if (eager++ && r.peak[s] != measured) same = false;
    if (r.peak[s] > measured) measured = r.peak[s];
  }
  int timed = first_replay >= 0 ? steps - first_replay : steps;
  double *sorted = xalloc(sizeof(double) * (size_t)steps);
  memcpy(sorted, r.ms + (steps - timed), sizeof(double) * (size_t)timed);
  qsort(sorted, (size_t)timed, sizeof(double), cmp_double);
  double median = timed % 2 ? sorted[timed / 2]
                            : 0.5 * (sorted[timed / 2 - 1] + sorted[timed / 2]);
  int64_t planned_hold = g->persistent_bytes + g->arena_bytes;
  bool held_ok = o->arena || first_replay < 0 || held == planned_hold;
  bool ok = (o->arena ? true : measured == g->peak) && held_ok;

  /* --check: the same steps on the CPU reference, loss by loss */
  bool check_ok = true;
  float *cpu_loss = NULL;
  StateCheck sc = {.where = "none", .ok = true}, gc = sc;
  if (o->check) {
    cpu_loss = xalloc(sizeof(float) * (size_t)steps);
    CpuStats st = {.losses = cpu_loss, .perturb_value = -1, .probe_value = -1,
                   .grads_path = cpu_grads};
    RunOpts q = *o;
    q.quiet = true, q.json = false, q.out_path = cpu_state, q.arena = false;
    q.steps = steps;
    /* the reference's report would mix into ours: silence its stdout */
    fflush(stdout);
    int saved = dup(1), null = open("/dev/null", O_WRONLY);
    if (saved >= 0 && null >= 0) dup2(null, 1);
    cpu_run_stats(g, &q, &st);
    fflush(stdout);
    if (saved >= 0) dup2(saved, 1), close(saved);
    if (null >= 0) close(null);
    for (int s = 0; s < steps; s++) {
      double ref = cpu_loss[s], got = r.loss[s];
      if (isnan(ref) && isnan(got)) continue;
      if (!(fabs(got - ref) <= 1e-6 + loss_rtol(g) * fabs(ref)))
        check_ok = false;
    }
    double lr = o->lr > 0 ? o->lr : cpu_default_lr(g->cfg.optimizer);
    bool adam = g->cfg.optimizer == OPTIM_ADAM ||
                g->cfg.optimizer == OPTIM_ADAMW;
    sc = compare_state(g, gpu_state, cpu_state, adam ? 2.0 * lr * steps : 0);
    gc = compare_state(g, gpu_grads, cpu_grads, 0);
    if (!sc.ok || !gc.ok) check_ok = false;
  }
  if (!getenv("MDLC_KEEP_TMP")) { /* the program, its source, the states */
    unlink(xsprintf("%s/step.cu", dir));
    unlink(xsprintf("%s/nvcc.log", dir));
    unlink(gpu_state);
    unlink(cpu_state);
    unlink(gpu_grads);
    unlink(cpu_grads);
    unlink(bin);
    rmdir(dir);
  }
  Tol tol = check_tol(g);

  char b1[32], b2[32], b3[32];
  if (o->json) {
    printf("{\n  \"device\": \"cuda\",\n  \"model\": \"%s\",\n  \"steps\": %d,"
           "\n  \"alloc\": \"%s\",\n  \"losses\": [",
           g->model_name ? g->model_name : "?", steps,
           o->arena ? "arena" : "pool");
    for (int s = 0; s < steps; s++) {
      if (isfinite(r.loss[s])) printf("%s%.9g", s ? ", " : "", r.loss[s]);
      else printf("%snull", s ? ", " : "");
    }
    printf("],\n  \"step_ms\": [");
    for (int s = 0; s < steps; s++) printf("%s%.6f", s ? ", " : "", r.ms[s]);
    printf("],\n  \"predicted_peak\": %lld,\n  \"measured_peak\": %lld,\n"
           "  \"difference\": %lld,\n  \"context_bytes\": %lld,\n"
           "  \"arena_bytes\": %lld,\n  \"persistent_bytes\": %lld,\n"
           "  \"arena_device_used\": %lld,\n  \"median_step_ms\": %.6f,\n"
           "  \"first_step_ms\": %.6f,\n  \"replay_from_step\": %d,\n"
           "  \"replay_pool_bytes\": %lld,\n  \"match\": %s",
           (long long)g->peak, (long long)measured,
           (long long)(measured - g->peak), (long long)r.context,
           (long long)g->arena_bytes, (long long)g->persistent_bytes,
           (long long)r.arena_used, median, r.ms[0],
           first_replay >= 0 ? first_replay + 1 : 0, (long long)held,
           ok ? "true" : "false");
    if (o->check) {
      printf(",\n  \"cpu_losses\": [");
      for (int s = 0; s < steps; s++) printf("%s%.9g", s ? ", " : "",
                                             (double)cpu_loss[s]);
      const StateCheck *cs[2] = {&gc, &sc};
      const char *key[2] = {"check_grads", "check_state"};
      for (int k = 0; k < 2; k++)
        printf("%s\n  \"%s\": {\"buffers\": %d, \"elements\": %lld, "
               "\"outside\": %lld, \"rtol\": %g, \"atol\": %g, "
               "\"worst_ratio\": %.6g, \"worst\": \"%s\"}",
               k ? "," : "],", key[k], cs[k]->buffers,
               (long long)cs[k]->elements, (long long)cs[k]->bad, tol.rtol,
               tol.atol, cs[k]->worst, cs[k]->where);
      printf(",\n  \"check\": %s", check_ok ? "true" : "false");
    }
    printf("\n}\n");
  } else {
    for (int s = 0; s < steps; s++) {
      if (r.replay[s])
        printf("step %4d  loss %-12.8g  graph replay, pool holds %lld B"
               "  %.3f ms", s + 1, r.loss[s], (long long)r.peak[s], r.ms[s]);
      else
        printf("step %4d  loss %-12.8g  peak predicted %lld B, measured "
               "%lld B  %.3f ms", s + 1, r.loss[s], (long long)g->peak,
               (long long)r.peak[s], r.ms[s]);
      if (o->check) printf("  cpu loss %-12.8g", (double)cpu_loss[s]);
      printf("\n");
    }
    if (o->arena) {
      printf("arena: device memory used %lld B (%s) for a planned arena of "
             "%lld B + %lld B persistent = %lld B (%s)\n",
             (long long)r.arena_used, fmt_bytes(r.arena_used, b1),
             (long long)g->arena_bytes, (long long)g->persistent_bytes,
             (long long)(g->arena_bytes + g->persistent_bytes),
             fmt_bytes(g->arena_bytes + g->persistent_bytes, b2));
    } else {
      printf("peak: predicted %lld B (%s), measured %lld B (%s), difference "
             "%lld B\n", (long long)g->peak, fmt_bytes(g->peak, b1),
             (long long)measured, fmt_bytes(measured, b2),
             (long long)(measured - g->peak));
    }
    printf("context and library handles: %lld B (%s), cudaMemGetInfo after "
           "init, not counted in the peak\n", (long long)r.context,
           fmt_bytes(r.context, b3));
    if (first_replay >= 0 && !o->arena)
      printf("graph replay from step %d: every buffer at its arena offset; "
             "the pool holds %lld B, planned %lld B persistent + %lld B "
             "arena = %lld B (%s)\n", first_replay + 1, (long long)held,
             (long long)g->persistent_bytes, (long long)g->arena_bytes,
             (long long)planned_hold, held_ok ? "equal" : "DIFFERENT");
    else if (first_replay >= 0)
      printf("graph replay from step %d over the arena\n", first_replay + 1);
    if (first_replay >= 0)
      printf("step time (median of the %d replayed steps): %.3f ms; first "
             "step (eager): %.3f ms\n", timed, median, r.ms[0]);
    else
      printf("step time (median of %d eager steps): %.3f ms\n", steps,
             median);
    if (o->profile) report_op_times(g, r.prof_ms, stdout);
    if (o->check) {
      printf("check: gradients of step 1 as the optimizer reads them, %d "
             "buffers, %lld elements, |gpu - cpu| <= %g + %g |cpu|: %lld "
             "outside; worst (%.3g of the tolerance) %s\n", gc.buffers,
             (long long)gc.elements, tol.atol, tol.rtol, (long long)gc.bad,
             gc.worst, gc.where);
      printf("check: state after step %d (parameters, master weights, "
             "optimizer state), %d buffers, %lld elements, |gpu - cpu| <= "
             "%g + %g |cpu|: %lld outside; worst (%.3g of the tolerance) "
             "%s\n", steps, sc.buffers, (long long)sc.elements, tol.atol,
             tol.rtol, (long long)sc.bad, sc.worst, sc.where);
      printf("check against the CPU reference (loss of every step, rtol "
             "%g; gradients and state element by element): %s\n",
             loss_rtol(g),
             check_ok ? "ok" : "FAILED");
    }
  }
  if (!o->arena && !same)
    fprintf(stderr, "mdlc: warning: the measured peak differs between "
            "steps\n");
  if (!o->arena && measured != g->peak)
    fprintf(stderr, "mdlc: error: measured peak %lld B differs from the "
            "predicted %lld B\n", (long long)measured, (long long)g->peak);
  if (!held_ok)
    fprintf(stderr, "mdlc: error: during graph replay the pool held %lld B, "
            "not the planned %lld B\n", (long long)held,
            (long long)planned_hold);
  return ok && check_ok ? 0 : 1;
}
