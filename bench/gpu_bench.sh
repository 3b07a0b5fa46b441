#!/bin/sh
# bench/gpu_bench.sh: mdlc against eager PyTorch on the four benchmark cases
# (resnet18 fp32 and bf16_mixed, gpt2_small bf16_mixed, operator_cnn fp16),
# in one call on a GPU machine; prints a table of ratios last.
#
#   BUILD=build sh bench/gpu_bench.sh build   # emit + compile the programs
#                                            # (needs nvcc, not a GPU)
#   BUILD=build sh bench/gpu_bench.sh run     # on the GPU: time both, table
#
# mdlc: `mdlc --emit-cuda` (the program `mdlc --run` builds), compiled with
# nvcc against $BUILD/libmdlrt.a, run for $STEPS steps: step 1 eager, with
# every allocation and free from the pool (its high-water mark must equal
# the prediction, PREDICTED_PEAK in the program, to the byte), steps 2..
# replayed as a CUDA graph over the planned arena (EAGER=1: eager too, with
# their allocations and frees); step time is the median of steps 2.. (CUDA
# events around the whole step). PyTorch:
# bench/torch_models.py, the same model, batch and precision, its peak
# torch.cuda.memory_stats()["requested_bytes.all.peak"], timed three ways:
# cudnn.benchmark (autotuned, deterministic or not), PyTorch's defaults, and
# deterministic algorithms only (mdlc's own rule). Each program runs
# twice: "2 runs" says whether both printed the same losses at every step
# (to the 9 digits printed; the run fails if not). With PROF=1 each
# program runs once more with MDLRT_PROF=1 (time per kind of op, to
# $OUT/prof_CASE.txt). CASES overrides the list ("model:precision ...").
BUILD=${BUILD:-build}
MDLC=${MDLC:-$BUILD/mdlc}
OUT=${OUT:-$BUILD/bench-out}
STEPS=${STEPS:-10}
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
CASES=${CASES:-"resnet18:fp32 resnet18:bf16_mixed gpt2_small:bf16_mixed operator_cnn:fp16"}
DIR=$BUILD/bench
mkdir -p "$DIR" "$OUT"

build() {
  for c in $CASES; do
    m=${c%%:*} p=${c#*:} ws=
    case $p in *:*) ws=${p#*:} p=${p%%:*} ;; esac
    n=${m}_$p${ws:+_ws$ws}
    "$MDLC" --precision "$p" ${ws:+--workspace $ws} \
      --emit-cuda "$DIR/$n.cu" "examples/$m.mdl" || exit 1
    "$NVCC" -O2 -arch=sm_90 -std=c++17 -Iruntime \
      -I/usr/include/x86_64-linux-gnu -o "$DIR/$n" "$DIR/$n.cu" \
      "$BUILD/libmdlrt.a" -L/usr/local/cuda/lib64 \
      -L/usr/lib/x86_64-linux-gnu -lcublas -lcublasLt -lcudnn || exit 1
  done
}

run() {
  fail=0
  : > "$OUT/bench.txt"
  for c in $CASES; do
    m=${c%%:*} p=${c#*:} ws=
    case $p in *:*) ws=${p#*:} p=${p%%:*} ;; esac
    n=${m}_$p${ws:+_ws$ws}
    prog=$DIR/$n
    pred=$(sed -n 's/^#define PREDICTED_PEAK \([0-9]*\)ll$/\1/p' "$prog.cu")
    eager=
    [ "${EAGER:-0}" = 1 ] && eager=--eager
    "$prog" --steps "$STEPS" $eager > "$OUT/mdlc_$n.log" 2>&1 || fail=1
    # determinism: a second run of the same program prints the same losses
    "$prog" --steps "$STEPS" $eager > "$OUT/mdlc_${n}_again.log" 2>&1 ||
      fail=1
    l1=$(awk '/^mdlrt: step/ {print $5}' "$OUT/mdlc_$n.log")
    l2=$(awk '/^mdlrt: step/ {print $5}' "$OUT/mdlc_${n}_again.log")
    if [ -n "$l1" ] && [ "$l1" = "$l2" ]; then det=same; else det=DIFF; fail=1; fi
    if [ "${PROF:-0}" = 1 ]; then
      MDLRT_PROF=1 "$prog" --steps 4 > "$OUT/prof_$n.txt" 2>&1
    fi
    for tm in benchmark default deterministic; do
      [ -f "$OUT/torch_${m}_${p}_$tm.log" ] ||
        python3 bench/torch_models.py "$m" "$p" "$STEPS" $tm \
          > "$OUT/torch_${m}_${p}_$tm.log" 2>&1 || fail=1
    done
    python3 - "$m" "$p${ws:+/ws$ws}" "$pred" "$OUT/mdlc_$n.log" \
      "$OUT/torch_${m}_$p" "$det" >> "$OUT/bench.txt" <<'PY' || fail=1
import re, sys
m, p, pred, ml, tl, det = sys.argv[1:7]
pred = int(pred)
steps = [l.split() for l in open(ml) if l.startswith("mdlrt: step")]
ms = sorted(float(s[6]) for s in steps[1:] or steps)
peaks = [int(s[8]) for s in steps if s[-1] != "replay"]
loss = float(steps[-1][4]) if steps else float("nan")
t = {}
for tm in ("benchmark", "default", "deterministic"):
    r = [l.split() for l in open("%s_%s.log" % (tl, tm)) if " median_ms " in l]
    t[tm] = r[-1] if r else None
if not steps or not t["benchmark"]:
    print("%-13s %-11s failed" % (m, p)); sys.exit(1)
treq = int(t["benchmark"][6])
mms = ms[len(ms) // 2]
ok = all(x == pred for x in peaks)
cols = []
for tm in ("benchmark", "default", "deterministic"):
    if t[tm]:
        tms = float(t[tm][4])
        cols.append("%8.3f %5.2f" % (tms, mms / tms))
    else:
        cols.append("%8s %5s" % ("failed", "-"))
print("%-13s %-11s %8.3f %s  %13d %5s %13d %5.2f %-8s %s" % (
    m, p, mms, " ".join(cols), pred,
    "=" if ok else "DIFF %d" % (max(peaks) - pred), treq, pred / treq,
    "%.4g" % loss, det))
sys.exit(0 if ok and all(t.values()) else 1)
PY
  done
  echo "torch ms and mdlc/torch for each of PyTorch's algorithm choices:"
  echo "bench = cudnn.benchmark, dflt = defaults, det = deterministic only"
  printf "%-13s %-11s %8s %8s %5s %8s %5s %8s %5s  %13s %5s %13s %5s %-8s %s\n" \
    case precision "mdlc ms" bench ratio dflt ratio det ratio "mdlc peak B" \
    meas "torch req B" ratio "loss" "2 runs"
  cat "$OUT/bench.txt"
  return $fail
}

case ${1:-run} in
  build) build ;;
  run) run ;;
  *) echo "usage: $0 build|run" >&2; exit 2 ;;
esac
