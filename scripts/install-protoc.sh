#!/usr/bin/env bash
# Makes sure `protoc` is there: the etcd-client crate (a cluster's election) compiles etcd's
# .proto files when doltctl is built. Installs Debian's protobuf-compiler as root with apt-get;
# otherwise says what to install. Idempotent and quick when protoc is there (or PROTOC names it).
set -euo pipefail
if [ -n "${PROTOC:-}" ] && [ -x "$PROTOC" ]; then
  exit 0
fi
if command -v protoc >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "install-protoc: installing protobuf-compiler (apt-get)" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >&2
  exit 0
fi
echo "building doltctl needs protoc (the Protocol Buffers compiler): install it, e.g." \
  "\`sudo apt-get install protobuf-compiler\` (Debian, Ubuntu) or \`brew install protobuf\`" \
  "(macOS), or set PROTOC to its path" >&2
exit 1
