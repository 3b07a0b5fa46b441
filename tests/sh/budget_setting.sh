#!/bin/sh
# tests/sh/budget_setting.sh: --budget SIZE as a setting. Alone it is the
# placement report; with --peak, --run, --emit-cuda or --timeline that
# action runs on the placed plan. Checked on a chain of 8 residual layers
# whose parameters are small against its activations (so placement has
# something to do): the placed peak --budget reports is the peak --peak
# prints with the same budget, the peak the CPU executor measures running
# it, the peak the timeline draws, and the emitted program recomputes.
# Sizes written with a decimal fraction and in any case on the command
# line mean what the same literal means in the train block.
MDLC=${MDLC:-${BUILD:-build}/mdlc}
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
T=$(mktemp -d "${TMPDIR:-/tmp}/bset.XXXXXX")
trap 'rm -rf "$T"' EXIT

cat >"$T/chain.mdl" <<'MDL'
let batch = 1024
let d = 32
block layer(x) {
  h = relu(linear(x, 4 * d))
  return x + linear(h, d)
}
model chain {
  input x : f32[batch, d]
  input y : f32[batch, d]
  h = repeat 8 layer(x)
  loss mse(h, y)
}
train { optimizer sgd  workspace 0 }
MDL
m=$T/chain.mdl
b=3.75MiB            # 3932160 B
base=$("$MDLC" --peak "$m" | sed -n 's/^peak: \([0-9]*\) B.*/\1/p')
out=$("$MDLC" --budget $b "$m") || fail "--budget $b: exit $?"
placed=$(echo "$out" | sed -n 's/^placed: \([0-9]*\) segments*, peak \([0-9]*\) B.*/\2/p')
segs=$(echo "$out" | sed -n 's/^placed: \([0-9]*\) segment.*/\1/p')
[ -n "$placed" ] && [ "$placed" -le 3932160 ] && [ "$placed" -lt "$base" ] ||
  fail "--budget $b: placed '$placed' (unplaced $base): $out"
[ "${segs:-0}" -gt 0 ] || fail "--budget $b placed no segment"

# the same size in other spellings, and in the train block
for s in 3932160 3.75mib 3.75MIB 3840KiB 0.003662109375GiB; do
  p=$("$MDLC" --budget $s "$m" | sed -n 's/^placed: .* peak \([0-9]*\) B.*/\1/p')
  [ "$p" = "$placed" ] || fail "--budget $s: placed '$p', want $placed"
done
sed 's/^train {/train { budget 3.75MiB /' "$m" >"$T/keyed.mdl"
p=$("$MDLC" --peak "$T/keyed.mdl" | sed -n 's/^peak: \([0-9]*\) B.*/\1/p')
[ "$p" = "$placed" ] || fail "train budget 3.75MiB: peak '$p', want $placed"

# --peak --budget: the placed plan, and says so
out=$("$MDLC" --peak --budget $b "$m") || fail "--peak --budget: exit $?"
echo "$out" | grep -q "^peak: $placed B" || fail "--peak --budget: $out"
echo "$out" | grep -q "checkpoints placed for the budget 3932160 B (3.75 MiB): $segs segment" ||
  fail "--peak --budget does not say what was placed"
"$MDLC" --peak --budget $b --json "$m" | grep -q "\"peak_bytes\": $placed," ||
  fail "--peak --budget --json"
# the order of the options does not matter
"$MDLC" --budget $b --peak "$m" | grep -q "^peak: $placed B" ||
  fail "--budget before --peak"

# --run --budget on the CPU executor: it runs the placed plan, measured ==
# predicted == the placement's peak
out=$("$MDLC" --run --device cpu --budget $b "$m") || fail "--run --budget: exit $?"
echo "$out" | grep -q "peak predicted $placed B, measured $placed B" ||
  fail "--run --device cpu --budget: $out"
j=$("$MDLC" --run --device cpu --budget $b --json "$m")
echo "$j" | grep -q "\"measured_peak\": $placed," || fail "--run --budget --json: $j"

# --emit-cuda --budget: the program recomputes the segments; without, not
"$MDLC" --emit-cuda "$T/p.cu" --budget $b "$m" || fail "--emit-cuda --budget: exit $?"
"$MDLC" --emit-cuda "$T/q.cu" "$m" || fail "--emit-cuda: exit $?"
n=$(grep -c "recomputation of" "$T/p.cu")
[ "$n" -gt 0 ] || fail "--emit-cuda --budget: no recomputation in the program"
[ "$(grep -c "recomputation of" "$T/q.cu")" = 0 ] || fail "plain program recomputes"

# --timeline --budget: the picture is of the placed plan
"$MDLC" --timeline "$T/t.svg" --budget $b --peak "$m" >/dev/null 2>&1 ||
  fail "--timeline --budget: exit $?"
grep -q "peak $placed B" "$T/t.svg" || fail "--timeline --budget: not the placed peak"

[ $fails -eq 0 ] || exit 1
echo "budget_setting: --budget $b placed $placed B (unplaced $base B, $segs segments): --peak, --run --device cpu, --emit-cuda and --timeline agree"
