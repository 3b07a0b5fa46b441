#!/bin/sh
# tests/gpu/attn.sh: the fused attention (runtime/mdlrt_attn.cu) on a GPU,
# from the repository root (or a copy holding runtime/, tests/gpu/, bench/):
#   1. builds the runtime objects (every runtime/*.cu),
#      tests/gpu/attn_test.cu and bench/attn_bench.cu with nvcc, unless
#      $BUILD/attn_test and $BUILD/attn_bench exist and start (prebuilt:
#      then only relinked from $BUILD/runtime/*.o if they do not start);
#   2. attn_test + attn_check.py: every case against PyTorch in float64,
#      and each case's rerun identical to the bit;
#   3. attn_test --small-ws: a backward whose workspace is too small must
#      print both sizes and exit 1;
#   4. bench/attn.py: mdlc against F.scaled_dot_product_attention (BENCH=0:
#      not);
#   5. with SANITIZE=1: compute-sanitizer memcheck and racecheck on one
#      small case ($SAN_CASE, a substring of its name).
# Logs go to $OUT (default $BUILD/attn-out). Exit 0 iff 2 and 3 passed.
# Prebuilt here, 16 cases and the bench take about two minutes on an H200.
BUILD=${BUILD:-build}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
NVCC=${NVCC:-$CUDA_HOME/bin/nvcc}
CUDA_ARCH=${CUDA_ARCH:-sm_90}
OUT=${OUT:-$BUILD/attn-out}
DUMPS=$BUILD/attn-dumps
mkdir -p "$OUT" "$DUMPS" "$BUILD/runtime"
export LD_LIBRARY_PATH=$CUDA_HOME/lib64:/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
INC="-Iruntime -I/usr/include/x86_64-linux-gnu"
LIBS="-L$CUDA_HOME/lib64 -L/usr/lib/x86_64-linux-gnu -lcublas -lcublasLt -lcudnn"
fail=0

starts() { # the program runs: prints its usage, exit 2
  "$1" >/dev/null 2>&1
  [ $? = 2 ]
}
link() {
  $NVCC -O2 -arch=$CUDA_ARCH -std=c++17 $INC -o "$BUILD/attn_test" \
    tests/gpu/attn_test.cu "$BUILD"/runtime/*.o $LIBS || return 1
  $NVCC -O2 -arch=$CUDA_ARCH -std=c++17 $INC -Ibench -o "$BUILD/attn_bench" \
    bench/attn_bench.cu "$BUILD"/runtime/*.o $LIBS || return 1
}

echo "== build"
if [ -x "$BUILD/attn_test" ] && starts "$BUILD/attn_test"; then
  echo "prebuilt attn_test and attn_bench start"
else
  if ! [ -f "$BUILD/runtime/mdlrt_attn.o" ]; then
    for c in runtime/*.cu; do
      f=$(basename "$c" .cu)
      $NVCC -O3 -arch=$CUDA_ARCH -std=c++17 $INC -Xcompiler -Wall -c \
        -o "$BUILD/runtime/$f.o" "$c" &
    done
    wait
  fi
  link || { echo "attn: build FAILED"; exit 1; }
fi

echo "== attn_test + attn_check.py"
"$BUILD/attn_test" "$DUMPS" > "$OUT/attn_test.log" 2>&1 || fail=1
cat "$OUT/attn_test.log"
python3 tests/gpu/attn_check.py "$DUMPS" > "$OUT/attn_check.log" 2>&1 || fail=1
cat "$OUT/attn_check.log"

echo "== too small a workspace"
"$BUILD/attn_test" --small-ws > "$OUT/small_ws.log" 2>&1
rc=$?
cat "$OUT/small_ws.log"
if [ $rc = 1 ] && grep -q "needs 512 B of workspace" "$OUT/small_ws.log" &&
   grep -q "has 256 B" "$OUT/small_ws.log"; then
  echo "small workspace: PASS (exit 1, both sizes printed)"
else
  echo "small workspace: FAIL (exit $rc)"
  fail=1
fi

if [ "${BENCH:-1}" = 1 ]; then
  echo "== bench"
  python3 bench/attn.py "$BUILD/attn_bench" 2>&1 | tee "$OUT/attn_bench.log"
fi
if [ "${SANITIZE:-0}" = 1 ]; then
  echo "== compute-sanitizer"
  mkdir -p "$DUMPS/san"
  for tool in memcheck racecheck; do
    ATTN_ONLY=${SAN_CASE:-d40_no_dv} timeout 60 compute-sanitizer \
      --tool $tool --error-exitcode 9 "$BUILD/attn_test" "$DUMPS/san" \
      > "$OUT/sanitize_$tool.log" 2>&1
    echo "$tool: exit $? ($(grep -c 'ERROR SUMMARY\|RACECHECK SUMMARY' \
      "$OUT/sanitize_$tool.log") summaries)"
    grep -E "SUMMARY" "$OUT/sanitize_$tool.log"
  done
fi

[ $fail = 0 ] && echo "attn: PASS" || echo "attn: FAIL"
exit $fail
