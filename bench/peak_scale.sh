#!/bin/sh
# bench/peak_scale.sh: how `mdlc --peak` scales with the number of ops.
# Generates a residual MLP of N blocks (linear, relu, add: 3 ops a block,
# plus the loss) and times --peak on it; prints ops against seconds and
# seconds per 1,000 ops, which stays flat when the time is linear.
# Target (issue part 2): 100,000 ops in under a second on 2 cores.
set -eu
MDLC=${MDLC:-build/mdlc}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
printf '%10s %10s %12s %16s\n' ops instrs seconds "s per 1k ops"
for n in 1000 3333 10000 33333; do
  f=$T/chain$n.mdl
  cat >"$f" <<MDL
let batch = 4
let d = 64
block layer(x) {
  h = relu(linear(x, d))
  return x + h
}
model chain {
  input x : f32[batch, d]
  input y : f32[batch, d]
  h = repeat $n layer(x)
  loss mse(h, y)
}
train { optimizer adamw }
MDL
  t0=$(date +%s.%N)
  "$MDLC" --peak --json "$f" >"$T/out.json"
  t1=$(date +%s.%N)
  ins=$(sed -n 's/.*"instructions": \([0-9]*\).*/\1/p' "$T/out.json")
  ops=$((3 * n + 1))
  awk -v o=$ops -v i="$ins" -v a="$t0" -v b="$t1" \
    'BEGIN { s = b - a; printf "%10d %10d %12.3f %16.4f\n", o, i, s, s / o * 1000 }'
done
