/* passes/arena.c: offsets in one arena for every non-persistent buffer.
 *
 * Two planners, keep the smaller arena:
 *
 * 1. Greedy by size (for up to GREEDY_MAX buffers): buffers in decreasing
 *    size; each goes to the lowest 256-aligned offset where it overlaps no
 *    already placed buffer that is alive at the same time. Big tensors are
 *    placed first, small ones fill the holes between them.
 *      a: 512 B, live 0..3    b: 256 B, live 2..5    c: 256 B, live 4..6
 *      a -> 0; b overlaps a in time -> 512; c overlaps b only -> 0.
 *    Arena 768 B, against a peak of 768 B (a and b at instruction 2..3).
 *
 * 2. Best fit in time order (any size, near-linear): replay the schedule
 *    as an allocator would; each allocation takes the smallest free gap
 *    that holds it, else grows the top; frees coalesce with neighbours.
 *
 * Requires: pass_liveness. Sets: Buf.offset (-1 for persistent buffers),
 * g->arena_bytes. arena_verify() checks the result independently.
 */
#include "mdlc.h"

#include <stdlib.h>
#include <string.h>

enum { ALIGN = 256, GREEDY_MAX = 6000 };

static int64_t align_up(int64_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

static int64_t end_of(const Graph *g, const Buf *b) {
  return b->free_at < 0 ? g->nins : b->free_at;
}

static bool overlap_in_time(const Graph *g, const Buf *a, const Buf *b) {
  return a->alloc_at <= end_of(g, b) && b->alloc_at <= end_of(g, a);
}

/* ---- greedy by size ------------------------------------------------------ */

typedef struct {
  int64_t bytes; /* sort key: larger first */
  int alloc_at;  /* then earlier first */
  int buf;       /* then by index: deterministic */
} SizeKey;

static int by_size_desc(const void *pa, const void *pb) {
  const SizeKey *a = pa, *b = pb;
  if (a->bytes != b->bytes) return a->bytes > b->bytes ? -1 : 1;
  if (a->alloc_at != b->alloc_at) return a->alloc_at < b->alloc_at ? -1 : 1;
  return a->buf - b->buf;
}

static int by_offset(const void *pa, const void *pb) {
  const int64_t *a = pa, *b = pb; /* pairs (offset, end) */
  return a[0] < b[0] ? -1 : a[0] > b[0];
}

static int64_t plan_greedy(const Graph *g, const int *order, int n,
                           int64_t *off) {
  int64_t (*busy)[2] = xalloc(sizeof *busy * (size_t)(n ? n : 1));
  int64_t top = 0;
  for (int i = 0; i < n; i++) {
    const Buf *b = &g->bufs[order[i]];
    int nb = 0;
    for (int j = 0; j < i; j++) {
      const Buf *p = &g->bufs[order[j]];
      if (!overlap_in_time(g, b, p)) continue;
      busy[nb][0] = off[j];
      busy[nb][1] = off[j] + p->bytes;
      nb++;
    }
    qsort(busy, (size_t)nb, sizeof *busy, by_offset);
    int64_t at = 0;
    for (int k = 0; k < nb; k++) {
      if (busy[k][0] >= at + b->bytes) break; /* fits in the gap before k */
      if (busy[k][1] > at) at = align_up(busy[k][1]);
    }
    off[i] = at;
    if (at + b->bytes > top) top = at + b->bytes;
  }
  return top;
}

/* ---- best fit in time order ---------------------------------------------- */

typedef struct {
  int64_t off, len; /* a free gap */
} Gap;

typedef struct {
  Gap *g;
  int n, cap;
  int64_t top; /* first byte above everything ever allocated */
} FreeList;

static int64_t fl_alloc(FreeList *fl, int64_t bytes) {
  int best = -1;
  for (int i = 0; i < fl->n; i++)
    if (fl->g[i].len >= bytes && (best < 0 || fl->g[i].len < fl->g[best].len))
      best = i;
  if (best < 0) {
    /* grow the top, reusing a gap that ends at it */
    int64_t at = fl->top;
    if (fl->n && fl->g[fl->n - 1].off + fl->g[fl->n - 1].len == fl->top) {
      at = fl->g[fl->n - 1].off;
      fl->n--;
    }
    fl->top = align_up(at + bytes);
    return at;
  }
  int64_t at = fl->g[best].off;
  int64_t used = align_up(bytes);
  if (used >= fl->g[best].len) {
    memmove(&fl->g[best], &fl->g[best + 1], sizeof(Gap) * (size_t)(fl->n - best - 1));
    fl->n--;
  } else {
    fl->g[best].off += used;
    fl->g[best].len -= used;
  }
  return at;
}

static void fl_free(FreeList *fl, int64_t off, int64_t bytes) {
  int64_t len = align_up(bytes);
  int i = 0;
  while (i < fl->n && fl->g[i].off < off) i++;
  /* merge with the gap before and after */
  bool prev = i > 0 && fl->g[i - 1].off + fl->g[i - 1].len == off;
  bool next = i < fl->n && off + len == fl->g[i].off;
  if (prev && next) {
    fl->g[i - 1].len += len + fl->g[i].len;
    memmove(&fl->g[i], &fl->g[i + 1], sizeof(Gap) * (size_t)(fl->n - i - 1));
    fl->n--;
  } else if (prev) {
    fl->g[i - 1].len += len;
  } else if (next) {
    fl->g[i].off = off;
    fl->g[i].len += len;
  } else {
    VEC_PUSH(fl->g, fl->n, fl->cap);
    memmove(&fl->g[i + 1], &fl->g[i], sizeof(Gap) * (size_t)(fl->n - 1 - i));
    fl->g[i] = (Gap){off, len};
  }
}

static int64_t plan_best_fit(const Graph *g, int64_t *off_of_buf) {
  FreeList fl = {0};
  int64_t top = 0;
  for (int i = 0; i < g->nins; i++) {
    const Instr *in = &g->ins[i];
    for (int k = 0; k < in->nalloc; k++) {
      int b = in->alloc[k];
      off_of_buf[b] = fl_alloc(&fl, g->bufs[b].bytes);
      if (off_of_buf[b] + g->bufs[b].bytes > top)
        top = off_of_buf[b] + g->bufs[b].bytes;
    }
    for (int k = 0; k < in->nfree; k++) {
      int b = in->free[k];
      fl_free(&fl, off_of_buf[b], g->bufs[b].bytes);
    }
  }
  return top;
}

void pass_arena(Graph *g) {
  int n = 0;
  int *order = xalloc(sizeof(int) * (size_t)(g->nbufs ? g->nbufs : 1));
  for (int b = 0; b < g->nbufs; b++) {
    g->bufs[b].offset = -1;
    if (!g->bufs[b].persistent) order[n++] = b;
  }
  int64_t *fit = xalloc(sizeof(int64_t) * (size_t)(g->nbufs ? g->nbufs : 1));
  int64_t best = plan_best_fit(g, fit);
  for (int b = 0; b < g->nbufs; b++)
    if (!g->bufs[b].persistent) g->bufs[b].offset = fit[b];

  if (n <= GREEDY_MAX) {
    SizeKey *key = xalloc(sizeof(SizeKey) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++)
      key[i] = (SizeKey){g->bufs[order[i]].bytes, g->bufs[order[i]].alloc_at,
                         order[i]};
    qsort(key, (size_t)n, sizeof(SizeKey), by_size_desc);
    for (int i = 0; i < n; i++) order[i] = key[i].buf;
    int64_t *off = xalloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    int64_t top = plan_greedy(g, order, n, off);
    if (top < best) {
      best = top;
      for (int i = 0; i < n; i++) g->bufs[order[i]].offset = off[i];
    }
  }
  g->arena_bytes = align_up(best);
}

/* Independent check: no two buffers alive at the same instruction share a
 * byte, every offset is aligned and inside the arena. Returns NULL or a
 * description of the first violation. Quadratic: for tests. */
const char *arena_verify(const Graph *g) {
  for (int a = 0; a < g->nbufs; a++) {
    const Buf *x = &g->bufs[a];
    if (x->persistent) continue;
    if (x->offset < 0 || x->offset % ALIGN)
      return xsprintf("'%s' has offset %lld", x->name, (long long)x->offset);
    if (x->offset + x->bytes > g->arena_bytes)
      return xsprintf("'%s' ends past the arena", x->name);
    for (int b = a + 1; b < g->nbufs; b++) {
      const Buf *y = &g->bufs[b];
      if (y->persistent || !overlap_in_time(g, x, y)) continue;
      if (x->offset < y->offset + y->bytes && y->offset < x->offset + x->bytes)
        return xsprintf("'%s' [%lld, +%lld) and '%s' [%lld, +%lld) overlap "
                        "while both are live",
                        x->name, (long long)x->offset, (long long)x->bytes,
                        y->name, (long long)y->offset, (long long)y->bytes);
    }
  }
  return NULL;
}
