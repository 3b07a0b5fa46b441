#!/bin/sh
# tests/sh/device_memory.sh: the device memory (--device-memory SIZE,
# --gpu NAME, the train key `device_memory`) holds for every action: the
# step's peak plus the CUDA context estimate (640 MiB, 671088640 B) must
# fit into it. Each answer is checked another way:
#   --max-batch SIZE with a device of 512 MiB + 640 MiB gives the answers
#     of --max-batch 512MiB (the smaller limit), and at the batch found
#     --peak with that device fits while batch + 1 does not;
#   --budget larger than the device: the placed peak plus the context fits
#     the device, and equals --budget (device - context)'s placed peak;
#   the train key is the command line's --device-memory, and the command
#     line wins over it; --gpu T4 is 16 GiB, --device-memory overrides it;
#   --run and --emit-cuda refuse a device the step does not fit (exit 1,
#     the sizes named) and run on one it fits.
MDLC=${MDLC:-${BUILD:-build}/mdlc}
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
T=$(mktemp -d "${TMPDIR:-/tmp}/devmem.XXXXXX")
trap 'rm -rf "$T"' EXIT
ctx=671088640
ex=examples/operator_cnn.mdl
room=536870912                # 512 MiB
dev=$((room + ctx))           # 1152 MiB: 1207959552 B

# --max-batch: the device's limit, not the larger size asked
a=$("$MDLC" --max-batch 4GiB --device-memory 1152MiB $ex) || fail "--max-batch with a device: exit $?"
b=$("$MDLC" --max-batch 512MiB $ex) || fail "--max-batch 512MiB: exit $?"
[ "$(echo "$a" | head -n 2)" = "$(echo "$b" | head -n 2)" ] ||
  fail "--max-batch 4GiB on a 1152MiB device differs from --max-batch 512MiB: $a / $b"
echo "$a" | grep -q "less the CUDA context estimate $ctx B (640.00 MiB) = $room B" ||
  fail "--max-batch does not say it fitted into the device: $a"
n=$(echo "$a" | sed -n 's/^without checkpoints: max batch \([0-9]*\),.*/\1/p')
m=$(echo "$a" | sed -n 's/^with checkpoint placement: max batch \([0-9]*\),.*/\1/p')
"$MDLC" --peak -D batch=$n --device-memory $dev $ex >/dev/null ||
  fail "batch $n does not fit the device"
"$MDLC" --peak -D batch=$((n + 1)) --device-memory $dev $ex >/dev/null &&
  fail "batch $((n + 1)) fits the device too"
"$MDLC" --peak -D batch=$m --budget 8GiB --device-memory $dev $ex >/dev/null ||
  fail "placed batch $m does not fit the device"
"$MDLC" --peak -D batch=$((m + 1)) --budget 8GiB --device-memory $dev $ex \
  >/dev/null 2>&1 && fail "placed batch $((m + 1)) fits the device too"
j=$("$MDLC" --max-batch 4GiB --device-memory $dev --json $ex)
echo "$j" | grep -q "\"device_memory\": $dev, \"context_estimate\": $ctx, \"limit\": $room" ||
  fail "--max-batch --json: $j"

# --budget above the device: placed for the device less the context
out=$("$MDLC" --budget 1.5GiB --device-memory $dev $ex) || fail "--budget with a device: exit $?"
p=$(echo "$out" | sed -n 's/^placed: .* peak \([0-9]*\) B.*/\1/p')
want=$("$MDLC" --budget $room $ex | sed -n 's/^placed: .* peak \([0-9]*\) B.*/\1/p')
[ -n "$p" ] && [ "$p" = "$want" ] && [ $((p + ctx)) -le $dev ] ||
  fail "--budget 1.5GiB on a $dev B device placed '$p', want $want"
echo "$out" | grep -q "less than the budget: placing for that" || fail "--budget: $out"
echo "$out" | grep -q "with the context: $p B + $ctx B = $((p + ctx)) B .* of the device's $dev B: fits" ||
  fail "--budget does not add the context: $out"
j=$("$MDLC" --budget 1.5GiB --device-memory $dev --json $ex)
echo "$j" | grep -q "\"limit\": $room," || fail "--budget --json: $j"
# the issue's case: 15GB budget on a 15GB device fits with the context
out=$("$MDLC" --budget 15GB --device-memory 15GB examples/gpt2_small.mdl)
p=$(echo "$out" | sed -n 's/^placed: .* peak \([0-9]*\) B.*/\1/p')
[ -n "$p" ] && [ $((p + ctx)) -le 15000000000 ] ||
  fail "gpt2_small --budget 15GB --device-memory 15GB placed '$p'"

# the train key, and the command line over it
sed 's/^train {/train {\n  device_memory 1152MiB/' $ex >"$T/m.mdl"
x=$("$MDLC" --peak --json "$T/m.mdl" | sed -n 's/.*"device_memory": \([0-9]*\).*/\1/p')
[ "$x" = $dev ] || fail "train device_memory: '$x'"
x=$("$MDLC" --peak --json --device-memory 2GiB "$T/m.mdl" | sed -n 's/.*"device_memory": \([0-9]*\).*/\1/p')
[ "$x" = 2147483648 ] || fail "--device-memory over the train key: '$x'"
a=$("$MDLC" --max-batch 4GiB "$T/m.mdl" | head -n 2)
[ "$a" = "$(echo "$b" | head -n 2)" ] || fail "--max-batch with the train key: $a"

# --gpu: its memory; --device-memory wins in any order
x=$("$MDLC" --peak --json --gpu T4 $ex | sed -n 's/.*"device_memory": \([0-9]*\).*/\1/p')
[ "$x" = 17179869184 ] || fail "--gpu T4: '$x'"
x=$("$MDLC" --peak --json --device-memory 15GB --gpu t4 $ex | sed -n 's/.*"device_memory": \([0-9]*\).*/\1/p')
[ "$x" = 15000000000 ] || fail "--device-memory before --gpu: '$x'"
"$MDLC" --peak --gpu T4 $ex | grep -q "^device memory 17179869184 B (16.00 GiB, T4): fits" ||
  fail "--peak --gpu T4 text"

# --run and --emit-cuda on a device too small; then on one large enough
"$MDLC" --run --device cpu --device-memory 640MiB examples/tiny.mdl >"$T/o" 2>"$T/e"
[ $? -eq 1 ] || fail "--run on a 640MiB device: exit $? (want 1)"
grep -q "the step needs 671088916 B (640.00 MiB: peak 276 B + CUDA context estimate $ctx B); the device has $ctx B" "$T/e" ||
  fail "--run refusal: $(cat "$T/e")"
[ -s "$T/o" ] && fail "--run printed a run on a device it does not fit"
"$MDLC" --emit-cuda "$T/p.cu" --device-memory 640MiB examples/tiny.mdl 2>/dev/null
[ $? -eq 1 ] && [ ! -f "$T/p.cu" ] || fail "--emit-cuda on a 640MiB device"
"$MDLC" --run --device cpu --device-memory $((ctx + 276)) examples/tiny.mdl >/dev/null ||
  fail "--run on a device of exactly peak + context: exit $?"

[ $fails -eq 0 ] || exit 1
echo "device_memory: --max-batch, --budget, --peak, --run and --emit-cuda fit peak + $ctx B into the device"
