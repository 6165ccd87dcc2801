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

# use_scratch_go_caches DIR: points Go's module and build caches into DIR, which the caller
# removes after the build. These tools are built once per pin and installed as single binaries;
# dolt's caches alone are a few GB that would otherwise stay behind on a machine whose disk the
# Rust test build needs next (CI once failed on "No space left on device").
# -modcacherw: the module cache is read-only by default, which would make DIR hard to remove.
use_scratch_go_caches() {
  export GOMODCACHE="$1/mod" GOCACHE="$1/build" GOFLAGS="${GOFLAGS:-} -modcacherw"
}
