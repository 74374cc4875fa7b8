# syntax=docker/dockerfile:1
# The `wedge` server image: `docker build -t wedge .` at the repository root
# (BuildKit). Routes are not in it: mount them at /routes (see
# deploy/kubernetes/ and docs/operations.md).

# Build: the Rust release the workspace requires (rust-version 1.95), on
# Debian 12 like the runtime stage, so the binary's glibc matches. The slim
# image has the C compiler that ring needs.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Every workspace member's folder: cargo loads all members' manifests to
# resolve the workspace, and --locked needs Cargo.lock to match them all.
# Only `wedge` (host/) is compiled, and it reads wit/ as it compiles (the
# key-value interfaces' bindings are generated from wit/deps/keyvalue.wit).
# Guests, examples and docs stay out (.dockerignore also drops tests'
# fixtures and end-to-end tests).
COPY Cargo.toml Cargo.lock ./
COPY wit wit
COPY host host
COPY baseline baseline
COPY tests tests
COPY toolchains toolchains
COPY xtask xtask
# Cache mounts keep downloaded crates and build output between builds
# (wasmtime takes minutes to compile); the binary is copied out because a
# cache mount is not part of the image. /out/cache and /out/data become the
# image's /cache and /data, owned by the runtime user, for runs without a
# volume there (a new named volume at /data, as in `docker run -v
# wedge-data:/data`, starts as a copy of it, owner and mode included).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p wedge \
    && install -D -m 0755 target/release/wedge /out/wedge \
    && install -d -m 0700 -o 65532 -g 65532 /out/cache /out/data

# Runtime: glibc and libgcc (what a Rust binary links) and nothing else: no
# shell, no package manager. `nonroot` is uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/wedge /usr/local/bin/wedge
# --chown: COPY makes files root's unless told otherwise.
COPY --from=build --chown=65532:65532 /out/cache /cache
COPY --from=build --chown=65532:65532 /out/data /data
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
# 3000: the routes. 9000: admin (/healthz, /readyz, /metrics, /routes).
EXPOSE 3000 9000
ENTRYPOINT ["/usr/local/bin/wedge"]
# The compile cache and the embedded key-value stores are subfolders: wedge
# creates each 0700 and refuses one that group or others can write (a
# Kubernetes emptyDir is 0777). Mount a volume at /data to keep the stores
# when the container goes; wedge opens --data-dir at every start-up, and the
# default (.wedge/data under the working folder, /) is not writable.
CMD ["serve", "/routes", "--listen", "0.0.0.0:3000", "--admin", "0.0.0.0:9000", "--cache-dir", "/cache/wedge", "--data-dir", "/data/wedge", "--log-format", "json"]
