/* backend/cpu/optim.c: the reference optimizers (SGD, momentum, Adam,
 * AdamW), element by element as docs/ops.md writes them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mdlc.h"

/* ---- optimizers ------------------------------------------------------- */

double cpu_default_lr(Optimizer o) {
  (void)o;  /* torch >= 2.2: 1e-3 for SGD, SGD+momentum, Adam and AdamW */
  return 1e-3;
}

void cpu_optim_step(const CpuOptim *o, float *p, const float *g, float *s0,
                    float *s1, int64_t n) {
  float lr = (float)o->lr;
  switch (o->kind) {
  case OPTIM_SGD:
    for (int64_t i = 0; i < n; i++) p[i] = p[i] - lr * g[i];
    break;
  case OPTIM_MOMENTUM:
    for (int64_t i = 0; i < n; i++) {
      s0[i] = 0.9f * s0[i] + g[i];
      p[i] = p[i] - lr * s0[i];
    }
    break;
  case OPTIM_ADAM:
  case OPTIM_ADAMW: {
    double bc1 = 1.0 - pow(0.9, (double)o->t);
    double bc2 = 1.0 - pow(0.999, (double)o->t);
    float step = (float)(o->lr / bc1), bc2s = (float)sqrt(bc2);
    float decay = (float)(1.0 - o->lr * 0.01);
    for (int64_t i = 0; i < n; i++) {
      if (o->kind == OPTIM_ADAMW) p[i] = p[i] * decay;
      s0[i] = 0.9f * s0[i] + 0.1f * g[i];
      s1[i] = 0.999f * s1[i] + 0.001f * g[i] * g[i];
      float denom = sqrtf(s1[i]) / bc2s + 1e-8f;
      p[i] = p[i] - step * s0[i] / denom;
    }
    break;
  }
  case OPTIM_COUNT: ICE("cpu_optim_step: optimizer %d", (int)o->kind);
  }
}
