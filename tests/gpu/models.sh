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
. tests/gpu/run_one.lib
# The version-1 examples; the version-2 ones (gpt2_small, llama, mamba,
# rollout) are tests/gpu/v2.sh's.
for m in ${MODELS:-tiny mlp resnet18 unet operator_cnn gpt2_naive}; do
  ex=examples/$m.mdl
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
