#!/bin/sh
# tests/sh/cpu_learns.sh: `mdlc --run --device cpu` trains. memory.md's
# tiny model (examples/tiny.mdl), 30 SGD steps at lr 0.5 on its fixed
# batch: the last loss must be below half of the first, every loss finite,
# and the measured peak equal to the predicted one (the JSON's "match").
# The same for the small MLP example (adam, dropout) at 20 steps, lr 1e-3,
# batch 16: the last loss below 0.7 of the first.
MDLC=${MDLC:-${BUILD:-build}/mdlc}
fails=0

# learns FILE STEPS RATIO ARGS...: last loss < RATIO * first loss.
learns() {
  f=$1 steps=$2 ratio=$3
  shift 3
  json=$("$MDLC" --run --device cpu --steps "$steps" --json "$@" "$f" 2>&1)
  rc=$?
  losses=$(printf '%s\n' "$json" | sed -n 's/.*"losses": \[\(.*\)\].*/\1/p')
  match=$(printf '%s\n' "$json" | sed -n 's/.*"match": \([a-z]*\).*/\1/p')
  if [ "$rc" -ne 0 ] || [ "$match" != true ] || [ -z "$losses" ]; then
    echo "$f: exit $rc, match '$match':"
    printf '%s\n' "$json" | head -n 20
    fails=$((fails + 1))
    return
  fi
  verdict=$(printf '%s\n' "$losses" | tr ',' '\n' | awk -v n="$steps" \
    -v r="$ratio" '
    { v[NR] = $1 + 0; if ($1 == "null") bad = 1 }
    END {
      if (NR != n || bad) { print "bad: " NR " losses, null=" bad + 0; exit }
      if (v[n] < r * v[1]) print "ok " v[1] " -> " v[n]
      else print "bad: " v[1] " -> " v[n] ", want below " r " of the first"
    }')
  case $verdict in
    ok*) echo "$f: $verdict" ;;
    *) echo "$f: $verdict"; fails=$((fails + 1)) ;;
  esac
}

learns examples/tiny.mdl 30 0.5 --lr 0.5
learns examples/mlp.mdl 20 0.7 -D batch=16
exit $((fails != 0))
