#!/bin/sh
# bench/run.sh: every CPU-side benchmark (`make bench`). GPU benchmarks run
# on the device machine: see bench/RESULTS.md.
set -eu
export MDLC=${MDLC:-${BUILD:-build}/mdlc}
for b in bench/peak_scale.sh bench/placement.sh; do
  [ -f "$b" ] || continue
  echo "== $b"
  sh "$b"
done
