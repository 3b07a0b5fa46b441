/* passes/liveness.c: allocation and free points, and the peak.
 *
 * A buffer is allocated just before the first instruction that names it
 * and freed just after the last one (memory.md's "free after the last
 * reader"), unless it is persistent or kept to the end (the loss, the
 * outputs). The live bytes after an instruction's allocations are the
 * figure the peak is read from; the frees of that instruction come after.
 *
 * Example (tiny, memory.md): relu' (instruction 8, 1-based) allocates da
 * (32 B) while dh and h are still live, giving 276 B, the peak; dh and h
 * are freed right after it.
 *
 * Requires: pass_autodiff. Sets: Buf.alloc_at/free_at, Instr.alloc/free/
 * live, g->persistent_bytes, g->peak, g->peak_at, g->by_cat.
 * Invalidates: nothing.
 */
#include "mdlc.h"

void pass_liveness(Graph *g) {
  int *first = xalloc(sizeof(int) * (size_t)(g->nbufs ? g->nbufs : 1));
  int *last = xalloc(sizeof(int) * (size_t)(g->nbufs ? g->nbufs : 1));
  for (int b = 0; b < g->nbufs; b++) first[b] = last[b] = -1;
  for (int i = 0; i < g->nins; i++) {
    const Instr *in = &g->ins[i];
    for (int pass = 0; pass < 2; pass++) {
      const Ref *r = pass ? in->out : in->in;
      int n = pass ? in->nout : in->nin;
      for (int k = 0; k < n; k++) {
        int b = r[k].buf;
        if (b < 0) continue;
        if (first[b] < 0) {
          first[b] = i;
          /* a buffer's first use must write it (or it is filled when it
           * is allocated): reading garbage is a bug */
          const Buf *x = &g->bufs[b];
          if (!pass && !x->persistent && !x->zero_init && !x->gathered)
            ICE("buffer '%s' is read by instruction %d before any write",
                g->bufs[b].name, i);
        }
        last[b] = i;
      }
    }
  }

  int *nalloc = xalloc(sizeof(int) * (size_t)(g->nins ? g->nins : 1));
  int *nfree = xalloc(sizeof(int) * (size_t)(g->nins ? g->nins : 1));
  g->persistent_bytes = 0;
  for (int b = 0; b < g->nbufs; b++) {
    Buf *x = &g->bufs[b];
    if (x->persistent) {
      x->alloc_at = x->free_at = -1;
      g->persistent_bytes += x->bytes;
      continue;
    }
    if (first[b] < 0) ICE("buffer '%s' is never used", x->name);
    x->alloc_at = first[b];
    x->free_at = x->keep_to_end ? -1 : last[b];
    nalloc[x->alloc_at]++;
    if (x->free_at >= 0) nfree[x->free_at]++;
  }
  /* exact-size lists, then fill */
  for (int i = 0; i < g->nins; i++) {
    g->ins[i].alloc = xalloc(sizeof(int) * (size_t)(nalloc[i] ? nalloc[i] : 1));
    g->ins[i].free = xalloc(sizeof(int) * (size_t)(nfree[i] ? nfree[i] : 1));
    g->ins[i].nalloc = g->ins[i].nfree = 0;
  }
  for (int b = 0; b < g->nbufs; b++) {
    const Buf *x = &g->bufs[b];
    if (x->persistent) continue;
    Instr *a = &g->ins[x->alloc_at];
    a->alloc[a->nalloc++] = b;
    if (x->free_at >= 0) {
      Instr *f = &g->ins[x->free_at];
      f->free[f->nfree++] = b;
    }
  }

  int64_t live = g->persistent_bytes;
  g->peak = live;
  g->peak_at = -1;
  for (int i = 0; i < g->nins; i++) {
    Instr *in = &g->ins[i];
    for (int k = 0; k < in->nalloc; k++) live += g->bufs[in->alloc[k]].bytes;
    in->live = live;
    if (live > g->peak) {
      g->peak = live;
      g->peak_at = i;
    }
    for (int k = 0; k < in->nfree; k++) live -= g->bufs[in->free[k]].bytes;
  }

  for (int c = 0; c < CAT_COUNT; c++) g->by_cat[c] = 0;
  for (int b = 0; b < g->nbufs; b++) {
    const Buf *x = &g->bufs[b];
    if (buf_live_at(x, g->peak_at)) g->by_cat[x->cat] += x->bytes;
  }
}
