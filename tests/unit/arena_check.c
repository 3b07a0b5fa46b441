/* tests/unit/arena_check.c: the arena planner, checked independently.
 *
 * 1. Every example, compiled through the whole pipeline: arena_verify()
 *    finds no two live buffers sharing a byte, and arena + persistent is
 *    within 2% of the peak of live bytes (the target), except where
 *    256-byte alignment alone makes that impossible: there the arena must
 *    be within 2% of the aligned lower bound (the largest sum of aligned
 *    sizes live at one instruction).
 * 2. Random schedules: buffers of random sizes and lifetimes; the plan must
 *    verify and be at least the peak.
 * 3. The checker itself fails: a planted overlap is reported.
 */
#include "tests/unit/check.h"

#include <stdlib.h>
#include <string.h>


static int64_t aligned_peak(const Graph *g) {
  int64_t best = 0;
  for (int i = 0; i < g->nins; i++) {
    int64_t live = 0;
    for (int b = 0; b < g->nbufs; b++) {
      const Buf *x = &g->bufs[b];
      if (x->persistent) continue;
      if (x->alloc_at <= i && (x->free_at < 0 || x->free_at >= i))
        live += (x->bytes + 255) / 256 * 256;
    }
    if (live > best) best = live;
  }
  return best;
}

static void check_example(const char *path) {
  Config cfg = graph_new()->cfg;
  Graph *g = frontend_load(path, NULL, 0, &cfg, 0);
  if (!g) {
    printf("FAIL %s: does not compile\n", path);
    failures++;
    return;
  }
  plan_step(g);
  const char *bad = arena_verify(g);
  if (bad) {
    printf("FAIL %s: %s\n", path, bad);
    failures++;
  }
  int64_t live_peak = g->peak - g->persistent_bytes;
  int64_t lower = aligned_peak(g);
  double over = 100.0 * (double)(g->arena_bytes - live_peak) / (double)g->peak;
  double over_aligned = 100.0 * (double)(g->arena_bytes - lower) / (double)lower;
  bool ok = over <= 2.0 || over_aligned <= 2.0;
  printf("%s %-26s peak %12lld  arena+persistent %12lld  +%.3f%% "
         "(aligned bound: +%.3f%%)\n",
         ok ? "ok  " : "FAIL", path, (long long)g->peak,
         (long long)(g->arena_bytes + g->persistent_bytes), over, over_aligned);
  if (!ok) failures++;
}

/* A random schedule: n buffers of 1..100000 bytes, each alive over a random
 * interval of m instructions (some to the end). */
static Graph *random_schedule(unsigned *seed, int n, int m) {
  Graph *g = graph_new();
  for (int i = 0; i < m; i++) {
    Instr *in = VEC_PUSH(g->ins, g->nins, g->capins);
    in->alloc = xalloc(sizeof(int) * (size_t)n);
    in->free = xalloc(sizeof(int) * (size_t)n);
  }
  for (int b = 0; b < n; b++) {
    Buf *x = VEC_PUSH(g->bufs, g->nbufs, g->capbufs);
    x->name = xsprintf("r%d", b);
    x->bytes = 1 + rand_r(seed) % 100000;
    x->alloc_at = rand_r(seed) % m;
    int len = rand_r(seed) % (m / 3 + 1);
    x->free_at = rand_r(seed) % 10 == 0 ? -1
                 : (x->alloc_at + len < m ? x->alloc_at + len : m - 1);
    Instr *a = &g->ins[x->alloc_at];
    a->alloc[a->nalloc++] = b;
    if (x->free_at >= 0) {
      Instr *f = &g->ins[x->free_at];
      f->free[f->nfree++] = b;
    }
  }
  int64_t live = 0;
  for (int i = 0; i < m; i++) {
    for (int k = 0; k < g->ins[i].nalloc; k++) live += g->bufs[g->ins[i].alloc[k]].bytes;
    if (live > g->peak) g->peak = live;
    for (int k = 0; k < g->ins[i].nfree; k++) live -= g->bufs[g->ins[i].free[k]].bytes;
  }
  return g;
}

int main(void) {
  static const char *const examples[] = {
      "examples/tiny.mdl",     "examples/mlp.mdl",  "examples/resnet18.mdl",
      "examples/gpt2_small.mdl", "examples/unet.mdl", "examples/operator_cnn.mdl",
      "examples/gpt2_naive.mdl", "examples/llama.mdl",
  };
  for (size_t i = 0; i < sizeof examples / sizeof *examples; i++)
    check_example(examples[i]);

  unsigned seed = 12345;
  double worst = 0;
  for (int t = 0; t < 200; t++) {
    int n = 2 + rand_r(&seed) % 300, m = 2 + rand_r(&seed) % 200;
    Graph *g = random_schedule(&seed, n, m);
    pass_arena(g);
    const char *bad = arena_verify(g);
    if (bad || g->arena_bytes < g->peak) {
      printf("FAIL random schedule %d (n=%d m=%d): %s\n", t, n, m,
             bad ? bad : "arena below the peak");
      failures++;
    }
    double over = (double)(g->arena_bytes - g->peak) / (double)g->peak;
    if (over > worst) worst = over;
    if (t == 0) {
      /* plant an overlap: move a buffer onto one alive at the same time */
      for (int a = 0; a < g->nbufs; a++)
        for (int b = a + 1; b < g->nbufs; b++) {
          Buf *x = &g->bufs[a], *y = &g->bufs[b];
          int xe = x->free_at < 0 ? m : x->free_at, ye = y->free_at < 0 ? m : y->free_at;
          if (x->alloc_at <= ye && y->alloc_at <= xe) {
            int64_t keep = y->offset;
            y->offset = x->offset;
            if (!arena_verify(g)) {
              printf("FAIL the checker missed a planted overlap\n");
              failures++;
            }
            y->offset = keep;
            goto planted;
          }
        }
    planted:;
    }
  }
  printf("200 random schedules verified; worst arena %.1f%% above the peak\n",
         100 * worst);
  return failures ? 1 : 0;
}
