# linkhub as a container: a Rust build stage and a small runtime stage.
#   docker build -t linkhub .
#   docker run --rm -p 8080:8080 -e DATABASE_URL=... -e REDIS_URL=... linkhub
# See docker-compose.yml for the service with its PostgreSQL and Redis.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target caches speed up rebuilds; the binary is copied out
# of the cache mount so the next stage can take it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p linkhub --bin linkhub \
    && cp target/release/linkhub /usr/local/bin/linkhub

# glibc and libgcc only (the binary needs nothing else: PostgreSQL and Redis
# are spoken in pure Rust), no shell, and a non-root user (uid 65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/linkhub /usr/local/bin/linkhub
ENV BIND_ADDR=0.0.0.0:8080 \
    RUST_LOG=info
EXPOSE 8080
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/linkhub"]
CMD ["serve"]
