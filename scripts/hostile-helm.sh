#!/usr/bin/env bash
# Hostile charts (issue #14) through `plumb helm template` and the reference helm.
#
#   scripts/hostile-helm.sh
#
# Each chart under crates/plumb-helm/tests/fixtures/hostile is rendered under a
# 2 GiB address-space limit (`ulimit -v 2097152`) with a 60 s timeout. plumb must
# exit 1 or 2 (not a signal, not the timeout) with a "render budget exceeded"
# error; helm's outcome is printed next to it for comparison (it is not gated).
# PLUMB_BIN=path skips the build.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PLUMB_BIN:-}" ]; then
  cargo build --release --bin plumb >&2 || exit 2
  PLUMB_BIN=$(pwd)/target/release/plumb
fi
LIMIT_KB=2097152
fail=0
run() { # run BIN... ; prints "rc seconds" and leaves stderr in $ERR
  local start end
  start=$(date +%s.%N)
  ( ulimit -v "$LIMIT_KB"; exec timeout -s KILL 60 "$@" ) >/dev/null 2>"$ERR"
  RC=$?
  end=$(date +%s.%N)
  SECS=$(echo "$end - $start" | bc)
}
ERR=$(mktemp)
trap 'rm -f "$ERR"' EXIT
printf '%-20s %-34s %s\n' chart plumb helm
for dir in crates/plumb-helm/tests/fixtures/hostile/*/; do
  name=$(basename "$dir")
  run "$PLUMB_BIN" helm template rel "$dir"
  p_rc=$RC; p_s=$SECS; p_err=$(grep -o 'render budget exceeded[^"]*' "$ERR" | head -1)
  if { [ "$p_rc" = 1 ] || [ "$p_rc" = 2 ]; } && [ -n "$p_err" ]; then verdict=ok; else verdict=FAIL; fail=1; cat "$ERR" >&2; fi
  h="(helm not on PATH)"
  if command -v helm >/dev/null; then
    run helm template rel "$dir"
    case $RC in
      0) h="exit 0 in ${SECS}s" ;;
      137) h="killed at 60s (hang) or by the limit" ;;
      *) h="exit $RC in ${SECS}s: $(tail -c 120 "$ERR" | tr '\n' ' ')" ;;
    esac
  fi
  printf '%-20s %-34s %s\n' "$name" "$verdict exit $p_rc in ${p_s%??????}s" "$h"
done
exit $fail
