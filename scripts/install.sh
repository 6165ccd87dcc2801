#!/usr/bin/env bash
# Installs doltctl and the dolt it is built against, for use from any shell:
#   - dolt:    scripts/install-dolt.sh (builds the pinned version once, into
#              ${DOLTCTL_DOLT_PREFIX:-$HOME/.local}/bin/dolt unless one is already there);
#   - doltctl: `cargo install --path . --locked`, into cargo's bin dir ($CARGO_INSTALL_ROOT/bin,
#              else $CARGO_HOME/bin, else ~/.cargo/bin).
# doltctl finds dolt in ~/.local/bin (or DOLTCTL_DOLT_PREFIX) without PATH or DOLT_BIN, and
# programs using the library find doltctl in cargo's bin dir, so no shell setup is needed
# beyond cargo's own. Idempotent: a second run builds nothing new and changes nothing.
# Prints where each went; the last two lines of stdout are the paths of dolt and doltctl.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "install: $*" >&2; }

dolt_bin=$(bash scripts/install-dolt.sh | tail -n 1)
prefix="${DOLTCTL_DOLT_PREFIX:-${HOME:-/root}/.local}"
# install-dolt.sh accepts a pinned dolt found elsewhere (DOLT_BIN, PATH) and then builds
# nothing. doltctl looks in PREFIX/bin when PATH has no dolt, so make it available there too.
if [ ! -e "$prefix/bin/dolt" ]; then
  mkdir -p "$prefix/bin"
  ln -s "$dolt_bin" "$prefix/bin/dolt"
  log "linked $prefix/bin/dolt -> $dolt_bin"
fi

if [ -n "${CARGO_INSTALL_ROOT:-}" ]; then
  bin_dir="$CARGO_INSTALL_ROOT/bin"
else
  bin_dir="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin"
fi
bash scripts/install-protoc.sh
log "building doltctl (cargo install --path . --locked)"
cargo install --path . --locked
doltctl_bin="$bin_dir/doltctl"
if [ ! -x "$doltctl_bin" ]; then
  log "cargo install finished but $doltctl_bin is missing; is install.root set in a cargo config?"
  exit 1
fi

log "dolt:    $dolt_bin"
log "doltctl: $doltctl_bin ($("$doltctl_bin" --version))"
case ":$PATH:" in
  *":$bin_dir:"*) ;;
  *) log "$bin_dir is not on PATH: add it (rustup's installer does, in ~/.profile) to type \`doltctl\`" ;;
esac
printf '%s\n%s\n' "$dolt_bin" "$doltctl_bin"
