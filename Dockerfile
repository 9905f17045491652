# Multi-stage build: compile in the Rust image, run in a slim Debian image
# as an unprivileged user, with the data folder as a volume.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY actors actors
COPY benches benches
COPY config config
COPY src src
RUN cargo build --release --locked --bin switchboard

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/switchboard switchboard \
    && mkdir -p /var/lib/switchboard /etc/switchboard \
    && chown switchboard:switchboard /var/lib/switchboard
COPY --from=build /src/target/release/switchboard /usr/local/bin/switchboard
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
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["switchboard", "healthcheck", "--config", "/etc/switchboard/switchboard.toml"]
ENTRYPOINT ["switchboard"]
CMD ["serve", "--config", "/etc/switchboard/switchboard.toml"]
