#!/bin/sh
# tests/run.sh: mdlc's test runner. Run from the repository root:
#   BUILD=build sh tests/run.sh [--golden] [FILTER...]
# (`make test` does this; `make golden` passes --golden). A FILTER is a
# shell pattern matched against test names (`diag/*`, `*attention*`); with
# none, every test runs.
#
# Kinds of test, each named group/name in the output:
#   tests/{parse,diag,plan,passes,exec}/NAME.mdl
#       The file carries its own expectation, in comment lines anywhere:
#         # RUN: ARGS      mdlc's arguments, %s = this file's path (default
#                          `--peak %s`); several RUN lines = several runs;
#                          %t = a scratch path (`--emit-cuda %t.cu`)
#         # EXIT: N        expected exit status of each run (default 0)
#         # CONTAINS: TEXT stdout+stderr of each run contains TEXT
#         #| LINE          stdout is exactly these lines (`#|` alone: an
#                          empty line); only with one RUN line
#         #! LINE          stderr is exactly these lines; only with one RUN
#   tests/unit/NAME.c
#       Compiled with $CC $CFLAGS, linked with every mdlc object in $BUILD
#       but driver.o, $LDFLAGS and -lm, and run: exit 0 passes.
#   tests/sh/NAME.sh
#       Run with sh, $BUILD $MDLC $NVCC exported: exit 0 passes, 77 skips;
#       a line `# TIMEOUT: SECONDS` in it raises its time limit.
#   tests/golden/NAME.args
#       One line of mdlc arguments; stdout must equal NAME.out. --golden
#       rewrites every NAME.out instead (review the result as a diff).
#
# Prints PASS/FAIL/SKIP group/name, a short diff for each failure, and last
# `N passed, N failed` (`, N skipped` when some were). Exits 0 iff none
# failed. Every test run has a time limit of $TEST_TIMEOUT seconds (120).

BUILD=${BUILD:-build}
MDLC=${MDLC:-$BUILD/mdlc}
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
CC=${CC:-gcc}
CFLAGS=${CFLAGS:--O2 -g -std=c11 -D_POSIX_C_SOURCE=200809L -I. -I$BUILD}
LDFLAGS=${LDFLAGS:-}
TEST_TIMEOUT=${TEST_TIMEOUT:-120}
export BUILD MDLC NVCC
# In sanitizer builds (make check) a sanitizer's report must fail the test
# even where the test expects mdlc to exit 1: give those reports their own
# exit status.
ASAN_OPTIONS=${ASAN_OPTIONS:-exitcode=86}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:exitcode=87:print_stacktrace=1}
export ASAN_OPTIONS UBSAN_OPTIONS

golden=0
if [ "${1:-}" = --golden ]; then
  golden=1
  shift
fi

npass=0
nfail=0
nskip=0
T=$(mktemp -d "${TMPDIR:-/tmp}/mdlc-test.XXXXXX") || exit 2
trap 'rm -rf "$T"' EXIT
trap 'exit 130' INT TERM

if command -v timeout >/dev/null 2>&1; then
  TO="timeout $TEST_TIMEOUT"
else
  TO=
fi

# selected NAME FILTER...: true if NAME matches a filter, or there are none.
selected() {
  _n=$1
  shift
  [ $# -eq 0 ] && return 0
  for _p; do
    # shellcheck disable=SC2254 # a filter is a pattern
    case $_n in $_p) return 0 ;; esac
  done
  return 1
}

pass() {
  echo "PASS $1"
  npass=$((npass + 1))
}

# fail NAME REASON: the details, if any, are already in $T/why.
fail() {
  echo "FAIL $1: $2"
  if [ -s "$T/why" ]; then
    head -n 20 "$T/why" | sed 's/^/    /'
  fi
  nfail=$((nfail + 1))
}

skip() {
  echo "SKIP $1"
  nskip=$((nskip + 1))
}

