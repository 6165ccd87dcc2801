# Shared by the scripts that build a pinned Go tool from the Go module proxy (install-dolt.sh,
# install-toxiproxy.sh). Source it after defining `log`.

# installed_version VERSION VERSION_OF CANDIDATE...: prints the real path of the first
# candidate whose `VERSION_OF CANDIDATE` is VERSION (empty candidates are skipped); fails when
# none is.
installed_version() {
  local want=$1 version_of=$2 c
  shift 2
  for c in "$@"; do
    [ -n "$c" ] || continue
    if [ "$("$version_of" "$c")" = "$want" ]; then
      realpath "$c"
      return 0
    fi
  done
  return 1
}

# require_go MIN WHAT: a Go of at least MIN on PATH, else says so (for building WHAT) and exits.
require_go() {
  local min=$1 what=$2 have
  if ! command -v go >/dev/null 2>&1; then
    log "Go is not installed; Go >= $min is needed to build $what"
    exit 1
  fi
  have=$(go env GOVERSION | sed 's/^go//')
  if [ "$(printf '%s\n%s\n' "$min" "$have" | sort -V | head -n 1)" != "$min" ]; then
    log "Go $have is too old: $what needs Go >= $min."
    log "Install a newer Go from your distribution; these scripts fetch no toolchains."
    exit 1
  fi
}
