#!/bin/sh
# tools/gen_rollout.sh STEPS: the body of examples/rollout.mdl's model, one
# shared-block call and one output per step (a repeat keeps only its last
# state; a trajectory keeps them all).
n=${1:-500}
i=0
while [ "$i" -lt "$n" ]; do
  printf '  u = step(u)\n  output u\n'
  i=$((i + 1))
done
