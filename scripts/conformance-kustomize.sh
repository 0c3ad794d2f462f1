#!/usr/bin/env bash
# Builds plumb (release) and scores `plumb build` against the shared kustomize conformance
# corpus (kustomize v5.5.0's own test suite as data) and the real-world corpus
# (kustomize-real: 1,253 directories of 13 public repositories, expected output from
# `kubectl kustomize`). Fails below the thresholds, which only ever go up.
#
#   scripts/conformance-kustomize.sh [--min-semantic N] [--min-ordered N] [--min-errors N] [--corpus DIR]
#                                    [--min-real-semantic N] [--min-real-ordered N] [--real-corpus DIR]
#
# The real-world run takes about a minute on two cores (release build).
#
# Needs python3 with PyYAML (pip install PyYAML).
set -euo pipefail
cd "$(dirname "$0")/.."

MIN_SEMANTIC=${MIN_SEMANTIC:-239}
MIN_ORDERED=${MIN_ORDERED:-239}
MIN_ERRORS=${MIN_ERRORS:-34}
CORPUS=${KUSTOMIZE_CORPUS:-../shared/conformance/kustomize}
MIN_REAL_SEMANTIC=${MIN_REAL_SEMANTIC:-1253}
MIN_REAL_ORDERED=${MIN_REAL_ORDERED:-1253}
REAL_CORPUS=${KUSTOMIZE_REAL_CORPUS:-../shared/conformance/kustomize-real}
while [ $# -gt 0 ]; do
  case "$1" in
    --min-semantic) MIN_SEMANTIC=$2; shift 2 ;;
    --min-ordered) MIN_ORDERED=$2; shift 2 ;;
    --min-errors) MIN_ERRORS=$2; shift 2 ;;
    --corpus) CORPUS=$2; shift 2 ;;
    --min-real-semantic) MIN_REAL_SEMANTIC=$2; shift 2 ;;
    --min-real-ordered) MIN_REAL_ORDERED=$2; shift 2 ;;
    --real-corpus) REAL_CORPUS=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

cargo build --release -p plumb --bin plumb
out=$(mktemp)
real_out=$(mktemp)
trap 'rm -f "$out" "$real_out"' EXIT
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

# Real-world corpus: each case builds with its repository as the confinement root, as a
# GitOps checkout would.
python3 "$REAL_CORPUS/score.py" --renderer "$PWD/target/release/plumb build --root {root} {dir}" \
  --jobs 2 --out "$real_out" --show 20
python3 - "$real_out" "$MIN_REAL_SEMANTIC" "$MIN_REAL_ORDERED" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
min_sem, min_ord = map(int, sys.argv[2:4])
sem = sum(bool(r.get("semantic")) for r in results)
ordered = sum(bool(r.get("ordered")) for r in results)
print(f"real-world gate: semantic {sem}/{len(results)} (min {min_sem}), ordered {ordered}/{len(results)} (min {min_ord})")
if sem < min_sem or ordered < min_ord:
    print("real-world conformance gate FAILED", file=sys.stderr)
    sys.exit(1)
PY
