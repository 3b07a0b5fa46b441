/* runtime/mdlrt_layout.cu: the ops that move elements: embedding (a row of
 * the table per id; its backward adds rows with atomics). Transpose and
 * concat are strided copies (mdlrt_copy in mdlrt.cu) of views the emitter
 * builds.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdlrt_dev.cuh"

/* ---- embedding ------------------------------------------------------------ */

__global__ void k_embed_fwd(View y, View ids, View w, int64_t D) {
  GRID_LOOP(i, y.n) {
    int64_t id = ldi(ids, vofs(ids, i / D));
    stf(y, i, ldf(w, id * D + i % D), 0);
  }
}

__global__ void k_embed_bwd(View dw, View dy, View ids, int64_t D) {
  GRID_LOOP(i, dy.n) {
    int64_t id = ldi(ids, vofs(ids, i / D));
    atomic_addf(dw, id * D + i % D, ldf(dy, i));
  }
}

void mdlrt_embedding_fwd(mdlrt_ref yr, mdlrt_ref idr, mdlrt_ref wr) {
  View y = mdlrt_view(yr), w = mdlrt_view(wr);
  k_embed_fwd<<<grid_for(y.n), 256, 0, mdlrt_rt.stream>>>(
      y, mdlrt_view(idr), w, w.dim[1]);
  KERNEL_CHECK();
}

void mdlrt_embedding_bwd(mdlrt_ref dwr, int accum, mdlrt_ref dyr,
                         mdlrt_ref idr) {
  View dw = mdlrt_view(dwr), dy = mdlrt_view(dyr);
  if (!accum)
    CUDA_CHECK(cudaMemsetAsync(dw.p, 0, (size_t)dw.n * mdlrt_dt_size(dw.dt),
                               mdlrt_rt.stream));
  k_embed_bwd<<<grid_for(dy.n), 256, 0, mdlrt_rt.stream>>>(
      dw, dy, mdlrt_view(idr), dw.dim[1]);
  KERNEL_CHECK();
}
