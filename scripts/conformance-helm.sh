#!/usr/bin/env bash
# Conformance gate for `plumb helm template` against real `helm template` output.
#
#   scripts/conformance-helm.sh [--min N] [extra score.py args...]
#
# Builds the release binary, runs ../shared/conformance/helm/score.py (override the
# corpus with HELM_CORPUS=DIR) and fails when fewer than N cases pass (default:
# the threshold below). Needs python3 with PyYAML.
#
# Some checkouts of the corpus store the `chart -> ../<case>/chart` symlinks of
# shared charts as plain files holding the link target; the script scores a
# shadow tree where those are real symlinks again, so both layouts work.
set -euo pipefail
cd "$(dirname "$0")/.."

MIN=${HELM_CONFORMANCE_MIN:-319}
if [ "${1:-}" = "--min" ]; then MIN=$2; shift 2; fi
CORPUS=${HELM_CORPUS:-../shared/conformance/helm}
[ -d "$CORPUS/cases" ] || { echo "no corpus at $CORPUS/cases" >&2; exit 2; }
python3 -c 'import yaml' 2>/dev/null || { echo "PyYAML missing: pip install PyYAML" >&2; exit 2; }

# PLUMB_BIN=path skips the build and scores that binary.
if [ -z "${PLUMB_BIN:-}" ]; then
  cargo build --release --bin plumb >&2
  PLUMB_BIN=$(pwd)/target/release/plumb
fi
BIN=$PLUMB_BIN

SHADOW=$(mktemp -d)
trap 'rm -rf "$SHADOW"' EXIT
CASES=$(cd "$CORPUS/cases" && pwd)
for d in "$CASES"/*/; do
  id=$(basename "$d")
  mkdir -p "$SHADOW/cases/$id"
  for f in "$d"*; do
    name=$(basename "$f")
    if [ "$name" = chart ] && [ -f "$f" ] && [ ! -L "$f" ] && [ "$(wc -c <"$f")" -lt 512 ]; then
      target=$(cat "$f")
      ln -s "$(cd "$d" && cd "$target" && pwd)" "$SHADOW/cases/$id/chart"
    else
      ln -s "$f" "$SHADOW/cases/$id/$name"
    fi
  done
done

OUT=$(mktemp)
python3 "$CORPUS/score.py" --cases "$SHADOW/cases" \
  --renderer "$BIN helm template {release} {chart} --namespace {namespace} --kube-version {kube_version} {values_flag}" \
  "$@" | tee "$OUT"
passed=$(tail -1 "$OUT" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
rm -f "$OUT"
echo "helm conformance: ${passed:-0} passed (gate: >= $MIN)"
[ "${passed:-0}" -ge "$MIN" ]
