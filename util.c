/* util.c: the compiler's memory, strings and small helpers.
 *
 * Every allocation is a block on one doubly linked list, freed together by
 * mem_free_all() at exit, so leak checkers see only real leaks and the
 * compiler never frees piecemeal; a growing array is reallocated in place
 * (unlinked, realloc'd, relinked), so it costs no more than its size.
 * Blocks are zeroed, grown parts too.
 */
#include "mdlc.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef struct Block {
  struct Block *prev, *next; /* neighbours on the list */
  size_t size;               /* bytes of payload */
  max_align_t payload[];
} Block;

static Block *blocks; /* newest first */

static void link_block(Block *b) {
  b->prev = NULL;
  b->next = blocks;
  if (blocks) blocks->prev = b;
  blocks = b;
}

static void unlink_block(Block *b) {
  if (b->prev) b->prev->next = b->next;
  else blocks = b->next;
  if (b->next) b->next->prev = b->prev;
}

static _Noreturn void out_of_memory(size_t n) {
  fprintf(stderr, "mdlc: fatal: out of memory allocating %zu bytes\n", n);
  abort();
}

void *xalloc(size_t n) {
  Block *b = calloc(1, sizeof(Block) + n);
  if (!b) out_of_memory(n);
  b->size = n;
  link_block(b);
  return b->payload;
}

void *xrealloc_array(void *p, size_t old_n, size_t new_n, size_t elem) {
  (void)old_n;
  if (new_n && elem > SIZE_MAX / new_n) out_of_memory(SIZE_MAX);
  size_t n = new_n * elem;
  if (!p) return xalloc(n);
  Block *b = (Block *)((char *)p - offsetof(Block, payload));
  unlink_block(b);
  Block *nb = realloc(b, sizeof(Block) + n);
  if (!nb) out_of_memory(n);
  if (n > nb->size) memset((char *)nb->payload + nb->size, 0, n - nb->size);
  nb->size = n;
  link_block(nb);
  return nb->payload;
}

void *vec_grow(void *a, int n, int *cap, size_t elem) {
  if (n < *cap) return a;
  int nc = *cap ? 2 * *cap : 16;
  a = xrealloc_array(a, (size_t)*cap, (size_t)nc, elem);
  *cap = nc;
  return a;
}

void mem_free_all(void) {
  while (blocks) {
    Block *b = blocks;
    blocks = b->next;
    free(b);
  }
}

char *xstrndup(const char *s, size_t n) {
  char *d = xalloc(n + 1);
  memcpy(d, s, n);
  return d;
}

char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

static char *vxsprintf(const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) ICE("bad format '%s'", fmt);
  char *s = xalloc((size_t)n + 1);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  return s;
}

char *xsprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = vxsprintf(fmt, ap);
  va_end(ap);
  return s;
}

static void sb_reserve(StrBuf *sb, size_t more) {
  if (sb->n + more + 1 <= sb->cap) return;
  size_t cap = sb->cap ? sb->cap : 64;
  while (cap < sb->n + more + 1) cap *= 2;
  char *s = xalloc(cap);
  if (sb->s) memcpy(s, sb->s, sb->n + 1);
  sb->s = s;
  sb->cap = cap;
}

void sb_vprintf(StrBuf *sb, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) ICE("bad format '%s'", fmt);
  sb_reserve(sb, (size_t)n);
  vsnprintf(sb->s + sb->n, (size_t)n + 1, fmt, ap);
  sb->n += (size_t)n;
}

void sb_printf(StrBuf *sb, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sb_vprintf(sb, fmt, ap);
  va_end(ap);
}

void sb_putc(StrBuf *sb, char c) {
  sb_reserve(sb, 1);
  sb->s[sb->n++] = c;
  sb->s[sb->n] = 0;
}

bool mul_ok(int64_t a, int64_t b, int64_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}

bool add_ok(int64_t a, int64_t b, int64_t *out) {
  return !__builtin_add_overflow(a, b, out);
}

/* Sizes as people type them: digits (underscores between them allowed),
 * an optional decimal fraction, optional spaces, and a unit in any case:
 * B, KB MB GB TB (powers of 1000), KiB MiB GiB TiB (powers of 1024), or
 * none (bytes). "1.5GiB" = 1610612736, "47.4GB" = 47400000000, "15gb" =
 * 15000000000, "512mib" = 536870912. A fraction of a byte is dropped
 * (rounded toward zero: "1.0001KB" = 1000 B): a size is a limit, and
 * rounding down never claims a byte that was not given. At most 18
 * decimals (enough for a byte of a TiB); exact, no floating point. */
