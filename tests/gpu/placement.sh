#!/bin/sh
# tests/gpu/placement.sh: checkpoint placement on the GPU (make gpu-test).
# For each case, `mdlc --run --json --steps 2` without a budget and with
# the model's train block given `budget SIZE` (placement then runs in the
# pipeline, so --run executes the placed plan; --budget itself is an action): the placed run's measured pool peak must equal its predicted
# peak and be within the budget, and the losses of the two runs must be
# identical (recomputation changes no value: dropout draws the same mask).
# Losses are compared as the JSON strings the runner prints (%.9g, which
# round-trips a float32 exactly; if the runner's loss is wider than f32,
# equal strings mean equal to 9 significant digits only).
# Logs in $OUT/placement.log.
BUILD=${BUILD:-build}
MDLC=${MDLC:-$BUILD/mdlc}
OUT=${OUT:-$BUILD/gpu-out}
LOG=$OUT/placement.log
mkdir -p "$OUT"
: >"$LOG"
fail=0
case_() { # model budget-bytes
  m=$1 b=$2
  timeout 600 "$MDLC" --run --json --steps 2 "$m" >"$OUT/p0.json" 2>>"$LOG"
  r0=$?
  sed "s/^train {/train {\n  budget $b/" "$m" >"$OUT/placed.mdl"
  grep -q "budget $b" "$OUT/placed.mdl" || { echo "FAIL $m: no train block"; fail=1; return; }
  timeout 600 "$MDLC" --run --json --steps 2 "$OUT/placed.mdl" \
    >"$OUT/p1.json" 2>>"$LOG"
  r1=$?
  "$MDLC" --budget "$b" "$m" >>"$LOG" 2>&1
  cat "$OUT/p0.json" "$OUT/p1.json" >>"$LOG"
  python3 - "$OUT/p0.json" "$OUT/p1.json" "$m" "$b" "$r0" "$r1" <<'PY' || fail=1
import json, re, sys
p0, p1, m, b, r0, r1 = sys.argv[1:7]
b = int(b)
def losses(path):
    # the loss strings exactly as printed, not re-parsed floats
    t = open(path).read()
    return re.search(r'"losses": \[([^\]]*)\]', t).group(1).replace(" ", "")
try:
    a, c = json.load(open(p0)), json.load(open(p1))
except Exception as e:
    print(f"FAIL {m} budget {b}: no JSON ({e}); exit {r0}/{r1}")
    sys.exit(1)
ok = (r1 == "0" and c["measured_peak"] == c["predicted_peak"] <= b
      and losses(p0) == losses(p1) and c["predicted_peak"] < a["predicted_peak"])
print(f"{'PASS' if ok else 'FAIL'} {m} budget {b}: peak without "
      f"{a['predicted_peak']} (measured {a['measured_peak']}), placed "
      f"predicted {c['predicted_peak']} measured {c['measured_peak']}; "
      f"losses {losses(p0)} / {losses(p1)}")
sys.exit(0 if ok else 1)
PY
}
case_ examples/gpt2_small.mdl $((6 << 30))
# operator_cnn: 5/8 of its unsegmented peak needs several segments
base=$("$MDLC" --peak examples/operator_cnn.mdl | sed -n 's/^peak: \([0-9]*\) B.*/\1/p')
case_ examples/operator_cnn.mdl $((base * 5 / 8))
[ $fail = 0 ] && echo "placement on the GPU: PASS" || echo "placement on the GPU: FAIL"
exit $fail
