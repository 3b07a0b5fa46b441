#!/bin/sh
# tests/sh/cpu_bitident.sh: the CPU executor's results do not depend on
# how memory is planned. Final parameters, master weights, running
# statistics and optimizer state (`-o FILE` dumps them bit for bit) after
# three steps of a small GPT with dropout in attention and in the MLP:
#   1. --alloc arena = --alloc pool;
#   2. every layer a checkpointed segment = no checkpoints (the recomputed
#      forward redraws the same dropout masks), for fp32 and bf16_mixed;
#   3. a CNN with batchnorm (whose running statistics are updated once per
#      step, not again by the recomputation) checkpointed = not;
#   4. --optimizer-in-backward = updates after the backward pass (each
#      update still follows the last reader of its parameter).
# The runs differ in their peaks; each must measure its own exactly.
MDLC=${MDLC:-${BUILD:-build}/mdlc}
T=$(mktemp -d "${TMPDIR:-/tmp}/cpu_bitident.XXXXXX") || exit 2
trap 'rm -rf "$T"' EXIT
fails=0

cat >"$T/gpt.mdl" <<'MDL'
let batch = 2
let seq   = 5
let d     = 8
let heads = 2
let vocab = 7
block layer(x) {
  a = attention(layernorm(x), heads = heads, causal = true, dropout = 0.2)
  x = x + a
  m = linear(dropout(gelu(linear(layernorm(x), 4 * d)), p = 0.3), d)
  return x + m
}
model gpt {
  input tokens  : i32[batch, seq]
  input targets : i32[batch, seq]
  h = embedding(tokens, vocab, d) + param(f32[seq, d])
  h = repeat 2 CKPT layer(h)
  loss cross_entropy(linear(layernorm(h), vocab), targets)
}
train { optimizer adamw }
MDL
cat >"$T/cnn.mdl" <<'MDL'
block unit(x) {
  return dropout(relu(batchnorm(conv2d(x, 4, 3, pad = 1))), p = 0.25)
}
model cnn {
  input img : f32[2, 3, 6, 6]
  input y   : i32[2]
  h = repeat 2 CKPT unit(img)
  loss cross_entropy(linear(global_avgpool(h), 3), y)
}
train { optimizer momentum }
MDL
for m in gpt cnn; do
  sed 's/CKPT/checkpoint/' "$T/$m.mdl" >"$T/${m}_ckpt.mdl"
  sed 's/CKPT//' "$T/$m.mdl" >"$T/${m}_plain.mdl"
done

# run NAME ARGS...: three steps, state dumped to $T/NAME.state.
run() {
  name=$1
  shift
  if ! "$MDLC" --run --device cpu --steps 3 --lr 0.01 -o "$T/$name.state" \
      "$@" >"$T/$name.out" 2>&1; then
    echo "$name: mdlc failed:"
    head -n 20 "$T/$name.out"
    fails=$((fails + 1))
  fi
  grep -q 'difference 0 B' "$T/$name.out" || {
    echo "$name: measured peak differs from predicted"
    fails=$((fails + 1))
  }
}

# same A B WHAT: the two dumps are identical (and not empty).
same() {
  if [ -s "$T/$1.state" ] && cmp -s "$T/$1.state" "$T/$2.state"; then
    echo "ok: $3"
  else
    echo "FAIL: $3 ($1 vs $2)"
    fails=$((fails + 1))
  fi
}

run pool "$T/gpt_plain.mdl"
run arena --alloc arena "$T/gpt_plain.mdl"
same pool arena "arena = pool"
run ckpt "$T/gpt_ckpt.mdl"
same pool ckpt "checkpointed = unsegmented (fp32)"
run pool16 --precision bf16_mixed "$T/gpt_plain.mdl"
run ckpt16 --precision bf16_mixed --alloc arena "$T/gpt_ckpt.mdl"
same pool16 ckpt16 "checkpointed = unsegmented (bf16_mixed)"
run cnn_plain "$T/cnn_plain.mdl"
run cnn_ckpt "$T/cnn_ckpt.mdl"
same cnn_plain cnn_ckpt "checkpointed = unsegmented (batchnorm, dropout)"
run inbwd --optimizer-in-backward "$T/gpt_ckpt.mdl"
same ckpt inbwd "--optimizer-in-backward = after the backward pass"

# The checkpointed plan really is a different plan.
p1=$(sed -n 's/^peak: predicted \([0-9]*\) B.*/\1/p' "$T/pool.out")
p2=$(sed -n 's/^peak: predicted \([0-9]*\) B.*/\1/p' "$T/ckpt.out")
if [ -z "$p1" ] || [ "$p1" = "$p2" ]; then
  echo "FAIL: checkpointing did not change the peak ($p1 vs $p2)"
  fails=$((fails + 1))
fi
exit $((fails != 0))