bool size_parse(const char *s, int64_t *out, const char **why) {
  static const struct { const char *unit; int64_t mult; } units[] = {
      {"", 1},          {"B", 1},
      {"KiB", 1LL << 10}, {"MiB", 1LL << 20}, {"GiB", 1LL << 30},
      {"TiB", 1LL << 40}, {"KB", 1000LL},      {"MB", 1000000LL},
      {"GB", 1000000000LL}, {"TB", 1000000000000LL},
  };
  const char *p = s;
  *why = "is not a size";
  while (*p == ' ') p++;
  if (*p == '-' && (isdigit((unsigned char)p[1]) || p[1] == '.')) {
    *why = "is negative: a size is a number of bytes, 0 or more";
    return false;
  }
  if (!isdigit((unsigned char)*p)) return false;
  int64_t whole = 0;
  bool big = false;
  for (; isdigit((unsigned char)*p) ||
         (*p == '_' && isdigit((unsigned char)p[1]));
       p++) {
    if (*p == '_') continue;
    if (!mul_ok(whole, 10, &whole) || !add_ok(whole, *p - '0', &whole))
      big = true, whole = 0;
  }
  int64_t frac = 0, den = 1; /* the fraction is frac / den */
  if (*p == '.') {
    p++;
    if (!isdigit((unsigned char)*p)) return false;
    for (; isdigit((unsigned char)*p); p++) {
      if (den == 1000000000000000000LL) {
        *why = "has more than 18 decimals";
        return false;
      }
      frac = frac * 10 + (*p - '0');
      den *= 10;
    }
  }
  while (*p == ' ') p++;
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    const char *u = units[i].unit;
    size_t n = strlen(u);
    bool same = strlen(p) == n;
    for (size_t j = 0; same && j < n; j++)
      same = tolower((unsigned char)p[j]) == tolower((unsigned char)u[j]);
    if (!same) continue;
    /* whole * mult + floor(frac * mult / den), in 128 bits */
    __extension__ typedef __int128 i128;
    i128 v = (i128)whole * units[i].mult + (i128)frac * units[i].mult / den;
    if (big || v > INT64_MAX) {
      *why = "is too large (the most is 9223372036854775807 B, 8 EiB)";
      return false;
    }
    *out = (int64_t)v;
    return true;
  }
  *why = xsprintf("is not a size: unknown unit '%s' (B, KB, MB, GB, TB, "
                  "KiB, MiB, GiB, TiB, in any case)", p);
  return false;
}

bool parse_size(const char *s, int64_t *out) {
  const char *why;
  return size_parse(s, out, &why);
}

const char *fmt_bytes(int64_t bytes, char *buf) {
  static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = (double)bytes;
  int u = 0;
  while ((v >= 1024.0 || v <= -1024.0) && u < 5) {
    v /= 1024.0;
    u++;
  }
  if (u == 0)
    snprintf(buf, 32, "%lld B", (long long)bytes);
  else
    snprintf(buf, 32, "%.2f %s", v, unit[u]);
  return buf;
}

int edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64) return INT_MAX / 2; /* names that long: no guess */
  int row[65];
  for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    int diag = row[0];
    row[0] = (int)i;
    for (size_t j = 1; j <= lb; j++) {
      int up = row[j];
      int best = diag + (a[i - 1] != b[j - 1]);
      if (row[j] + 1 < best) best = row[j] + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

/* Close enough: at most a third of the word's letters changed (at least 1,
 * at most 3). Ties go to the first candidate, so results are stable. */
const char *closest_word(const char *word, const char *const *cands, int n) {
  int len = (int)strlen(word);
  int limit = len / 3;
  if (limit < 1) limit = 1;
  if (limit > 3) limit = 3;
  const char *best = NULL;
  int best_d = limit + 1;
  for (int i = 0; i < n; i++) {
    if (!cands[i]) continue;
    int d = edit_distance(word, cands[i]);
    if (d < best_d) {
      best_d = d;
      best = cands[i];
    }
  }
  return best;
}

/* Names are identifiers with [ ] / : . #, but be safe. */
void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}
