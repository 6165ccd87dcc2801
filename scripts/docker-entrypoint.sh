#!/bin/sh
# The container image's entrypoint (Dockerfile): prepares the data dir on the first run, then
# becomes the supervisor (exec, so doltctl is PID 1 and gets the container's SIGTERM).
#
# `doltctl run` refuses a data dir that does not exist or has no databases it was asked for;
# `doltctl init` creates both and changes nothing on later runs, so it runs every time.
#
# Environment:
#   DOLTCTL_DATA_DIR  the data dir (default: /data, the image's volume)
#   DOLTCTL_DB        databases to create when missing, separated by commas or spaces
#                     (names: letters, digits and _)
#   DOLTCTL_PASSWORD  root's password, set on the server's very first start
#   DOLTCTL_CONFIG    the config (the image sets /etc/doltctl/doltctl.toml)
# Arguments are passed to `doltctl run` (e.g. --read-only).
#
# tests/container.rs runs this script outside Docker, as CI does.
set -eu

data_dir="${DOLTCTL_DATA_DIR:-/data}"

dbs=""
for db in $(printf '%s' "${DOLTCTL_DB:-}" | tr ',' ' '); do
  dbs="$dbs --db $db"
done

if [ -z "${DOLTCTL_PASSWORD:-}" ] && [ ! -e "$data_dir/.doltcfg/privileges.db" ]; then
  echo "doltctl-entrypoint: warning: DOLTCTL_PASSWORD is not set: root gets an empty password" \
    "on this first start, and the server listens on every interface" >&2
fi

# $dbs is split on purpose: database names contain no spaces or glob characters (init checks).
# shellcheck disable=SC2086
doltctl --data-dir "$data_dir" init --quiet $dbs
exec doltctl --data-dir "$data_dir" run "$@"
