#!/bin/sh
# tests/gpu/v2.sh: the version-2 operators end to end on the GPU (part of
# `make gpu-test`). Every op through `mdlc --run --check` on small models
# (the zoo of every op, a tiny Llama and a tiny Mamba layer: every loss,
# every gradient of the first step and the final state against the CPU
# reference), then the new examples at full size: predicted == measured
# peak to the byte. Table in $OUT/v2.txt.
BUILD=${BUILD:-build}
MDLC=${MDLC:-$BUILD/mdlc}
OUT=${OUT:-$BUILD/gpu-out}
STEPS=${STEPS:-3}
LOG=$OUT/v2.log
TABLE=$OUT/v2.txt
: > "$LOG"
printf "%-14s %-12s %14s %14s %6s %10s  %s\\n" model variant predicted \
  measured diff "median ms" losses > "$TABLE"
fail=0
. tests/gpu/run_one.lib
for m in zoo llama_tiny mamba_tiny; do
  for p in fp32 bf16_mixed; do
    run "$m" "check_$p" --check --precision "$p" "tests/unit/data/$m.mdl"
  done
done
run zoo check_bf16 --check --precision bf16 tests/unit/data/zoo.mdl
for p in fp32 bf16_mixed bf16 bf16_master; do
  run gpt2_small "$p" --precision "$p" examples/gpt2_small.mdl
done
run gpt2_small oib_adam --optimizer-in-backward --optimizer adam examples/gpt2_small.mdl
sed 's/^  precision bf16_mixed$/  precision bf16_mixed\n  budget 5GiB/' \
  examples/gpt2_small.mdl > "$OUT/gpt2_budget.mdl"
run gpt2_small budget_5GiB "$OUT/gpt2_budget.mdl"
run llama bf16_mixed examples/llama.mdl
run mamba bf16_mixed examples/mamba.mdl
run mamba fp32 --precision fp32 examples/mamba.mdl
run rollout infer_fp16 --infer examples/rollout.mdl
run rollout infer_fp32 --infer --precision fp32 examples/rollout.mdl
cat "$TABLE"
exit $fail
