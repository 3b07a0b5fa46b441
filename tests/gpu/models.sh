#!/bin/sh
# tests/gpu/models.sh: `mdlc --run` on every example under every precision
# policy (and inference, optimizer-in-backward, the arena), on the GPU:
# the measured pool peak must equal the predicted peak to the byte. Then
# `--check` (every step's loss against the CPU reference) on the small
# examples. Prints a table last; logs in $OUT/models.log.
BUILD=${BUILD:-build}
MDLC=${MDLC:-$BUILD/mdlc}
OUT=${OUT:-$BUILD/gpu-out}
STEPS=${STEPS:-3}
LOG=$OUT/models.log
TABLE=$OUT/models.txt
: > "$LOG"
printf "%-14s %-12s %14s %14s %6s %10s  %s\n" model variant predicted \
  measured diff "median ms" losses > "$TABLE"
fail=0
run() { # model variant args...
  m=$1 v=$2
  shift 2
  echo "== $m $v: $MDLC --run --steps $STEPS $*" >> "$LOG"
  timeout 300 "$MDLC" --run --json --steps "$STEPS" "$@" > "$OUT/one.json" \
    2>> "$LOG"
  rc=$?
  cat "$OUT/one.json" >> "$LOG"
  python3 - "$OUT/one.json" "$m" "$v" "$rc" >> "$TABLE" <<'PY' || fail=1
import json, sys
path, m, v, rc = sys.argv[1:5]
try:
    r = json.load(open(path))
except Exception:
    print("%-14s %-12s failed, exit %s" % (m, v, rc)); sys.exit(1)
arena = r["alloc"] == "arena"
meas = r["arena_device_used"] if arena else r["measured_peak"]
pred = r["arena_bytes"] + r["persistent_bytes"] if arena else r["predicted_peak"]
diff = meas - pred
losses = " ".join("%.5g" % x if x is not None else "-" for x in r["losses"])
chk = "" if "check" not in r else ("  check ok" if r["check"] else "  CHECK FAILED")
print("%-14s %-12s %14d %14d %6d %10.3f  %s%s" % (m, v, pred, meas, diff,
      r["median_step_ms"], losses, chk))
sys.exit(0 if (r["match"] and int(rc) == 0) else 1)
PY
}
for ex in examples/*.mdl; do
  m=$(basename "$ex" .mdl)
  for p in fp32 bf16_mixed fp16_mixed bf16 fp16 bf16_master fp16_master; do
    run "$m" "$p" --precision "$p" "$ex"
  done
  run "$m" infer --infer "$ex"
  run "$m" oib_adam --optimizer-in-backward --optimizer adam "$ex"
  run "$m" arena --alloc arena "$ex"
done
for ex in examples/tiny.mdl examples/mlp.mdl; do
  m=$(basename "$ex" .mdl)
  for p in fp32 bf16_mixed; do
    run "$m" "check_$p" --check --precision "$p" "$ex"
  done
done
cat "$TABLE"
exit $fail
