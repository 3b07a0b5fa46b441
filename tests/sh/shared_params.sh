#!/bin/sh
# Shared parameters (memory.md, "Shared parameters"): a tied weight and a
# shared block's parameters are one parameter each.
#  1. counted once: a tied 5x4 embedding/head and a shared block of one
#     linear(4 -> 4) called three times, counted by hand;
#  2. ZeRO 3 gathers a shared parameter once per pass (forward, backward);
#  3. --optimizer-in-backward updates it once its gradient is complete: the
#     losses of 4 Adam steps equal those without it, to the printed digit.
set -u
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
cat >"$T/tied.mdl" <<'MDL'
let batch = 4
shared block mix(x) {
  return x + linear(x, 4)
}
model tied {
  input ids : i32[batch, 3]
  input t   : i32[batch, 3]
  w = param(f32[5, 4])
  h = mix(mix(mix(embedding(ids, 5, 4, weight = w))))
  loss cross_entropy(linear(h, 5, bias = false, weight = w), t)
}
MDL
# 1: w 5*4 = 20, the shared linear 4*4 + 4 = 20: 40 (untied, unshared: 100)
n=$("$MDLC" --peak "$T/tied.mdl" | sed -n 's/^parameters: //p')
if [ "$n" != 40 ]; then
  echo "parameters: $n, want 40 (20 tied + 20 shared)"; fails=$((fails + 1))
fi
# 2
g=$("$MDLC" --dump-after=arena --gpus 2 --zero 3 "$T/tied.mdl" |
  grep -c '"w@gathered')
if [ "$g" != 2 ]; then
  echo "ZeRO 3: $g gathered copies of w, want 2 (one per pass)"
  fails=$((fails + 1))
fi
# 3
for o in "" --optimizer-in-backward; do
  "$MDLC" --run --device cpu --steps 4 --optimizer adam $o "$T/tied.mdl" |
    awk '/^step/ {print $4}' > "$T/l$o"
done
if ! cmp -s "$T/l" "$T/l--optimizer-in-backward" || [ ! -s "$T/l" ]; then
  echo "losses differ with --optimizer-in-backward:"; paste "$T/l" "$T/l--optimizer-in-backward"
  fails=$((fails + 1))
fi
[ "$fails" = 0 ]
