#!/bin/sh
# tests/sh/cuda_link.sh: the CUDA path builds, without a GPU.
# Compiles the runtime (runtime/*.cu) into libmdlrt.a with nvcc, then emits
# the step of every example under every precision policy (and an inference
# and an optimizer-in-backward variant) and compiles and links each with
# nvcc. Exit 0 only if all of it builds; 77 (skip) if there is no nvcc.
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
MDLC=${MDLC:-build/mdlc}
[ -x "$NVCC" ] || command -v "$NVCC" >/dev/null || exit 77
T=$(mktemp -d /tmp/cuda_link.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
INC="-Iruntime -I/usr/include/x86_64-linux-gnu"
LIBS="-L/usr/local/cuda/lib64 -L/usr/lib/x86_64-linux-gnu -lcublas -lcublasLt -lcudnn"
for f in runtime/*.cu; do
  "$NVCC" -O0 -arch=sm_90 -std=c++17 $INC -Xcompiler -Wall,-Werror \
    -c -o "$T/$(basename "$f" .cu).o" "$f" || { echo "runtime: $f"; exit 1; }
done
ar rcs "$T/libmdlrt.a" "$T"/*.o || exit 1
fail=0 n=0
ROOT=$(pwd)
for ex in examples/*.mdl; do
  name=$(basename "$ex" .mdl)
  units=""
  for p in fp32 fp16 bf16 fp16_mixed bf16_mixed fp16_master bf16_master \
           infer oib; do
    case $p in
      infer) args="--infer" ;;
      oib) args="--optimizer-in-backward --optimizer adam" ;;
      *) args="--precision $p" ;;
    esac
    if ! "$MDLC" $args --emit-cuda "$T/${name}_$p.cu" "$ex" 2>"$T/err"; then
      echo "FAIL emit: $ex $args"; cat "$T/err"; fail=1; continue
    fi
    units="$units ${name}_$p.cu"
  done
  # one nvcc for the example's units (its start-up dominates), then links
  if ! (cd "$T" && "$NVCC" -O0 -arch=sm_90 -std=c++17 -I"$ROOT/runtime" \
          -Xcompiler -Wall,-Werror -c $units) 2>"$T/err"; then
    echo "FAIL nvcc: $ex"; head -20 "$T/err"; fail=1; continue
  fi
  for u in $units; do
    if ! "$NVCC" -arch=sm_90 -o "$T/prog" "$T/${u%.cu}.o" "$T/libmdlrt.a" \
         $LIBS 2>"$T/err"; then
      echo "FAIL link: $u"; head -20 "$T/err"; fail=1; continue
    fi
    n=$((n + 1))
  done
done
echo "cuda_link: $n programs built"
exit $fail
