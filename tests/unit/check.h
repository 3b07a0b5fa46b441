/* tests/unit/check.h: what the unit tests share (tests/run.sh compiles
 * each tests/unit/*.c on its own; this header is not a test).
 *   CHECK(cond, fmt, ...)  counts a failure and says where, without stopping
 *   shape2(rank, a, b)     a shape of rank 0, 1 or 2
 *   plan_step(g)           the passes after the frontend, as mdlc runs them
 *                          (pipeline_plan, passes/pipeline.c), with the IR
 *                          verified before and after */
#ifndef MDLC_TESTS_CHECK_H
#define MDLC_TESTS_CHECK_H

#include "mdlc.h"

static int failures __attribute__((unused));

#define CHECK(c, ...)                                                        \
  do {                                                                       \
    if (!(c)) {                                                              \
      failures++;                                                            \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);                            \
      printf(__VA_ARGS__);                                                   \
      putchar('\n');                                                         \
    }                                                                        \
  } while (0)

static inline Shape shape2(int rank, int64_t a, int64_t b) {
  Shape s = {.rank = rank};
  s.dim[0] = a;
  s.dim[1] = b;
  return s;
}

static inline void plan_step(Graph *g) {
  graph_verify(g);
  pipeline_plan(g);
  graph_verify(g);
}

#endif
