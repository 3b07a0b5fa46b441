/* backend/report/gpus.c: the cards mdlc knows, and how much of one a step
 * may take.
 *
 * A short table of common NVIDIA GPUs with the figures their vendor
 * publishes (docs/gpus.md names the datasheet of each): device memory,
 * DRAM bandwidth, dense 16-bit tensor-core rate with an f32 accumulator
 * (what mdlc's matmuls and convolutions use) and the f32 rate of the CUDA
 * cores (mdlc never uses TF32, so f32 matmuls run there too). `--gpu NAME`
 * picks a row: its memory becomes the device memory, its rates the
 * roofline of backend/report/traffic.c. Names match ignoring case, spaces,
 * hyphens and underscores ("h100", "A100-80GB", "rtx 4090").
 *
 * The key idea of fit_limit: the step's peak must fit into the device
 * memory less the CUDA context (CONTEXT_ESTIMATE_BYTES), and into the
 * budget if one is given; the smaller of the two is the limit placement
 * and --max-batch work against.
 */
#include "mdlc.h"

#include <ctype.h>
#include <string.h>

#define GiB (1LL << 30)

const Gpu gpu_table[] = {
    /* name          memory     bandwidth B/s  16-bit tensor  f32 FLOP/s */
    {"RTX 3060 Ti",  8 * GiB,   448e9,         32.4e12,       16.2e12},
    {"T4",           16 * GiB,  320e9,         65e12,         8.1e12},
    {"L40S",         48 * GiB,  864e9,         362.05e12,     91.6e12},
    {"A100 40GB",    40 * GiB,  1555e9,        312e12,        19.5e12},
    {"A100 80GB",    80 * GiB,  2039e9,        312e12,        19.5e12},
    {"H100 SXM",     80 * GiB,  3.35e12,       989.4e12,      67e12},
    {"H200",         141 * GiB, 4.8e12,        989.4e12,      67e12},
    {"RTX 4090",     24 * GiB,  1008e9,        165.2e12,      82.6e12},
};
const int gpu_count = (int)(sizeof gpu_table / sizeof *gpu_table);

/* Other spellings people use for a row: the short name of a card sold in
 * one form only here. */
static const struct {
  const char *alias; /* as normalized: lowercase letters and digits */
  const char *name;  /* the row */
} aliases[] = {
    {"3060ti", "RTX 3060 Ti"}, {"h100", "H100 SXM"}, {"h100sxm5", "H100 SXM"},
    {"h200sxm", "H200"},       {"4090", "RTX 4090"}, {"a10040g", "A100 40GB"},
    {"a10080g", "A100 80GB"},  {"teslat4", "T4"},
};

/* Lowercase letters and digits only: "A100-80GB" -> "a10080gb". */
static const char *normalize(const char *s) {
  char *out = xalloc(strlen(s) + 1), *o = out;
  for (; *s; s++)
    if (isalnum((unsigned char)*s)) *o++ = (char)tolower((unsigned char)*s);
  return out;
}

int gpu_lookup(const char *name) {
  const char *k = normalize(name);
  for (int i = 0; i < gpu_count; i++)
    if (strcmp(k, normalize(gpu_table[i].name)) == 0) return i;
  for (size_t a = 0; a < sizeof aliases / sizeof *aliases; a++)
    if (strcmp(k, aliases[a].alias) == 0)
      for (int i = 0; i < gpu_count; i++)
        if (strcmp(gpu_table[i].name, aliases[a].name) == 0) return i;
  return -1;
}

/* The row of alias a. */
static int alias_row(size_t a) {
  for (int i = 0; i < gpu_count; i++)
    if (strcmp(gpu_table[i].name, aliases[a].name) == 0) return i;
  ICE("gpu alias '%s' names no row", aliases[a].alias);
}

enum { NALIAS = sizeof aliases / sizeof *aliases };

const char *gpu_suggest(const char *name) {
  const char *k = normalize(name);
  /* candidate keys: each row's name, then the aliases */
  const char *keys[sizeof gpu_table / sizeof *gpu_table + NALIAS];
  int row[sizeof gpu_table / sizeof *gpu_table + NALIAS], n = 0;
  for (int i = 0; i < gpu_count; i++) {
    keys[n] = normalize(gpu_table[i].name);
    row[n++] = i;
  }
  for (size_t a = 0; a < NALIAS; a++) {
    keys[n] = aliases[a].alias;
    row[n++] = alias_row(a);
  }
  /* rows whose key starts with the name ("a100": both A100s) or starts
   * it ("h100pcie": the H100 SXM), each once */
  bool hit[sizeof gpu_table / sizeof *gpu_table] = {0};
  size_t len = strlen(k);
  for (int c = 0; len >= 2 && c < n; c++) {
    size_t kl = strlen(keys[c]);
    if (strncmp(keys[c], k, len < kl ? len : kl) == 0) hit[row[c]] = true;
  }
  StrBuf sb = {0};
  int found = 0;
  for (int i = 0; i < gpu_count; i++)
    if (hit[i])
      sb_printf(&sb, "%s'%s'", found++ ? " or " : "", gpu_table[i].name);
  if (found) return sb.s;
  const char *near = closest_word(k, keys, n);
  for (int c = 0; near && c < n; c++)
    if (keys[c] == near) return xsprintf("'%s'", gpu_table[row[c]].name);
  return NULL;
}

const char *gpu_names(void) {
  StrBuf sb = {0};
  for (int i = 0; i < gpu_count; i++)
    sb_printf(&sb, "%s'%s'", i ? ", " : "", gpu_table[i].name);
  return sb.s;
}

const Gpu *cfg_gpu(const Config *c) {
  return c->gpu >= 0 && c->gpu < gpu_count ? &gpu_table[c->gpu] : NULL;
}

int64_t fit_limit(const Config *c) {
  int64_t lim = c->budget;
  if (c->device_memory >= 0) {
    int64_t room = c->device_memory - CONTEXT_ESTIMATE_BYTES;
    if (room < 0) room = 0;
    if (lim < 0 || room < lim) lim = room;
  }
  return lim;
}
