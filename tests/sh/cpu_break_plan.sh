#!/bin/sh
# tests/sh/cpu_break_plan.sh: the CPU executor checks the plan rather than
# trusting it. MDLC_BREAK_PLAN=1 moves one buffer onto the arena offset of
# another live one; the run must stop with exit 1 and a message naming
# both. Without it the same run passes.
MDLC=${MDLC:-${BUILD:-build}/mdlc}
out=$("$MDLC" --run --device cpu --alloc arena examples/tiny.mdl 2>&1)
rc=$?
if [ "$rc" -ne 0 ]; then
  echo "the intact plan failed (exit $rc):"
  printf '%s\n' "$out"
  exit 1
fi
for alloc in arena pool; do
  out=$(MDLC_BREAK_PLAN=1 "$MDLC" --run --device cpu --alloc $alloc \
    examples/tiny.mdl 2>&1)
  rc=$?
  if [ "$rc" -ne 1 ] ||
     ! printf '%s\n' "$out" | grep -q "overlaps live buffer '"; then
    echo "--alloc $alloc: broken plan not caught (exit $rc):"
    printf '%s\n' "$out"
    exit 1
  fi
  printf '%s\n' "$out" | grep 'plan check failed'
done
