#!/bin/sh
# TIMEOUT: 900
# tests/sh/cuda_link.sh: the runtime and every example's emitted step (fp32, inference, optimizer in backward)
# compile and link with nvcc (see tests/sh/cuda_link.lib).
POLICIES="fp32 infer oib"
. tests/sh/cuda_link.lib
