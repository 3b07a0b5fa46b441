/* runtime/mdlrt_rng.h: the counter-based random numbers that the CPU
 * reference executor and the CUDA runtime share, so that both draw the same
 * weights, the same batch and the same dropout masks from --seed.
 *
 * Every draw is a pure function of (seed, stream, index): no state, so a
 * recomputed segment redraws the same dropout mask, and the GPU can draw in
 * any order. The mixer is SplitMix64's finalizer applied twice.
 *
 * Streams (a stream is a 64-bit id):
 *   MDLRT_STREAM_PARAM  + value index     parameter initialisation
 *   MDLRT_STREAM_INPUT  + value index     input data (step 0 unless fresh)
 *   MDLRT_STREAM_DROP   + node index      dropout, with the step in `index`'s
 *                                         top bits (see mdlrt_dropout_index)
 */
#ifndef MDLRT_RNG_H
#define MDLRT_RNG_H

#include <stdint.h>

#ifdef __CUDACC__
#define MDLRT_HD __host__ __device__ __forceinline__
#else
#define MDLRT_HD static inline
#endif

#define MDLRT_STREAM_PARAM 0x100000000ull
#define MDLRT_STREAM_INPUT 0x200000000ull
#define MDLRT_STREAM_DROP 0x300000000ull

MDLRT_HD uint64_t mdlrt_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* 64 random bits for element `i` of `stream`. */
MDLRT_HD uint64_t mdlrt_bits(uint64_t seed, uint64_t stream, uint64_t i) {
  return mdlrt_mix64(mdlrt_mix64(seed ^ (stream * 0x9e3779b97f4a7c15ull)) + i);
}

/* Uniform in [0, 1) with 24 bits, exactly representable in f32. */
MDLRT_HD float mdlrt_uniform(uint64_t seed, uint64_t stream, uint64_t i) {
  return (float)(mdlrt_bits(seed, stream, i) >> 40) * (1.0f / 16777216.0f);
}

/* The dropout draw of element i at a given step: steps never collide. */
MDLRT_HD uint64_t mdlrt_dropout_index(uint64_t step, uint64_t i) {
  return (step << 40) ^ i;
}

#endif /* MDLRT_RNG_H */
