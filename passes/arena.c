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
 * 2. Good fit in time order (any size, near-linear): replay the schedule
 *    as an allocator would; each allocation takes a free gap of its own
 *    size class (or the next class up) that holds it, else grows the top;
 *    frees coalesce with their neighbours in O(1).
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

/* ---- good fit in time order --------------------------------------------- */

/* Free gaps live in size classes (class c holds lengths in [2^c, 2^c+1))
 * as doubly linked lists, and in two hash maps, by start and by end, so
 * that a freed block finds the gaps it touches in O(1). An allocation takes
 * the first gap that holds it in its own class, else any gap of the next
 * non-empty class above: near best fit, without scanning every gap. */

enum { NCLASS = 64 };

typedef struct {
  int64_t off, len;  /* the gap [off, off + len) */
  int prev, next;    /* its size class's list; -1 ends */
  bool used;         /* an entry in use (not on the free-slot list) */
} Gap;

typedef struct {
  int64_t key;       /* a gap's start or end; -1 for an empty slot */
  int gap;           /* its index */
} Slot;

typedef struct {
  Gap *g;            /* gaps, indexed */
  int n, cap;
  int free_slot;     /* a reusable Gap entry, chained through next; -1 */
  int head[NCLASS];  /* each class's first gap, -1 */
  Slot *by_start, *by_end; /* open addressing, power-of-two size */
  int64_t mask;      /* table size - 1 */
  int64_t top;       /* first byte above everything allocated */
} FreeMap;

static int size_class(int64_t len) { return 63 - __builtin_clzll((unsigned long long)len); }

static int64_t slot_of(const Slot *t, int64_t mask, int64_t key) {
  int64_t h = (int64_t)((uint64_t)(key / ALIGN) * 0x9e3779b97f4a7c15ull >> 1) & mask;
  while (t[h].key != -1 && t[h].key != key) h = (h + 1) & mask;
  return h;
}

/* Deletion in linear probing: re-seat the run after the hole. */
static void slot_del(Slot *t, int64_t mask, int64_t key) {
  int64_t h = slot_of(t, mask, key);
  if (t[h].key == -1) return;
  t[h].key = -1;
  for (int64_t j = (h + 1) & mask; t[j].key != -1; j = (j + 1) & mask) {
    Slot s = t[j];
    t[j].key = -1;
    t[slot_of(t, mask, s.key)] = s;
  }
}

static void gap_link(FreeMap *m, int i) {
  Gap *x = &m->g[i];
  int c = size_class(x->len);
  x->prev = -1;
  x->next = m->head[c];
  if (m->head[c] >= 0) m->g[m->head[c]].prev = i;
  m->head[c] = i;
  m->by_start[slot_of(m->by_start, m->mask, x->off)] = (Slot){x->off, i};
  m->by_end[slot_of(m->by_end, m->mask, x->off + x->len)] =
      (Slot){x->off + x->len, i};
}

static void gap_unlink(FreeMap *m, int i) {
  Gap *x = &m->g[i];
  int c = size_class(x->len);
  if (x->prev >= 0) m->g[x->prev].next = x->next;
  else m->head[c] = x->next;
  if (x->next >= 0) m->g[x->next].prev = x->prev;
  slot_del(m->by_start, m->mask, x->off);
  slot_del(m->by_end, m->mask, x->off + x->len);
}

static int gap_new(FreeMap *m, int64_t off, int64_t len) {
  int i;
  if (m->free_slot >= 0) {
    i = m->free_slot;
    m->free_slot = m->g[i].next;
  } else {
    VEC_PUSH(m->g, m->n, m->cap);
    i = m->n - 1;
  }
  m->g[i] = (Gap){.off = off, .len = len, .used = true};
  gap_link(m, i);
  return i;
}

static void gap_drop(FreeMap *m, int i) {
  gap_unlink(m, i);
  m->g[i].used = false;
  m->g[i].next = m->free_slot;
  m->free_slot = i;
}

static int find_gap(const FreeMap *m, int64_t len) {
  int c = size_class(len);
  for (int i = m->head[c]; i >= 0; i = m->g[i].next)
    if (m->g[i].len >= len) return i;
  for (c++; c < NCLASS; c++)
    if (m->head[c] >= 0) return m->head[c];
  return -1;
}

static int64_t fm_alloc(FreeMap *m, int64_t bytes) {
  int64_t len = align_up(bytes > 0 ? bytes : 1);
  int i = find_gap(m, len);
  if (i < 0) {
    /* grow the top, starting in a gap that ends at it */
    int64_t h = slot_of(m->by_end, m->mask, m->top);
    int64_t at = m->top;
    if (m->by_end[h].key == m->top) {
      at = m->g[m->by_end[h].gap].off;
      gap_drop(m, m->by_end[h].gap);
    }
    m->top = at + len;
    return at;
  }
  int64_t at = m->g[i].off, rest = m->g[i].len - len;
  gap_drop(m, i);
  if (rest > 0) gap_new(m, at + len, rest);
  return at;
}

static void fm_free(FreeMap *m, int64_t off, int64_t bytes) {
  int64_t len = align_up(bytes > 0 ? bytes : 1);
  int64_t h = slot_of(m->by_end, m->mask, off);
  if (m->by_end[h].key == off) { /* a gap ends where this block starts */
    int l = m->by_end[h].gap;
    off = m->g[l].off;
    len += m->g[l].len;
    gap_drop(m, l);
  }
  h = slot_of(m->by_start, m->mask, off + len);
  if (m->by_start[h].key == off + len) { /* one starts where it ends */
    int r = m->by_start[h].gap;
    len += m->g[r].len;
    gap_drop(m, r);
  }
  if (off + len == m->top) m->top = off; /* give it back to the top */
  else gap_new(m, off, len);
}

static int64_t plan_good_fit(const Graph *g, int64_t *off_of_buf) {
  FreeMap m = {.free_slot = -1};
  for (int c = 0; c < NCLASS; c++) m.head[c] = -1;
  /* gaps never outnumber the live buffers (plus one): size the tables to
   * twice the most buffers ever live at once */
  int64_t live = 0, most = 0;
  for (int i = 0; i < g->nins; i++) {
    live += g->ins[i].nalloc;
    if (live > most) most = live;
    live -= g->ins[i].nfree;
  }
  int64_t size = 64;
  while (size < 2 * most + 64) size *= 2;
  m.mask = size - 1;
  m.by_start = xalloc(sizeof(Slot) * (size_t)size);
  m.by_end = xalloc(sizeof(Slot) * (size_t)size);
  for (int64_t i = 0; i < size; i++) m.by_start[i].key = m.by_end[i].key = -1;
  int64_t top = 0;
  for (int i = 0; i < g->nins; i++) {
    const Instr *in = &g->ins[i];
    for (int k = 0; k < in->nalloc; k++) {
      int b = in->alloc[k];
      off_of_buf[b] = fm_alloc(&m, g->bufs[b].bytes);
      if (off_of_buf[b] + g->bufs[b].bytes > top)
        top = off_of_buf[b] + g->bufs[b].bytes;
    }
    for (int k = 0; k < in->nfree; k++) {
      int b = in->free[k];
      fm_free(&m, off_of_buf[b], g->bufs[b].bytes);
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
  int64_t best = plan_good_fit(g, fit);
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
