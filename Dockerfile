# syntax=docker/dockerfile:1
#
# trailwarden container image.
#
# Build:  docker build --build-arg TRAILWARDEN_BUILD_COMMIT="$(git rev-parse --short=12 HEAD)" \
#           -t trailwarden .
# Run:    the ENTRYPOINT is `trailwarden run`; settings come from TRAILWARDEN_* environment
#         variables, or from a mounted file passed as `--config /etc/trailwarden/trailwarden.toml`.
#         The builtin rules are compiled into the binary; extra Sigma rules can be mounted under
#         /etc/trailwarden/rules and named with TRAILWARDEN_RULE_DIRS=/etc/trailwarden/rules.
# The image writes nothing to disk, so it runs with a read-only root filesystem.

# ---- build stage ---------------------------------------------------------------------------
# Debian bookworm, to match the glibc of the distroless runtime image below.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src

# .git stays out of the context, so the commit `trailwarden --version` reports is passed in:
# docker build --build-arg TRAILWARDEN_BUILD_COMMIT="$(git rev-parse --short=12 HEAD)" .
ARG TRAILWARDEN_BUILD_COMMIT=""
ENV TRAILWARDEN_BUILD_COMMIT=${TRAILWARDEN_BUILD_COMMIT}

# .dockerignore lets in only what cargo needs: the manifest and lockfile, src/, the rules/
# that are embedded at compile time, and the target directories Cargo.toml may declare.
COPY . .

# The cache mounts keep downloaded crates and compiled dependencies between builds on the
# same builder, so a source change recompiles only trailwarden itself. target/ lives in a
# cache mount, so the binary is copied out of it in the same step.
# --locked fails the build when Cargo.lock does not match Cargo.toml.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin trailwarden \
    && install -D -m 0755 target/release/trailwarden /out/trailwarden

# ---- runtime stage -------------------------------------------------------------------------
# distroless/cc: glibc, libgcc and CA certificates (the AWS SDK reads the system trust
# store), no shell, no package manager. The :nonroot tag defaults to uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="trailwarden" \
      org.opencontainers.image.description="CloudTrail security monitor: Sigma rules over CloudTrail logs, alerts to SNS" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=build /out/trailwarden /usr/local/bin/trailwarden

# Numeric, so that orchestrators that check runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532

# Asks the daemon's own health endpoint (TRAILWARDEN_HEALTH_LISTEN, 127.0.0.1:9090 by
# default). ECS ignores this instruction and uses the task definition's health check, which
# runs the same command; this one serves `docker run` and other runtimes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/trailwarden", "healthcheck"]

# Arguments given to `docker run IMAGE ...` are appended, e.g. `--config FILE`.
ENTRYPOINT ["/usr/local/bin/trailwarden", "run"]
