/* runtime/mdlrt_optim.cu: the optimizers' update of one parameter (sgd,
 * momentum, adam, adamw; a master copy if the parameter is 16-bit), with
 * Adam's step-dependent scalars read from the step's variables on the
 * device, so a replayed graph applies the step it replays.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdlrt_dev.cuh"

/* ---- optimizers ---------------------------------------------------------- */

/* Scalars of one update, computed in double and rounded to f32 once
 * (docs/ops.md, Optimizers); Adam's two that depend on the step are in
 * the step's variables on the device (mdlrt_rt.dstep). */
struct OptScalars {
  int kind;
  float lr, wd, mu;     /* learning rate, L2 weight decay, momentum */
  float b1, omb1;       /* beta1, 1 - beta1 */
  float b2, omb2;       /* beta2, 1 - beta2 */
  float eps, decay;     /* eps, 1 - lr * decoupled weight decay */
};

/* One update per element, docs/ops.md's formulas (PyTorch's):
 *   sgd       p -= lr g
 *   momentum  b = mu b + g; p -= lr b          (b starts at 0, so b1 = g)
 *   adam(w)   m = b1 m + (1-b1) g; v = b2 v + (1-b2) g g;
 *             p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
 *             adamw first decays p *= 1 - lr wd.
 * With a master copy the update runs on it and p = master rounded. */
__global__ void k_optim(OptScalars o, View p, View g, View master, View s0,
                        View s1, const StepVars *sv) {
  const View &w = master.p ? master : p;
  GRID_LOOP(i, p.n) {
    float x = ldf(w, i), gr = ldf(g, i);
    switch (o.kind) {
    case MDLRT_SGD:
      if (o.wd != 0.0f) gr += o.wd * x;
      x -= o.lr * gr;
      break;
    case MDLRT_MOMENTUM: {
      if (o.wd != 0.0f) gr += o.wd * x;
      float b = o.mu * ldf(s0, i) + gr;
      stf(s0, i, b, 0);
      x -= o.lr * b;
      break;
    }
    case MDLRT_ADAM:
    case MDLRT_ADAMW: {
      if (o.kind == MDLRT_ADAMW)
        x = x * o.decay;
      else if (o.wd != 0.0f)
        gr += o.wd * x;
      float m = o.b1 * ldf(s0, i) + o.omb1 * gr;
      float v = o.b2 * ldf(s1, i) + o.omb2 * gr * gr;
      stf(s0, i, m, 0);
      stf(s1, i, v, 0);
      x = x - sv->adam_step * m / (sqrtf(v) / sv->sqrt_bc2 + o.eps);
      break;
    }
    default: __trap(); /* mdlrt_optim_step rejects unknown kinds */
    }
    stf(w, i, x, 0);
    if (master.p) stf(p, i, x, 0);
  }
}

void mdlrt_optim_step(const mdlrt_optim *o, mdlrt_ref pr, mdlrt_ref gr,
                      mdlrt_ref mr, mdlrt_ref s0r, mdlrt_ref s1r) {
  View p = mdlrt_view(pr), g = mdlrt_view(gr), m = mdlrt_view(mr);
  View s0 = mdlrt_view(s0r), s1 = mdlrt_view(s1r);
  if (o->kind < MDLRT_SGD || o->kind > MDLRT_ADAMW)
    mdlrt_bad_code("optimizer kind", o->kind, __FILE__, __LINE__);
  if (!p.n) return;
  OptScalars s;
  s.kind = o->kind;
  s.lr = (float)o->lr;
  s.wd = o->kind == MDLRT_ADAMW ? 0.0f : (float)o->weight_decay;
  s.mu = (float)o->momentum;
  s.b1 = (float)o->beta1, s.omb1 = (float)(1.0 - o->beta1);
  s.b2 = (float)o->beta2, s.omb2 = (float)(1.0 - o->beta2);
  s.eps = (float)o->eps;
  s.decay = (float)(1.0 - o->lr * o->weight_decay);
  k_optim<<<grid_for(p.n), 256, 0, mdlrt_rt.stream>>>(s, p, g, m, s0, s1,
                                                      mdlrt_rt.dstep);
  KERNEL_CHECK();
}