# status_word RC [LIMIT]: how a run that exited RC ended, in words.
status_word() {
  case $1 in
    124) echo "timed out after ${2:-$TEST_TIMEOUT}s" ;;
    86) echo "AddressSanitizer report (exit 86)" ;;
    87) echo "UndefinedBehaviorSanitizer report (exit 87)" ;;
    12[5-7]) echo "could not run (status $1)" ;;
    13[4-9] | 1[4-9][0-9] | 2[0-9][0-9])
      echo "killed by signal $(($1 - 128))" ;;
    *) echo "exit $1" ;;
  esac
}

# diff_into_why EXPECTED GOT: a unified diff, labelled, into $T/why.
diff_into_why() {
  diff -u "$1" "$2" |
    sed -e '1s/.*/--- expected/' -e '2s/.*/+++ got/' >"$T/why"
}

# run_cmd ARGS: runs mdlc with ARGS (shell words) in the repo root, stdin
# empty; stdout to $T/out, stderr to $T/err, the status in $rc.
run_cmd() {
  $TO sh -c "exec $MDLC $1" </dev/null >"$T/out.raw" 2>"$T/err.raw"
  rc=$?
  # Compare lines, not bytes: a missing final newline is not a failure.
  awk '{ print }' "$T/out.raw" >"$T/out"
  awk '{ print }' "$T/err.raw" >"$T/err"
}

# ---- tests/<group>/*.mdl -------------------------------------------------
# run_mdl GROUP FILE
run_mdl() {
  name=$1/$(basename "$2" .mdl)
  f=$2
  : >"$T/why"
  sed -n 's/^[[:space:]]*# RUN:[[:space:]]*//p' "$f" |
    sed -e "s|%s|$f|g" -e "s|%t|$T/t|g" >"$T/runs"
  [ -s "$T/runs" ] || echo "--peak $f" >"$T/runs"
  want=$(sed -n 's/^[[:space:]]*# EXIT:[[:space:]]*\([0-9]*\).*/\1/p' "$f" |
    tail -n 1)
  want=${want:-0}
  sed -n 's/^[[:space:]]*# CONTAINS: \{0,1\}//p' "$f" |
    sed 's/[[:space:]]*$//' >"$T/contains"
  has_out=0
  has_err=0
  if grep -q '^[[:space:]]*#|' "$f"; then
    has_out=1
    sed -n 's/^[[:space:]]*#| \{0,1\}//p' "$f" >"$T/want.out"
  fi
  if grep -q '^[[:space:]]*#!' "$f"; then
    has_err=1
    sed -n 's/^[[:space:]]*#! \{0,1\}//p' "$f" >"$T/want.err"
  fi
  nruns=$(($(wc -l <"$T/runs")))
  if [ $((has_out + has_err)) -gt 0 ] && [ "$nruns" -ne 1 ]; then
    fail "$name" "#| and #! need exactly one RUN line, found $nruns"
    return
  fi

  while IFS= read -r args; do
    run_cmd "$args"
    if [ "$rc" -ne "$want" ]; then
      { echo "\$ mdlc $args"; echo "--- stderr:"; cat "$T/err"
        echo "--- stdout:"; cat "$T/out"; } >"$T/why"
      fail "$name" "$(status_word "$rc"), expected exit $want"
      return
    fi
    if [ "$has_out" = 1 ] && ! cmp -s "$T/want.out" "$T/out"; then
      diff_into_why "$T/want.out" "$T/out"
      fail "$name" "stdout differs (mdlc $args)"
      return
    fi
    if [ "$has_err" = 1 ] && ! cmp -s "$T/want.err" "$T/err"; then
      diff_into_why "$T/want.err" "$T/err"
      fail "$name" "stderr differs (mdlc $args)"
      return
    fi
    cat "$T/out" "$T/err" >"$T/both"
    while IFS= read -r text; do
      if ! grep -F -q -e "$text" "$T/both"; then
        { echo "\$ mdlc $args"; cat "$T/both"; } >"$T/why"
        fail "$name" "output lacks '$text'"
        return
      fi
    done <"$T/contains"
  done <"$T/runs"
  pass "$name"
}

