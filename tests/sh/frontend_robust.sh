# tests/sh/frontend_robust.sh: hostile inputs never crash the frontend.
# Each case is generated here (not committed as a huge file) and must end
# with exit status 1 and a located error, never a signal or an abort:
# empty input, binary garbage, 20,000 nested parentheses, 20,000 unary
# minuses, a 100 KB identifier, a 50,000-term sum, NUL bytes.
MDLC=${MDLC:-${BUILD:-build}/mdlc}
T=$(mktemp -d "${TMPDIR:-/tmp}/fe-robust.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
fail=0

# expect NAME TEXT: mdlc on $T/NAME.mdl exits 1 and stderr contains TEXT.
expect() {
  "$MDLC" --peak "$T/$1.mdl" >"$T/$1.out" 2>"$T/$1.err"
  rc=$?
  if [ $rc -ne 1 ] || ! grep -qF -- "$2" "$T/$1.err"; then
    echo "FAIL $1: exit $rc (want 1), stderr should contain: $2"
    head -c 600 "$T/$1.err"
    fail=1
  fi
  size=$(wc -c <"$T/$1.err")
  if [ "$size" -gt 20000 ]; then
    echo "FAIL $1: $size bytes of diagnostics"
    fail=1
  fi
}

# rep N TEXT: TEXT repeated N times, no newline.
rep() { awk -v n="$1" -v s="$2" 'BEGIN { for (i = 0; i < n; i++) printf "%s", s }'; }

: >"$T/empty.mdl"
expect empty "error: no 'model NAME { ... }' in this file"

for seed in 1 2 3 4 5; do
  LC_ALL=C awk -v seed=$seed 'BEGIN { srand(seed);
    for (i = 0; i < 3000; i++) printf "%c", 1 + int(rand() * 255) }' \
    >"$T/garbage$seed.mdl"
  expect garbage$seed "error:"
done

{ printf 'model m {\n  input x : f32[2]\n  y = '; rep 20000 '(';
  printf 'x'; rep 20000 ')'; printf '\n}\n'; } >"$T/parens.mdl"
expect parens "brackets nested too deeply (more than 200)"

{ printf 'model m {\n  input x : f32[2]\n  y = '; rep 20000 '- ';
  printf 'x\n}\n'; } >"$T/minus.mdl"
expect minus "error:"

{ printf 'model m {\n  input x : f32[2]\n  y = relu('; rep 100000 'a';
  printf ')\n}\n'; } >"$T/ident.mdl"
expect ident "error: unknown name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...'"

{ printf 'model m {\n  input x : f32[2]\n  y = x'; rep 50000 ' + x';
  printf '\n  loss mse(y, x)\n}\n'; } >"$T/sum.mdl"
expect sum "expression nested too deeply (more than 200 levels)"

printf 'model m {\n  input x : f32[2]\000\000\n}\n' >"$T/nul.mdl"
expect nul "unexpected byte 0x00"

# Standard input works as a file named '-'.
printf 'model m {\n  input x : f32[2]\n  loss mse(x, y)\n}\n' |
  "$MDLC" --peak - >/dev/null 2>"$T/stdin.err"
if [ $? -ne 1 ] || ! grep -qF -- "-:3:15: error: unknown name 'y'" "$T/stdin.err"; then
  echo "FAIL stdin"; cat "$T/stdin.err"; fail=1
fi
exit $fail
