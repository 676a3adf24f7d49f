# Multi-stage build of btcpeerd: compile with the Rust toolchain, run on a slim Debian as a
# non-root user. Build: docker build -t btcpeerd .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY config ./config
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked --bin btcpeerd

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/btcpeer --create-home btcpeer
COPY --from=build /src/target/release/btcpeerd /usr/local/bin/btcpeerd
COPY config /etc/btcpeer
USER btcpeer
WORKDIR /var/lib/btcpeer
ENTRYPOINT ["/usr/local/bin/btcpeerd"]
CMD ["--config", "/etc/btcpeer/regtest.toml"]
