#!/usr/bin/env bash
# Installs etcd (server and etcdctl) from Debian's etcd-server and etcd-client packages: the
# consensus store doltctl's cluster mode elects its primary through, which the cluster tests
# start themselves on free ports as a plain process.
#
# Idempotent: if an etcd is already reachable through ETCD_BIN or PATH (and etcdctl next to it or
# on PATH), nothing is installed. Otherwise, as root with apt-get, the packages are installed;
# as anyone else the script names the packages and fails. apt starts no etcd service on our
# machines (policy-rc.d forbids it); the tests never use one. The absolute path of etcd is the
# last line of stdout.
#
# Environment:
#   ETCD_BIN  an existing etcd binary to accept
set -euo pipefail

log() { echo "install-etcd: $*" >&2; }

# Prints the path of etcd, or nothing: ETCD_BIN, then PATH (Debian installs to /usr/bin).
find_etcd() {
  if [ -n "${ETCD_BIN:-}" ] && [ -x "$ETCD_BIN" ]; then
    echo "$ETCD_BIN"
  elif command -v etcd >/dev/null 2>&1; then
    command -v etcd
  fi
}
has_etcdctl() {
  local etcd=$1
  [ -x "$(dirname "$etcd")/etcdctl" ] || command -v etcdctl >/dev/null 2>&1
}

etcd=$(find_etcd)
if [ -n "$etcd" ] && has_etcdctl "$etcd"; then
  log "etcd already installed at $etcd ($("$etcd" --version 2>/dev/null | head -n 1))"
  realpath "$etcd"
  exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  log "etcd and etcdctl are needed: install the etcd-server and etcd-client packages"
  log "(as root on Debian: apt-get install etcd-server etcd-client), or set ETCD_BIN"
  exit 1
fi

log "installing etcd-server and etcd-client with apt-get"
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  etcd-server etcd-client >&2

etcd=$(find_etcd)
if [ -z "$etcd" ]; then
  log "installed etcd-server but no etcd is on PATH"
  exit 1
fi
log "installed $("$etcd" --version 2>/dev/null | head -n 1) at $etcd"
realpath "$etcd"
