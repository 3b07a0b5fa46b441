/* tests/unit/gpus.c: the GPU table's lookups and fit_limit.
 *   Names match ignoring case, spaces, hyphens and underscores, and the
 *   aliases name the rows they say; an unknown name gives the rows it may
 *   have meant. Every row is a whole number of GiB with positive rates,
 *   and the 16-bit tensor rate is above the f32 rate (else the table has
 *   the columns swapped).
 *   fit_limit: the budget, or the device memory less 640 MiB, whichever
 *   is smaller; never below 0; -1 with neither. */
#include "check.h"

#include <string.h>

static void named(const char *s, const char *want) {
  int i = gpu_lookup(s);
  CHECK(i >= 0 && strcmp(gpu_table[i].name, want) == 0, "'%s': row %d (%s), "
        "want %s", s, i, i >= 0 ? gpu_table[i].name : "none", want);
}

int main(void) {
  named("H100 SXM", "H100 SXM");
  named("h100", "H100 SXM");
  named("H100-SXM", "H100 SXM");
  named("a100_80gb", "A100 80GB");
  named("A100 40GB", "A100 40GB");
  named("rtx 3060 ti", "RTX 3060 Ti");
  named("RTX3060TI", "RTX 3060 Ti");
  named("4090", "RTX 4090");
  named("t4", "T4");
  named("L40s", "L40S");
  named("h200", "H200");
  CHECK(gpu_lookup("a100") == -1, "'a100' names two rows");
  CHECK(gpu_lookup("") == -1, "the empty name");
  const char *s = gpu_suggest("a100");
  CHECK(s && strcmp(s, "'A100 40GB' or 'A100 80GB'") == 0, "a100: %s", s);
  s = gpu_suggest("H2O0");
  CHECK(s && strcmp(s, "'H200'") == 0, "H2O0: %s", s);
  CHECK(gpu_suggest("quantum") == NULL, "quantum: %s", gpu_suggest("quantum"));
  CHECK(gpu_count == 8, "rows: %d", gpu_count);
  for (int i = 0; i < gpu_count; i++) {
    const Gpu *g = &gpu_table[i];
    CHECK(g->memory > 0 && g->memory % (1LL << 30) == 0, "%s memory %lld",
          g->name, (long long)g->memory);
    CHECK(g->bandwidth > 1e11 && g->flops32 > 1e12 && g->flops16 > g->flops32,
          "%s rates", g->name);
  }

  Config c = graph_new()->cfg;
  CHECK(fit_limit(&c) == -1, "neither: %lld", (long long)fit_limit(&c));
  c.budget = 1000;
  CHECK(fit_limit(&c) == 1000, "budget only");
  c.device_memory = 8LL << 30; /* 8 GiB - 640 MiB = 7,918,845,952 B */
  CHECK(fit_limit(&c) == 1000, "the budget is smaller");
  c.budget = 8LL << 30;
  CHECK(fit_limit(&c) == 7918845952LL, "device: %lld", (long long)fit_limit(&c));
  c.budget = -1;
  CHECK(fit_limit(&c) == 7918845952LL, "device only");
  c.device_memory = 100LL << 20; /* smaller than the context */
  CHECK(fit_limit(&c) == 0, "a device smaller than the context: %lld",
        (long long)fit_limit(&c));
  c.gpu = gpu_lookup("T4");
  CHECK(cfg_gpu(&c) == &gpu_table[c.gpu], "cfg_gpu");
  if (failures) return 1;
  printf("gpus: lookups, the table's shape and fit_limit as written\n");
  return 0;
}
