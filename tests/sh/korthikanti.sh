#!/bin/sh
# GPT-2 small's activation memory per layer against Korthikanti et al. 2022
# ("Reducing Activation Recomputation in Large Transformer Models", eq. 1):
# sbh(34 + 5as/h) bytes in 16-bit with 1-byte dropout masks, dropout at
# the same three places (attention probabilities, after the projection,
# after the MLP). One layer's saved bytes = live bytes after the forward
# of the 2-layer model minus those of the 1-layer model, each without its
# persistent bytes (the extra layer's parameters and optimizer state).
#
# The difference mdlc states, and why: each layernorm also saves its mean
# and rstd, f32, one per row (memory.md), which the paper leaves out:
# 2 layernorms x 2 x 4 B x s x b = 16sb bytes a layer.
#
# The same layer with fused attention (sdpa, the default): the paper's
# 5as^2 b of scores, softmax and its dropout mask are gone (FlashAttention's
# point); sdpa saves q, k, v (the paper's 6sbh), its own output besides the
# projection's transposed copy of it (+2sbh, the copy the paper counts), and
# the f32 log-sum-exp of each score row (+4asb): 34sbh + 2sbh + 4asb + 16sb.
set -eu
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cat >"$T/gpt.mdl" <<'MDL'
let batch = 8
let seq = 1024
let d = 768
let heads = 12
let vocab = 50257
let layers = 1
block layer(x) {
  a = attention(layernorm(x), heads = heads, causal = true, dropout = 0.1,
                fused = FUSED)
  x = x + dropout(a, p = 0.1)
  m = dropout(linear(gelu(linear(layernorm(x), 4 * d)), d), p = 0.1)
  return x + m
}
model gpt2 {
  input tokens : i32[batch, seq]
  input targets : i32[batch, seq]
  h = dropout(embedding(tokens, vocab, d) + param(f32[seq, d]), p = 0.1)
  h = repeat layers layer(h)
  logits = linear(layernorm(h), vocab, bias = false)
  loss cross_entropy(logits, targets)
}
train { optimizer adamw  precision bf16 }
MDL
sed 's/FUSED/true/' "$T/gpt.mdl" >"$T/fused.mdl"
sed -i 's/FUSED/false/' "$T/gpt.mdl"
live() {
  "$MDLC" --peak --json -D layers="$1" "${2:-$T/gpt.mdl}" >"$T/out.json"
  a=$(sed -n 's/.*"live_after_forward": \([0-9]*\).*/\1/p' "$T/out.json")
  p=$(sed -n 's/.*"persistent_bytes": \([0-9]*\).*/\1/p' "$T/out.json")
  echo $((a - p))
}
l1=$(live 1)
l2=$(live 2)
s=1024 b=8 h=768 a=12
paper=$((s * b * h * 34 + 5 * a * s * s * b))
stats=$((16 * s * b))
got=$((l2 - l1))
echo "per layer: mdlc $got B; paper sbh(34 + 5as/h) = $paper B;" \
  "difference $((got - paper)) B = layernorm statistics 16sb = $stats B"
[ "$got" -eq $((paper + stats)) ]
f1=$(live 1 "$T/fused.mdl")
f2=$(live 2 "$T/fused.mdl")
fused=$((s * b * h * 36 + 4 * a * s * b + stats))
echo "fused, per layer: mdlc $((f2 - f1)) B; 34sbh + 2sbh + 4asb + 16sb = $fused B"
[ $((f2 - f1)) -eq "$fused" ]
