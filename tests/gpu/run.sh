#!/bin/sh
# tests/gpu/run.sh: the GPU tests (`make gpu-test`), on a machine with an
# NVIDIA GPU; CI never runs them. From the repository root:
#   1. builds the runtime (libmdlrt.a) and tests/gpu/rt_test.cu with nvcc,
#      (stages attn and scan: the fused attention and the selective scan
#      against PyTorch, tests/gpu/attn.sh and scan_check.py; v2: the
#      version-2 operators end to end, tests/gpu/v2.sh)
#      runs every kernel and checks it against PyTorch in float64
#      (tests/gpu/rt_check.py), and probes the pool's byte accounting;
#   2. if $BUILD/mdlc exists: `mdlc --run` on every example under every
#      precision policy, predicted against measured peak (tests/gpu/models.sh);
#      CUDA graph replay against eager steps, bit for bit (graph.sh); placed
#      plans (placement.sh); every example learns (learns.sh).
# About 10 minutes on an H100. Logs go to $OUT (default $BUILD/gpu-out).
# GPU_STAGES picks stages (default "rt models graph placement learns"), so
# that the whole can be split over calls of a limited length.
# Exit 0 only if all passed.
BUILD=${BUILD:-build}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
NVCC=${NVCC:-$CUDA_HOME/bin/nvcc}
CUDA_ARCH=${CUDA_ARCH:-sm_90}
OUT=${OUT:-$BUILD/gpu-out}
mkdir -p "$OUT" "$BUILD/gpu-rt" "$BUILD/runtime"
fail=0
INC="-Iruntime -I/usr/include/x86_64-linux-gnu"
LIBS="-L$CUDA_HOME/lib64 -L/usr/lib/x86_64-linux-gnu -lcublas -lcublasLt -lcudnn"

STAGES=${GPU_STAGES:-"rt attn scan models v2 graph placement learns"}
has() { case " $STAGES " in *" $1 "*) return 0;; esac; return 1; }

echo "== runtime"
pids=
for f in runtime/*.cu; do
  o=$BUILD/runtime/$(basename "$f" .cu).o
  $NVCC -O3 -arch=$CUDA_ARCH -std=c++17 $INC -Xcompiler -Wall -c -o "$o" "$f" &
  pids="$pids $!"
done
for p in $pids; do wait "$p" || exit 1; done
ar rcs "$BUILD/libmdlrt.a" "$BUILD"/runtime/*.o || exit 1

if has rt; then
echo "== kernels against PyTorch"
$NVCC -O2 -arch=$CUDA_ARCH -std=c++17 $INC -o "$BUILD/rt_test" \
  tests/gpu/rt_test.cu "$BUILD/libmdlrt.a" $LIBS || exit 1
"$BUILD/rt_test" "$BUILD/gpu-rt" > "$OUT/rt_test.log" 2>&1 || fail=1
cat "$OUT/rt_test.log"
grep -q "pool probe: PASS" "$OUT/rt_test.log" || fail=1
python3 tests/gpu/rt_check.py "$BUILD/gpu-rt" > "$OUT/rt_check.log" 2>&1 || fail=1
cat "$OUT/rt_check.log"
fi

if has attn; then
  echo "== fused attention against PyTorch (tests/gpu/attn.sh)"
  BUILD=$BUILD OUT=$OUT/attn BENCH=0 sh tests/gpu/attn.sh || fail=1
fi

if has scan; then
  echo "== selective scan and conv1d against PyTorch (tests/gpu/scan_check.py)"
  mkdir -p "$BUILD/gpu-scan"
  $NVCC -O2 -arch=$CUDA_ARCH -std=c++17 $INC -o "$BUILD/scan_test" \
    tests/gpu/scan_test.cu "$BUILD/libmdlrt.a" $LIBS || exit 1
  "$BUILD/scan_test" "$BUILD/gpu-scan" > "$OUT/scan_test.log" 2>&1 || fail=1
  python3 tests/gpu/scan_check.py "$BUILD/gpu-scan" > "$OUT/scan_check.log" \
    2>&1 || fail=1
  tail -3 "$OUT/scan_check.log"
fi

if has models && [ -x "$BUILD/mdlc" ] && [ -f tests/gpu/models.sh ]; then
  echo "== models: predicted against measured peak"
  BUILD=$BUILD OUT=$OUT sh tests/gpu/models.sh || fail=1
fi
for t in v2 graph placement learns; do
  has $t && [ -x "$BUILD/mdlc" ] &&
    { BUILD=$BUILD OUT=$OUT sh tests/gpu/$t.sh || fail=1; }
done
[ $fail = 0 ] && echo "gpu tests: PASS" || echo "gpu tests: FAIL"
exit $fail
