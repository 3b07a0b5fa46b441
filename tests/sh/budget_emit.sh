#!/bin/sh
# tests/sh/budget_emit.sh: --emit-mdl. The emitted source, compiled with
# plain `--peak --json` (no placement), must have exactly the peak that
# the placement reported in its header, within the budget:
#   gpt2_small at 6GiB; operator_cnn, resnet18 and unet at two budgets
#   each (between their smallest expressible peak and the unsegmented
#   one); a chain written with source checkpoints (in a block, a
#   `checkpoint { }`, `repeat n checkpoint`, `checkpoint repeat`), `;`,
#   comments and a train-block budget, at three budgets: its repeats are
#   split, its old checkpoints and the budget key are gone, and the
#   parameter count is unchanged.
# A budget that needs no segment gives the input back after the header,
# byte for byte; one that cannot be met exits 1, still printing the
# smallest-peak placement.
MDLC=${MDLC:-${BUILD:-build}/mdlc}
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
T=$(mktemp -d "${TMPDIR:-/tmp}/emit.XXXXXX")
trap 'rm -rf "$T"' EXIT

peak_of() { "$MDLC" --peak --json "$@" | sed -n 's/.*"peak_bytes": \([0-9]*\).*/\1/p'; }
head_peak() { sed -n '1s/.*, peak \([0-9]*\) B.*/\1/p' "$1"; }

# emit M BUDGET: the emitted peak equals the header's, within the budget
emit() {
  "$MDLC" --budget "$2" --emit-mdl "$1" >"$T/e.mdl"
  rc=$?
  [ $rc -eq 0 ] || { fail "$1 at $2: exit $rc"; return; }
  want=$(head_peak "$T/e.mdl")
  got=$(peak_of "$T/e.mdl")
  [ -n "$want" ] && [ "$got" = "$want" ] ||
    fail "$1 at $2: header peak '$want', emitted file compiles to '$got'"
  [ -n "$got" ] && [ "$got" -le "$2" ] || fail "$1 at $2: peak $got > budget"
  grep -q 'checkpoint' "$T/e.mdl" || fail "$1 at $2: no checkpoint written"
  echo "  $(basename "$1") at $2: peak $got"
}

emit examples/gpt2_small.mdl 6442450944
# two budgets each, in (smallest expressible peak, unsegmented peak)
for m in operator_cnn:28:22 resnet18:28:26 unet:30:29; do
  f=examples/${m%%:*}.mdl
  r=${m#*:}
  base=$(peak_of $f)
  emit $f $((base * ${r%%:*} / 32))
  emit $f $((base * ${r#*:} / 32))
done

# the chain: source checkpoints replaced, repeats split
cat >"$T/m.mdl" <<'MDL'
# a chain with source checkpoints, comments and a budget
let batch = 4096
let d = 256
let n = 6

block mlp(x, w) {
  return gelu(linear(gelu(linear(x, w)), d))
}

block ck(x) {
  h = checkpoint linear(x, 4 * d)   # removed: placement decides
  return gelu(linear(h, d))
}

model chain {
  input x : f32[batch, d]
  input y : i32[batch]
  checkpoint {
    h = gelu(linear(x, d))
  }
  h = ck(h)
  g = repeat n checkpoint mlp(h, 1024)  # every call its own segment
  g = mlp(g, 512); g = mlp(g, 512)
  z = checkpoint repeat 3 mlp(g, 2048)
  loss cross_entropy(linear(z, 10), y)
}

train {
  optimizer adam
  budget 1GiB     # placed on every compile
}
MDL
grep -v 'budget 1GiB' "$T/m.mdl" | sed '/checkpoint {/d; s/checkpoint //' |
  awk '/^  }$/ && !done { done = 1; next } { print }' >"$T/plain.mdl"
params=$("$MDLC" --peak "$T/plain.mdl" | sed -n 's/^parameters: \([0-9]*\).*/\1/p')
base=$(peak_of "$T/plain.mdl")
[ -n "$base" ] || fail "the chain does not compile: $("$MDLC" --peak "$T/plain.mdl" 2>&1 | head -3)"
for k in 15 12 9; do
  b=$((base * k / 16))
  "$MDLC" --budget $b --emit-mdl "$T/m.mdl" >"$T/e.mdl" || fail "chain at $b: exit $?"
  want=$(head_peak "$T/e.mdl")
  got=$(peak_of "$T/e.mdl")
  [ -n "$got" ] && [ "$got" = "$want" ] && [ "$got" -le $b ] ||
    fail "chain at $b: header '$want', emitted '$got'"
  grep -v '^#' "$T/e.mdl" | grep -q budget && fail "chain at $b: budget key kept"
  grep -q 'checkpoint linear' "$T/e.mdl" && fail "chain at $b: block checkpoint kept"
  p=$("$MDLC" --peak "$T/e.mdl" | sed -n 's/^parameters: \([0-9]*\).*/\1/p')
  [ "$p" = "$params" ] || fail "chain at $b: $p parameters, was $params"
  # a split repeat: a later piece takes the bound name as its input
  grep -Eq '= (checkpoint )?repeat [0-9]+ (checkpoint )?mlp\((g|z),' \
    "$T/e.mdl" || fail "chain at $b: no repeat split: $(cat "$T/e.mdl")"
  echo "  chain at $b: peak $got"
done

# no segment needed: the input back, byte for byte, after the header
base=$(peak_of examples/operator_cnn.mdl)
"$MDLC" --budget $base --emit-mdl examples/operator_cnn.mdl >"$T/e.mdl" ||
  fail "operator_cnn at its peak: exit $?"
sed 1,2d "$T/e.mdl" | cmp -s - examples/operator_cnn.mdl ||
  fail "operator_cnn at its peak: not the input"
[ "$(peak_of "$T/e.mdl")" = "$base" ] || fail "operator_cnn: peak changed"
# the train block's budget, with a budget that needs nothing: only the
# budget line and the source checkpoints go
"$MDLC" --emit-mdl "$T/m.mdl" >"$T/e.mdl" || fail "train budget: exit $?"
[ "$(sed 1,2d "$T/e.mdl" | wc -l)" -eq $(($(wc -l <"$T/m.mdl") - 3)) ] ||
  fail "train budget: $(diff "$T/m.mdl" "$T/e.mdl")"
# cannot be met: exit 1, the smallest peak written and compiling to it
"$MDLC" --budget 1MiB --emit-mdl examples/operator_cnn.mdl >"$T/e.mdl" 2>/dev/null
[ $? -eq 1 ] || fail "1MiB: should exit 1"
[ "$(peak_of "$T/e.mdl")" = "$(head_peak "$T/e.mdl")" ] || fail "1MiB: peak"
# no budget at all: a command-line error
"$MDLC" --emit-mdl examples/operator_cnn.mdl >/dev/null 2>&1
[ $? -eq 2 ] || fail "--emit-mdl without a budget should exit 2"

[ $fails -eq 0 ] || exit 1
echo "budget_emit: emitted models compile to the placed peaks"
