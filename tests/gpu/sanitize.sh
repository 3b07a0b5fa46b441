#!/bin/sh
# tests/gpu/sanitize.sh: compute-sanitizer (memcheck and initcheck) over
# the emitted step of small models, on the GPU machine. Prints each tool's
# summary and the distinct kernels it names. Usage, from the repository
# root, after tests/gpu/run.sh built $BUILD/libmdlrt.a:
#   BUILD=build sh tests/gpu/sanitize.sh [MODEL:PRECISION ...]
BUILD=${BUILD:-build}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
NVCC=${NVCC:-$CUDA_HOME/bin/nvcc}
OUT=${OUT:-$BUILD/gpu-out}
CS=${CS:-compute-sanitizer}
command -v "$CS" >/dev/null || CS=$CUDA_HOME/bin/compute-sanitizer
LIBS="-L$CUDA_HOME/lib64 -L/usr/lib/x86_64-linux-gnu -lcublas -lcublasLt -lcudnn"
mkdir -p "$OUT"
cases=${*:-"tiny:fp32 mlp:fp32 mlp:bf16_mixed"}
fail=0
for c in $cases; do
  m=${c%%:*} p=${c#*:}
  "$BUILD/mdlc" --precision "$p" --emit-cuda "$OUT/san_${m}_$p.cu" "examples/$m.mdl" || exit 1
  $NVCC -O2 -lineinfo -arch=sm_90 -std=c++17 -Iruntime -o "$OUT/san_${m}_$p" \
    "$OUT/san_${m}_$p.cu" "$BUILD/libmdlrt.a" $LIBS || exit 1
  for tool in memcheck initcheck; do
    log=$OUT/san_${m}_${p}_$tool.log
    "$CS" --tool $tool --show-backtrace no --print-limit 200 \
      "$OUT/san_${m}_$p" --steps 2 >"$log" 2>&1
    sum=$(grep -E "ERROR SUMMARY" "$log" | tail -n 1)
    echo "$m $p $tool: $sum"
    grep -oE "(at|by) [A-Za-z_0-9:<>, ]+\(" "$log" | sort | uniq -c | sort -rn | head -n 8
    grep -qE "ERROR SUMMARY: 0 errors" "$log" || fail=1
  done
done
exit $fail
