#!/usr/bin/env bash
# Installs the Dolt version doltctl is built against (see README "Dolt version").
#
# Idempotent: if a dolt that reports the pinned version is already reachable through DOLT_BIN,
# the install prefix or PATH, nothing is built. Otherwise the pinned release commit is built
# with `go install` from the Go module proxy (Dolt's only go/ tag is a 2022 one, so the release
# is pinned by the pseudo-version of its commit). The absolute path of the binary is the last line of stdout.
#
# Environment:
#   DOLTCTL_DOLT_PREFIX  install prefix (default: $HOME/.local); the binary goes to PREFIX/bin/dolt
#   DOLT_BIN             an existing dolt binary to accept if it has the pinned version
set -euo pipefail

# Dolt 2.3.1 (release commit b15770fe588268027d799c11356af0ce24ba882a) is what doltctl was
# specified against, but the Go module proxy reachable from our machines refuses that commit
# ("403 This module version is not available", for the hash and any pseudo-version of it). The
# newest Dolt release it serves is 2.2.0, pinned here by its canonical pseudo-version; the
# behaviours doltctl relies on were checked against it (see README "Dolt version").
DOLT_VERSION="2.2.0"
DOLT_MODULE_VERSION="v0.40.5-0.20260715172757-a6690826d767"
GO_MIN="1.26.2"
PREFIX="${DOLTCTL_DOLT_PREFIX:-${HOME:-/root}/.local}"
TARGET="$PREFIX/bin/dolt"

log() { echo "install-dolt: $*" >&2; }

# Prints the version a dolt binary reports, or nothing. Runs with a throwaway root path so a
# missing or unusable HOME cannot make the check fail, and with metrics off.
dolt_version_of() {
  local bin=$1 root
  [ -x "$bin" ] || return 0
  root=$(mktemp -d)
  DOLT_ROOT_PATH="$root" DOLT_DISABLE_EVENT_FLUSH=1 "$bin" version 2>/dev/null \
    | sed -n 's/^dolt version \([0-9][0-9.]*\).*/\1/p' | head -n 1 || true
  rm -rf "$root"
}

# shellcheck source=lib/go-tool.sh
. "$(dirname "$0")/lib/go-tool.sh"
if found=$(installed_version "$DOLT_VERSION" dolt_version_of "${DOLT_BIN:-}" "$TARGET" \
  "$(command -v dolt 2>/dev/null || true)"); then
  log "dolt $DOLT_VERSION already installed at $found"
  echo "$found"
  exit 0
fi
require_go "$GO_MIN" "dolt $DOLT_VERSION (its go.mod)"
if ! command -v cc >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1; then
  log "a C compiler is required: dolt builds with cgo (bundled zstd)"
  exit 1
fi

log "building dolt $DOLT_VERSION (module version $DOLT_MODULE_VERSION) with $(go version); this takes minutes"
mkdir -p "$PREFIX/bin"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
use_scratch_go_caches "$scratch"
# gms_pure_go: use Go's regex engine instead of ICU, so no system ICU headers are needed.
# GOTOOLCHAIN=local: never download a toolchain; the check above already ensures ours suffices.
GOBIN="$PREFIX/bin" CGO_ENABLED=1 GOTOOLCHAIN=local GOFLAGS="$GOFLAGS -tags=gms_pure_go" \
  go install "github.com/dolthub/dolt/go/cmd/dolt@$DOLT_MODULE_VERSION" >&2

got=$(dolt_version_of "$TARGET")
if [ "$got" != "$DOLT_VERSION" ]; then
  log "built $TARGET but it reports version '${got:-none}', expected $DOLT_VERSION"
  exit 1
fi
log "installed dolt $DOLT_VERSION at $TARGET"
realpath "$TARGET"
