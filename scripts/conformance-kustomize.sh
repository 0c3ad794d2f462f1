#!/usr/bin/env bash
# Builds plumb (release) and scores `plumb build` against the shared kustomize conformance
# corpus (kustomize v5.5.0's own test suite as data). Fails below the thresholds, which only
# ever go up.
#
#   scripts/conformance-kustomize.sh [--min-semantic N] [--min-ordered N] [--min-errors N] [--corpus DIR]
#
# Needs python3 with PyYAML (pip install PyYAML).
set -euo pipefail
cd "$(dirname "$0")/.."

MIN_SEMANTIC=${MIN_SEMANTIC:-239}
MIN_ORDERED=${MIN_ORDERED:-239}
MIN_ERRORS=${MIN_ERRORS:-34}
CORPUS=${KUSTOMIZE_CORPUS:-../shared/conformance/kustomize}
while [ $# -gt 0 ]; do
  case "$1" in
    --min-semantic) MIN_SEMANTIC=$2; shift 2 ;;
    --min-ordered) MIN_ORDERED=$2; shift 2 ;;
    --min-errors) MIN_ERRORS=$2; shift 2 ;;
    --corpus) CORPUS=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

cargo build --release -p plumb --bin plumb
out=$(mktemp)
trap 'rm -f "$out"' EXIT
python3 "$CORPUS/score.py" --renderer "$PWD/target/release/plumb build {dir}" --out "$out" --show 40
python3 - "$out" "$MIN_SEMANTIC" "$MIN_ORDERED" "$MIN_ERRORS" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))
min_sem, min_ord, min_err = map(int, sys.argv[2:5])
cases = [r for r in results if "pass" not in r]
errs = [r for r in results if "pass" in r]
sem = sum(bool(r.get("semantic")) for r in cases)
ordered = sum(bool(r.get("ordered")) for r in cases)
rejected = sum(bool(r["pass"]) for r in errs)
print(f"gate: semantic {sem}/{len(cases)} (min {min_sem}), ordered {ordered}/{len(cases)} (min {min_ord}), "
      f"errors {rejected}/{len(errs)} (min {min_err})")
if sem < min_sem or ordered < min_ord or rejected < min_err:
    print("conformance gate FAILED", file=sys.stderr)
    sys.exit(1)
PY