# ---- tests/unit/*.c --------------------------------------------------------
# Every object of mdlc but the driver (which holds main).
unit_objs() {
  for o in "$BUILD"/*.o "$BUILD"/ir/*.o "$BUILD"/frontend/*.o \
    "$BUILD"/passes/*.o "$BUILD"/backend/*.o "$BUILD"/backend/cpu/*.o \
    "$BUILD"/grammar/*.o; do
    [ -f "$o" ] || continue
    [ "$o" = "$BUILD/driver.o" ] && continue
    printf '%s ' "$o"
  done
}

run_unit() {
  name=unit/$(basename "$1" .c)
  : >"$T/why"
  exe=$T/unit.exe
  # shellcheck disable=SC2086 # the flags and objects are lists of words
  if ! $CC $CFLAGS -o "$exe" "$1" $OBJS $LDFLAGS -lm >"$T/why" 2>&1; then
    fail "$name" "does not compile"
    return
  fi
  $TO "$exe" </dev/null >"$T/why" 2>&1
  rc=$?
  if [ "$rc" -eq 0 ]; then
    pass "$name"
  else
    fail "$name" "$(status_word "$rc")"
  fi
}

# ---- tests/sh/*.sh ---------------------------------------------------------
run_sh() {
  name=sh/$(basename "$1" .sh)
  # a script may raise its own limit with a line `# TIMEOUT: SECONDS`
  to=$TO
  lim=$(sed -n 's/^# TIMEOUT: *\([0-9][0-9]*\).*/\1/p' "$1" | head -n 1)
  if [ -n "$to" ] && [ -n "$lim" ]; then to="timeout $lim"; fi
  $to sh "$1" </dev/null >"$T/why" 2>&1
  rc=$?
  case $rc in
    0) pass "$name" ;;
    77) skip "$name" ;;
    *) fail "$name" "$(status_word "$rc" "$lim")" ;;
  esac
}

# ---- tests/golden/*.args ---------------------------------------------------
run_golden() {
  name=golden/$(basename "$1" .args)
  expect=${1%.args}.out
  : >"$T/why"
  run_cmd "$(head -n 1 "$1")"
  if [ "$rc" -ge 124 ]; then
    cp "$T/err" "$T/why"
    fail "$name" "$(status_word "$rc")"
  elif [ "$golden" = 1 ]; then
    cp "$T/out" "$expect"
    echo "WROTE $expect"
  elif [ ! -f "$expect" ]; then
    fail "$name" "no $expect (make golden writes it)"
  elif cmp -s "$expect" "$T/out"; then
    pass "$name"
  else
    diff_into_why "$expect" "$T/out"
    fail "$name" "stdout differs from $expect"
  fi
}

# ---- main ------------------------------------------------------------------
if [ ! -x "$MDLC" ]; then
  echo "run.sh: no mdlc at $MDLC (build it first: make BUILD=$BUILD)"
  echo "0 passed, 1 failed"
  exit 1
fi

if [ "$golden" = 0 ]; then
  for g in parse diag plan passes exec; do
    for f in tests/"$g"/*.mdl; do
      [ -f "$f" ] || continue
      selected "$g/$(basename "$f" .mdl)" "$@" || continue
      run_mdl "$g" "$f"
    done
  done

  OBJS=$(unit_objs)
  for f in tests/unit/*.c; do
    [ -f "$f" ] || continue
    selected "unit/$(basename "$f" .c)" "$@" || continue
    run_unit "$f"
  done

  for f in tests/sh/*.sh; do
    [ -f "$f" ] || continue
    selected "sh/$(basename "$f" .sh)" "$@" || continue
    run_sh "$f"
  done
fi

for f in tests/golden/*.args; do
  [ -f "$f" ] || continue
  selected "golden/$(basename "$f" .args)" "$@" || continue
  run_golden "$f"
done

if [ "$nskip" -gt 0 ]; then
  echo "$npass passed, $nfail failed, $nskip skipped"
else
  echo "$npass passed, $nfail failed"
fi
[ "$nfail" -eq 0 ]
