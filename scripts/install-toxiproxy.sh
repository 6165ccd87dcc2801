#!/usr/bin/env bash
# Installs Toxiproxy's server (and its CLI), the TCP proxy the cluster tests put between nodes
# and etcd to inject network faults (partitions, blackholes, latency).
#
# Idempotent: if a toxiproxy-server that reports the pinned version is already reachable through
# TOXIPROXY_BIN, the install prefix or PATH, nothing is built. Otherwise the pinned release is
# built with `go install` from the Go module proxy (pure Go, no cgo; about a minute, in
# Go caches of its own that are removed afterwards). The absolute path of toxiproxy-server is
# the last line of stdout.
#
# Environment:
#   DOLTCTL_TOOLS_PREFIX  install prefix (default: $DOLTCTL_DOLT_PREFIX, else $HOME/.local);
#                         the binaries go to PREFIX/bin/toxiproxy-server and toxiproxy-cli
#   TOXIPROXY_BIN         an existing toxiproxy-server to accept if it has the pinned version
set -euo pipefail

# The newest release the Go module proxy reachable from our machines serves (`go list -m
# -versions github.com/Shopify/toxiproxy/v2` lists v2.3.0 and v2.5.0 only).
TOXIPROXY_VERSION="2.5.0"
MODULE="github.com/Shopify/toxiproxy/v2"
GO_MIN="1.17"
PREFIX="${DOLTCTL_TOOLS_PREFIX:-${DOLTCTL_DOLT_PREFIX:-${HOME:-/root}/.local}}"
TARGET="$PREFIX/bin/toxiproxy-server"

log() { echo "install-toxiproxy: $*" >&2; }

# Prints the version a toxiproxy-server binary reports ("toxiproxy-server version 2.5.0"), or
# nothing. `go install` alone would report "git": the build below stamps the version in.
version_of() {
  local bin=$1
  [ -x "$bin" ] || return 0
  "$bin" -version 2>/dev/null | sed -n 's/^toxiproxy-server version \([0-9][0-9.]*\).*/\1/p' \
    | head -n 1 || true
}

# shellcheck source=lib/go-tool.sh
. "$(dirname "$0")/lib/go-tool.sh"
if found=$(installed_version "$TOXIPROXY_VERSION" version_of "${TOXIPROXY_BIN:-}" "$TARGET" \
  "$(command -v toxiproxy-server 2>/dev/null || true)"); then
  log "toxiproxy-server $TOXIPROXY_VERSION already installed at $found"
  echo "$found"
  exit 0
fi
require_go "$GO_MIN" "toxiproxy $TOXIPROXY_VERSION"

log "building toxiproxy $TOXIPROXY_VERSION with $(go version)"
mkdir -p "$PREFIX/bin"
# The release Makefile stamps the version the same way; -version then proves what is installed.
# CGO_ENABLED=0: a static binary, no C compiler needed. GOTOOLCHAIN=local: never download a
# toolchain. `go install` names the binaries after their directories (server, cli), so they are
# built into a scratch GOBIN and renamed to the names toxiproxy's releases use.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
use_scratch_go_caches "$scratch/go"
GOBIN="$scratch" CGO_ENABLED=0 GOTOOLCHAIN=local \
  go install -ldflags "-s -w -X $MODULE.Version=$TOXIPROXY_VERSION" \
  "$MODULE/cmd/server@v$TOXIPROXY_VERSION" "$MODULE/cmd/cli@v$TOXIPROXY_VERSION" >&2
install -m 0755 "$scratch/server" "$TARGET"
install -m 0755 "$scratch/cli" "$PREFIX/bin/toxiproxy-cli"

got=$(version_of "$TARGET")
if [ "$got" != "$TOXIPROXY_VERSION" ]; then
  log "built $TARGET but it reports version '${got:-none}', expected $TOXIPROXY_VERSION"
  exit 1
fi
log "installed toxiproxy-server $TOXIPROXY_VERSION at $TARGET (and toxiproxy-cli)"
realpath "$TARGET"
