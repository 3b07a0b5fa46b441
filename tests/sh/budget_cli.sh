#!/bin/sh
# tests/sh/budget_cli.sh: --budget and --max-batch on the examples, each
# answer checked independently with --peak (the plain memory plan):
#   --budget: the placed peak is within the budget; budgets below the
#     smallest reachable peak exit 1; a smaller budget never needs fewer
#     recomputed FLOPs; the reported "without checkpoints" peak is --peak's.
#   --max-batch: without checkpoints, `--peak -D batch=N` fits and
#     `-D batch=N+1` does not; with placement, `--budget SIZE -D batch=M`
#     fits and `-D batch=M+1` does not.
MDLC=${MDLC:-${BUILD:-build}/mdlc}
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

peak_of() { "$MDLC" --peak "$@" | sed -n 's/^peak: \([0-9]*\) B.*/\1/p'; }
placed_of() { sed -n 's/^placed: .* peak \([0-9]*\) B.*/\1/p'; }
flops_of() { sed -n 's/^extra work: \([0-9]*\) FLOPs.*/\1/p'; }

ex=examples/operator_cnn.mdl
base=$(peak_of $ex)
[ -n "$base" ] || { echo "no peak from $MDLC"; exit 1; }
prev=-1
# budgets from the unsegmented peak down, in eighths
for k in 8 7 6 5 4 3; do
  b=$((base * k / 8))
  out=$("$MDLC" --budget $b $ex)
  rc=$?
  if [ $rc -ne 0 ]; then
    echo "$out" | grep -q "cannot fit" || fail "budget $b: exit $rc without saying why"
    continue
  fi
  p=$(echo "$out" | placed_of)
  f=$(echo "$out" | flops_of)
  [ -n "$p" ] && [ "$p" -le "$b" ] || fail "budget $b: placed peak '$p'"
  echo "$out" | grep -q "without checkpoints: peak $base B" ||
    fail "budget $b: base peak differs from --peak ($base)"
  [ "$f" -ge "$prev" ] || fail "budget $b needs $f FLOPs, a larger one $prev"
  prev=$f
done
# far below the parameters and optimizer state: exit 1, categories named
out=$("$MDLC" --budget 1MiB $ex)
[ $? -eq 1 ] || fail "1MiB budget should exit 1"
echo "$out" | grep -q "optimizer state" || fail "1MiB: no breakdown"

# --max-batch, both answers checked with --peak / --budget at N and N+1
size=$((512 * 1024 * 1024))
out=$("$MDLC" --max-batch $size $ex)
n=$(echo "$out" | sed -n 's/^without checkpoints: max batch \([0-9]*\),.*/\1/p')
m=$(echo "$out" | sed -n 's/^with checkpoint placement: max batch \([0-9]*\),.*/\1/p')
[ -n "$n" ] && [ -n "$m" ] || fail "--max-batch output: $out"
[ "$(peak_of -D batch=$n $ex)" -le $size ] || fail "batch $n does not fit"
[ "$(peak_of -D batch=$((n + 1)) $ex)" -gt $size ] || fail "batch $((n+1)) fits too"
"$MDLC" --budget $size -D batch=$m $ex >/dev/null || fail "placed batch $m does not fit"
"$MDLC" --budget $size -D batch=$((m + 1)) $ex >/dev/null && fail "placed batch $((m+1)) fits too"
[ "$m" -ge "$n" ] || fail "placement lowers the max batch ($m < $n)"

# the train block's `budget` places checkpoints in the pipeline: --peak on
# the model with `budget B` written in reports --budget B's placed peak
b=$((base * 5 / 8))
want=$("$MDLC" --budget $b $ex | placed_of)
T=$(mktemp -d "${TMPDIR:-/tmp}/budget.XXXXXX")
sed "s/^train {/train {\n  budget $b/" $ex >"$T/m.mdl"
grep -q "budget $b" "$T/m.mdl" || fail "could not write the train block"
got=$("$MDLC" --peak "$T/m.mdl" | sed -n 's/^peak: \([0-9]*\) B.*/\1/p')
[ -n "$want" ] && [ "$got" = "$want" ] ||
  fail "train-block budget: --peak $got, --budget placed $want"
rm -rf "$T"

# --json: one document with the same figures
j=$("$MDLC" --budget $b --json $ex)
echo "$j" | grep -q "\"peak\": $want," || fail "--budget --json: $j"
echo "$j" | grep -q '"fits": true' || fail "--budget --json fits: $j"
j=$("$MDLC" --budget 1MiB --json $ex)
[ $? -eq 1 ] || fail "--budget 1MiB --json should exit 1"
echo "$j" | grep -q '"smallest_peak": ' || fail "--json: no smallest peak"
j=$("$MDLC" --max-batch $size --json $ex)
echo "$j" | grep -q "\"max_batch\": $m," || fail "--max-batch --json: $j"

[ $fails -eq 0 ] || exit 1
echo "budget_cli: budgets and max batch verified against --peak"
