# Multi-stage build: compile in the Rust image, run in a slim Debian image
# as an unprivileged user, with the data folder as a volume.
#
#   docker build -t switchboard .
#   docker run --stop-timeout 30 -p 8080:8080 -v switchboard-data:/var/lib/switchboard \
#     -e SWITCHBOARD_ADMIN__API_KEY=change-me-to-a-long-key switchboard
#
# --stop-timeout: on SIGTERM the broker drains for up to
# `server.shutdown_timeout` (10s by default), then flushes the SQLite WAL
# and exits 0. Docker's default grace is also 10s, after which it sends
# SIGKILL mid-drain, so give it more than shutdown_timeout (30s above; raise
# it with the setting; in Compose: `stop_grace_period`).
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts.
# Base images are pinned to exact release tags; pin them by digest
# (`image@sha256:...`) in your own registry mirror for byte-for-byte builds.

# The build image's Rust is the CI toolchain; .ci/msrv checks that it is at
# least the workspace's rust-version.
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY actors actors
COPY benches benches
COPY config config
COPY src src
# The cargo registry and the target folder are BuildKit cache mounts: a
# rebuild after a source change recompiles only the workspace's own crates,
# not the ~300 dependencies. The target folder is not part of the image, so
# the binary is copied out of it in the same step. Symbols are stripped here
# only ([profile.release] keeps them for local profiling).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked --bin switchboard \
    && cp target/release/switchboard /usr/local/bin/switchboard

# Same Debian release as the build image (bookworm: glibc 2.36).
FROM debian:12.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/switchboard switchboard \
    && mkdir -p /var/lib/switchboard /etc/switchboard \
    && chown switchboard:switchboard /var/lib/switchboard
COPY --from=build /usr/local/bin/switchboard /usr/local/bin/switchboard
# The documented default; mount your own file over it to change settings.
COPY config/switchboard.toml /etc/switchboard/switchboard.toml
ENV SWITCHBOARD_STORAGE__PATH=/var/lib/switchboard/switchboard.db \
    SWITCHBOARD_CONCIERGE__FILES_DIR=/var/lib/switchboard/files \
    RUST_LOG=info
USER switchboard
WORKDIR /var/lib/switchboard
VOLUME ["/var/lib/switchboard"]
EXPOSE 8080
STOPSIGNAL SIGTERM
# Readiness, not mere liveness: /readyz answers 200 only while the store and
# the registry answer, so a wedged store marks the container unhealthy.
# With another port or TLS (https, whose certificate does not name
# 127.0.0.1), override this with `--health-cmd`.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["switchboard", "healthcheck", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["switchboard"]
CMD ["serve", "--config", "/etc/switchboard/switchboard.toml"]
