/* bench/bench.h: what the runtime microbenchmarks (the .cu files of
 * bench/) share: a packed tensor in a pool buffer, and the median time of
 * a call. Header only; include after mdlrt.h. */
#ifndef MDLC_BENCH_H
#define MDLC_BENCH_H

#include <stdlib.h>
#include <string.h>

enum { WARMUP = 3, TIMED = 20 };

/* A packed tensor of `rank` dims and its buffer. */
typedef struct {
  mdlrt_tensor t;
  void *p;
  int64_t n;
} Buf;

static inline Buf mk(int dt, int rank, const int64_t *dim) {
  static const int size[] = {4, 2, 2, 4, 8, 1}; /* MDLRT_F32 ... */
  Buf b;
  memset(&b, 0, sizeof b);
  b.t.dt = dt, b.t.rank = rank, b.n = 1;
  for (int d = rank - 1; d >= 0; d--) {
    b.t.dim[d] = dim[d];
    b.t.st[d] = b.n;
    b.n *= dim[d];
  }
  b.p = mdlrt_alloc(b.n * size[dt], 0);
  return b;
}

static inline mdlrt_ref ref(Buf *b) { return mdlrt_at(b->p, &b->t); }

static inline int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Median milliseconds of fn(arg) on the runtime's stream (CUDA events),
 * over TIMED calls after WARMUP. */
typedef void (*Fn)(void *);
static inline double timeit(Fn fn, void *arg) {
  double ms[TIMED];
  for (int i = 0; i < WARMUP + TIMED; i++) {
    mdlrt_timer_start();
    fn(arg);
    double t = mdlrt_timer_stop();
    if (i >= WARMUP) ms[i - WARMUP] = t;
  }
  qsort(ms, TIMED, sizeof ms[0], cmp_double);
  return (ms[TIMED / 2 - 1] + ms[TIMED / 2]) / 2;
}

#endif /* MDLC_BENCH_H */
