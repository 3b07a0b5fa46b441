#!/bin/sh
# TIMEOUT: 900
# tests/sh/cuda_link_master.sh: the runtime and every example's emitted step (bf16 autocast and master weights)
# compile and link with nvcc (see tests/sh/cuda_link.lib).
POLICIES="bf16_mixed fp16_master bf16_master"
. tests/sh/cuda_link.lib
