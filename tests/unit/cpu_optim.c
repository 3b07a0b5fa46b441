/* tests/unit/cpu_optim.c: two steps of each optimizer (cpu_optim_step)
 * against values worked out by hand (sgd, momentum) and against the
 * textbook formulas evaluated in double here (adam: bias-corrected m-hat
 * over sqrt(v-hat) + eps; adamw: the decoupled decay first). Tolerance
 * 1e-7 + 1e-5 |want|; prints the worst element.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mdlc.h"

enum { N = 4 };
static const double P0[N] = {0.5, -1.0, 2.0, 0.0};
static const double G[2][N] = {{0.1, -0.2, 0.0, 3.0}, {-0.3, -0.2, 0.5, 1e-3}};
static int nfail;

static void compare(const char *name, const float *got, const double *want) {
  double worst = 0;
  int wi = 0;
  for (int i = 0; i < N; i++) {
    double r = fabs(got[i] - want[i]) / (1e-7 + 1e-5 * fabs(want[i]));
    if (r > worst) worst = r, wi = i;
  }
  printf("%s %-22s worst [%d]: got %.9g want %.9g (%.2f of tolerance)\n",
         worst > 1 ? "FAIL" : "ok  ", name, wi, got[wi], want[wi], worst);
  if (worst > 1) nfail++;
}

/* Two steps of the kernel from P0 with zero state. */
static void run(Optimizer kind, double lr, float *p) {
  float s0[N] = {0}, s1[N] = {0}, g[N];
  for (int i = 0; i < N; i++) p[i] = (float)P0[i];
  for (int t = 1; t <= 2; t++) {
    for (int i = 0; i < N; i++) g[i] = (float)G[t - 1][i];
    CpuOptim o = {.kind = kind, .lr = lr, .t = t};
    cpu_optim_step(&o, p, g, s0, s1, N);
  }
}

static void adam_ref(double lr, double wd, double *p) {
  double m[N] = {0}, v[N] = {0};
  memcpy(p, P0, sizeof P0);
  for (int t = 1; t <= 2; t++)
    for (int i = 0; i < N; i++) {
      double g = (float)G[t - 1][i];
      p[i] *= 1 - lr * wd;
      m[i] = 0.9 * m[i] + 0.1 * g;
      v[i] = 0.999 * v[i] + 0.001 * g * g;
      double mh = m[i] / (1 - pow(0.9, t)), vh = v[i] / (1 - pow(0.999, t));
      p[i] -= lr * mh / (sqrt(vh) + 1e-8);
    }
}

int main(void) {
  float p[N];
  /* sgd, lr 0.01: p1 = p0 - 0.01 g1 = {0.499, -0.998, 2, -0.03};
   * p2 = p1 - 0.01 g2 */
  run(OPTIM_SGD, 0.01, p);
  compare("sgd", p, (double[N]){0.502, -0.996, 1.995, -0.03001});
  /* momentum 0.9: buf1 = g1, p1 as sgd; buf2 = 0.9 g1 + g2 =
   * {-0.21, -0.38, 0.5, 2.701}; p2 = p1 - 0.01 buf2 */
  run(OPTIM_MOMENTUM, 0.01, p);
  compare("momentum", p, (double[N]){0.5011, -0.9942, 1.995, -0.05701});
  /* adam, step 1 alone: m-hat = g, v-hat = g^2, so p1 = p0 - lr g/(|g|+eps)
   * = {0.5 - 0.01 * 0.1/(0.1 + 1e-8), ...} */
  {
    float q[N], s0[N] = {0}, s1[N] = {0}, g[N];
    for (int i = 0; i < N; i++) q[i] = (float)P0[i], g[i] = (float)G[0][i];
    CpuOptim o = {.kind = OPTIM_ADAM, .lr = 0.01, .t = 1};
    cpu_optim_step(&o, q, g, s0, s1, N);
    compare("adam step 1", q, (double[N]){0.5 - 0.01 * 0.1 / (0.1 + 1e-8),
                                          -1.0 + 0.01 * 0.2 / (0.2 + 1e-8),
                                          2.0, -0.01 * 3 / (3 + 1e-8)});
  }
  double want[N];
  run(OPTIM_ADAM, 0.01, p);
  adam_ref(0.01, 0, want);
  compare("adam", p, want);
  run(OPTIM_ADAMW, 0.01, p);
  adam_ref(0.01, 0.01, want);
  compare("adamw", p, want);
  run(OPTIM_ADAMW, cpu_default_lr(OPTIM_ADAMW), p);
  adam_ref(1e-3, 0.01, want);
  compare("adamw default lr", p, want);
  for (int o = 0; o < OPTIM_COUNT; o++)
    if (cpu_default_lr((Optimizer)o) != 1e-3) {
      printf("FAIL default lr of optimizer %d is %g, want 1e-3\n", o,
             cpu_default_lr((Optimizer)o));
      nfail++;
    }
  printf("%s: %d failure(s)\n", nfail ? "FAIL" : "ok", nfail);
  return nfail != 0;
}
