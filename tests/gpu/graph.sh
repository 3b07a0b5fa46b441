#!/bin/sh
# tests/gpu/graph.sh: CUDA graph replay changes nothing but the time. Every
# example runs 6 steps twice, once with steps 2-6 replayed as a CUDA graph
# and once every step eager (--eager); the losses must be identical at every
# step, bit for bit (the same kernels on the same data in the same order:
# dropout's masks and Adam's corrections come from the step's variables on
# the device, which the graph copies anew at each replay). With --data fresh
# the inputs change between replays; mlp and gpt2 have dropout, mlp and
# operator_cnn use adam, gpt2 adamw. Each replayed run must also hold in
# the pool exactly the planned persistent bytes + arena, and its first
# (eager) step must measure the predicted peak. Prints a table; logs in
# $OUT/graph.log.
BUILD=${BUILD:-build}
MDLC=${MDLC:-$BUILD/mdlc}
OUT=${OUT:-$BUILD/gpu-out}
LOG=$OUT/graph.log
: > "$LOG"
fail=0
one() { # name args...
  n=$1
  shift
  for mode in replay eager; do
    extra=""
    [ $mode = eager ] && extra=--eager
    echo "== $n $mode: $MDLC --run --json --steps 6 $extra $*" >> "$LOG"
    timeout 300 "$MDLC" --run --json --steps 6 $extra "$@" \
      > "$OUT/graph_$mode.json" 2>> "$LOG" || echo "exit $?" >> "$LOG"
    cat "$OUT/graph_$mode.json" >> "$LOG"
  done
  python3 - "$OUT/graph_replay.json" "$OUT/graph_eager.json" "$n" <<'PY' \
    || fail=1
import json, sys
try:
    a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
except Exception as e:
    print("%-26s FAIL (no result: %s)" % (sys.argv[3], e)); sys.exit(1)
same = a["losses"] == b["losses"]
hold = a["persistent_bytes"] + a["arena_bytes"]
ok = (same and a["match"] and b["match"] and a["replay_from_step"] == 2
      and b["replay_from_step"] == 0 and a["replay_pool_bytes"] == hold)
print("%-26s %s  losses %s; pool during replay %d = planned %d; "
      "median %.3f ms replayed, %.3f ms eager" % (
      sys.argv[3], "ok  " if ok else "FAIL", "identical" if same else
      "DIFFER %s vs %s" % (a["losses"], b["losses"]), a["replay_pool_bytes"],
      hold, a["median_step_ms"], b["median_step_ms"]))
sys.exit(0 if ok else 1)
PY
}
echo "== CUDA graph replay against eager steps"
for ex in examples/*.mdl; do
  one "$(basename "$ex" .mdl) fresh" --data fresh "$ex"
done
one "mlp bf16_mixed oib" --precision bf16_mixed --optimizer-in-backward \
  examples/mlp.mdl
one "gpt2_small bf16" --precision bf16 examples/gpt2_small.mdl
[ $fail = 0 ] && echo "graph replay: PASS" || echo "graph replay: FAIL"
exit $fail
