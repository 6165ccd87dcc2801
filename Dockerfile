# syntax=docker/dockerfile:1
# doltctl and the pinned dolt in a slim image; doltctl supervises dolt sql-server as PID 1.
# See README "Containers and Kubernetes". Every command below is one CI runs too:
# scripts/install-dolt.sh, cargo build --release --locked, and (tests/container.rs)
# scripts/docker-entrypoint.sh (doltctl init + doltctl run) and the HEALTHCHECK command.
#
#   docker build -t doltctl .
#   docker run -d --name db -p 3306:3306 -e DOLTCTL_PASSWORD=secret -e DOLTCTL_DB=app \
#     -v doltdata:/data doltctl

# dolt, built exactly as scripts/install-dolt.sh builds it (its pinned version, cgo, no ICU).
# The script needs Go >= 1.26.2; bookworm, so the binary's glibc matches the runtime image.
FROM golang:1.26-bookworm AS dolt
COPY scripts/install-dolt.sh /src/install-dolt.sh
RUN DOLTCTL_DOLT_PREFIX=/opt/dolt bash /src/install-dolt.sh

# doltctl, with the locked dependencies.
FROM rust:1.95-bookworm AS doltctl
# protoc: etcd-client (the cluster's election) compiles etcd's .proto files at build time.
RUN apt-get update && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock README.md ./
COPY config config
COPY src src
RUN cargo build --release --locked --bin doltctl

FROM debian:bookworm-slim
# A fixed non-root uid/gid, the one deploy/kubernetes runs as.
RUN groupadd --system --gid 10001 doltctl \
 && useradd --system --uid 10001 --gid doltctl --home-dir /home/doltctl --create-home \
      --shell /usr/sbin/nologin doltctl \
 && mkdir /data \
 && chown doltctl:doltctl /data
COPY --from=dolt /opt/dolt/bin/dolt /usr/local/bin/dolt
COPY --from=doltctl /src/target/release/doltctl /usr/local/bin/doltctl
COPY config/docker.toml /etc/doltctl/doltctl.toml
COPY scripts/docker-entrypoint.sh /usr/local/bin/doltctl-entrypoint
# DOLT_ROOT_HOST: root may log in from other containers, not only from localhost (read by
# dolt on the very first start only, as DOLTCTL_PASSWORD is).
ENV DOLTCTL_CONFIG=/etc/doltctl/doltctl.toml \
    DOLT_BIN=/usr/local/bin/dolt \
    DOLT_DISABLE_EVENT_FLUSH=1 \
    DOLT_ROOT_HOST=%
USER 10001:10001
WORKDIR /home/doltctl
VOLUME /data
# MySQL protocol; Prometheus metrics ([metrics] listen in config/docker.toml).
EXPOSE 3306 9850
# doltctl stops dolt gracefully on SIGTERM (SIGKILL after stop_timeout), then exits.
STOPSIGNAL SIGTERM
# A real SELECT 1 against the server doltctl recorded; exit 0 when it answers.
HEALTHCHECK --interval=10s --timeout=10s --start-period=60s --retries=3 \
  CMD ["doltctl", "--data-dir", "/data", "status", "--live"]
ENTRYPOINT ["doltctl-entrypoint"]
