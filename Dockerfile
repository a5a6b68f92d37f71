# The server image the chart runs: `docker build -t REGISTRY/apisix-canary:TAG .`
# Build stage: the workspace at its locked versions, without the `testbed` feature (the
# simulated cluster, `sim` and `demo`: the image runs `serve` only). Run stage: distroless, no shell,
# user 65532 (`nonroot`), the binary as the entrypoint, so the chart's `args: ["serve"]`
# selects the command. The pod's read-only root filesystem needs nothing writable but
# /tmp, which the chart mounts.
FROM docker.io/library/rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --no-default-features --bin apisix-canary

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/apisix-canary /usr/local/bin/apisix-canary
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/apisix-canary"]
CMD ["serve"]
