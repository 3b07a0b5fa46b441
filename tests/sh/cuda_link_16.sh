#!/bin/sh
# TIMEOUT: 900
# tests/sh/cuda_link_16.sh: the runtime and every example's emitted step (pure 16-bit and fp16 autocast)
# compile and link with nvcc (see tests/sh/cuda_link.lib).
POLICIES="fp16 bf16 fp16_mixed"
. tests/sh/cuda_link.lib
