#!/usr/bin/env bash
# Times `plumb build` against `kubectl kustomize` as whole processes over the shared kustomize
# corpus and a large synthetic overlay (~2,000 objects with patches, generators and a name
# prefix), then runs the in-process benchmark (`cargo bench -p plumb-kustomize`).
# Prints medians and ratios.
#
#   scripts/bench-kustomize.sh [--runs N] [--corpus DIR]
#
# Needs python3 and kubectl (for the reference timings; skipped when absent).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=5
CORPUS=${KUSTOMIZE_CORPUS:-../shared/conformance/kustomize}
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --corpus) CORPUS=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

cargo build --release -p plumb --bin plumb
fixture=$(mktemp -d)
trap 'rm -rf "$fixture"' EXIT
PLUMB_BENCH_FIXTURE_DIR="$fixture" cargo bench -p plumb-kustomize --bench render >/dev/null

python3 - "$PWD/target/release/plumb" "$CORPUS" "$fixture/overlay" "$RUNS" <<'PY'
import glob, json, os, shutil, statistics, subprocess, sys, time
plumb, corpus, synthetic, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
kubectl = shutil.which("kubectl")

def dirs():
    out = []
    for d in sorted(glob.glob(os.path.join(corpus, "cases", "*"))):
        meta = json.load(open(os.path.join(d, "case.json")))
        out.append(os.path.join(d, "input", meta["build_dir"]))
    return out

def sweep(cmd, targets):
    t = time.perf_counter()
    for d in targets:
        subprocess.run(cmd + [d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t

def median_of(cmd, targets, n):
    return statistics.median(sweep(cmd, targets) for _ in range(n))

cases = dirs()
rows = []
if cases:
    rows.append(("corpus (%d builds, one sweep)" % len(cases), [plumb, "build"], ["kubectl", "kustomize", "--load-restrictor=LoadRestrictionsNone"], cases, runs, max(1, runs // 2)))
rows.append(("synthetic overlay (~2,000 objects)", [plumb, "build"], ["kubectl", "kustomize"], [synthetic], runs, max(1, runs // 2)))
for name, pc, kc, targets, n_p, n_k in rows:
    p = median_of(pc, targets, n_p)
    line = f"{name}: plumb median {p*1000:.1f} ms"
    if kubectl:
        k = median_of(kc, targets, n_k)
        line += f", kubectl kustomize median {k*1000:.1f} ms, ratio {k/p:.1f}x"
    print(line)
PY

echo "in-process:"
cargo bench -p plumb-kustomize --bench render 2>/dev/null | grep -E "objects|median"
