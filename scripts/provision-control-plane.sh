#!/usr/bin/env bash
# Provision a real Kubernetes 1.20.2 control plane for plumb's tests and quickstart.
#
# Installs etcd-server from Debian, builds kube-apiserver and kube-controller-manager
# from Debian bookworm's `kubernetes` source package (it carries vendor/, so no Go module
# downloads), and caches the binaries under "${XDG_CACHE_HOME:-$HOME/.cache}/plumb/k8s-<version>/bin".
# Idempotent: a second run only checks that the cached binaries exist and run.
#
# Prints the bin directory on its last line of stdout. Log lines go to stderr.
set -euo pipefail

K8S_VERSION="1.20.2"
# Bump BUILD_REV when the build recipe changes, so caches of older recipes are not used.
# p1: vendored modern-go/reflect2 replaced by Debian's 1.0.2 (1.0.1 crashes under Go >= 1.18
# when the apiserver stores custom resources).
BUILD_REV="p1"
CACHE_ROOT="${PLUMB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/plumb}"
BIN_DIR="$CACHE_ROOT/k8s-$K8S_VERSION-$BUILD_REV/bin"
SRC_DIR="$CACHE_ROOT/k8s-$K8S_VERSION-$BUILD_REV/src"
WANT=(kube-apiserver kube-controller-manager)

log() { printf '[provision] %s\n' "$*" >&2; }
die() { printf '[provision] error: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || die "not root and no sudo: cannot install Debian packages"
  SUDO="sudo"
fi

apt_updated=0
apt_update_once() {
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    $SUDO apt-get update -qq >&2
    apt_updated=1
  fi
}

need_pkgs() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    apt_update_once
    log "installing: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
      || die "apt-get install ${missing[*]} failed"
  fi
}

# etcd is a binary package; openssl makes the serving certificates.
need_pkgs etcd-server openssl
[ -x /usr/bin/etcd ] || die "etcd-server is installed but /usr/bin/etcd is missing"

have_all() {
  for b in "${WANT[@]}"; do [ -x "$BIN_DIR/$b" ] || return 1; done
  "$BIN_DIR/kube-apiserver" --version >/dev/null 2>&1 || return 1
}

if have_all; then
  log "cached: $BIN_DIR ($("$BIN_DIR/kube-apiserver" --version))"
  echo "$BIN_DIR"
  exit 0
fi

need_pkgs golang-go rsync dpkg-dev make golang-github-modern-go-reflect2-dev

# Debian's source stanza: same mirror as the machine's binary stanza, Types: deb-src.
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
  src=/etc/apt/sources.list.d/debian.sources
  [ -f "$src" ] || die "no $src to copy a deb-src stanza from"
  log "adding deb-src stanza"
  sed 's/^Types: deb$/Types: deb-src/' "$src" | $SUDO tee /etc/apt/sources.list.d/plumb-deb-src.sources >/dev/null
  apt_updated=0
fi
apt_update_once

mkdir -p "$SRC_DIR" "$BIN_DIR"
tree="$(find "$SRC_DIR" -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)"
if [ -z "$tree" ]; then
  log "apt-get source kubernetes (this is large)"
  # bookworm's package is versioned 1.20.5+really1.20.2: its tree is 1.20.2.
  (cd "$SRC_DIR" && apt-get source -qq kubernetes >&2) || die "apt-get source kubernetes failed"
  tree="$(find "$SRC_DIR" -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)"
fi
[ -n "$tree" ] || die "kubernetes source tree not found under $SRC_DIR"

# Go >= 1.18 changed map iteration internals; reflect2 1.0.1 (vendored by 1.20) then
# segfaults in json-iterator whenever a custom resource is encoded. Debian's 1.0.2 fixes it.
r2=/usr/share/gocode/src/github.com/modern-go/reflect2
[ -f "$r2/reflect2.go" ] || die "$r2 missing (golang-github-modern-go-reflect2-dev)"
log "vendoring reflect2 1.0.2 from Debian"
rm -rf "$tree/vendor/github.com/modern-go/reflect2"
mkdir -p "$tree/vendor/github.com/modern-go/reflect2"
find "$r2" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' \
  -exec cp {} "$tree/vendor/github.com/modern-go/reflect2/" \;
sed -i 's|^# github.com/modern-go/reflect2 v1.0.1$|# github.com/modern-go/reflect2 v1.0.2|; s|^github.com/modern-go/reflect2 v1.0.1 |github.com/modern-go/reflect2 v1.0.2 |' "$tree/vendor/modules.txt" || true
sed -i 's|github.com/modern-go/reflect2 v1.0.1|github.com/modern-go/reflect2 v1.0.2|' "$tree/go.mod" || true

for b in "${WANT[@]}"; do
  if [ ! -x "$BIN_DIR/$b" ]; then
    log "building $b in $tree (several minutes)"
    (cd "$tree" && make WHAT="cmd/$b" >&2) || die "make WHAT=cmd/$b failed"
    out="$(find "$tree/_output" -type f -name "$b" -perm -u+x | head -n1)"
    [ -n "$out" ] || die "built $b not found under $tree/_output"
    cp "$out" "$BIN_DIR/$b.tmp" && mv "$BIN_DIR/$b.tmp" "$BIN_DIR/$b"
  fi
done

have_all || die "binaries in $BIN_DIR do not run"
# The source tree is only needed to build; keep the cache small.
rm -rf "$SRC_DIR"
log "ready: $BIN_DIR"
echo "$BIN_DIR"
