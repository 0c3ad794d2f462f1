# syntax=docker/dockerfile:1
#
# plumb's image: one static-ish binary on distroless, non-root, no shell.
#
#   docker build --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) -t plumb .
#
# Reproducible: the build is --locked to Cargo.lock, paths are remapped out of the binary,
# SOURCE_DATE_EPOCH pins every timestamp (BuildKit >= 0.13 rewrites layer and file times
# from it with `--output type=image,rewrite-timestamp=true`), and the base images should be
# pinned by digest in CI (RUST_IMAGE / RUNTIME_IMAGE build args, e.g.
# rust:1.95-bookworm@sha256:...).
#
# The runtime is gcr.io/distroless/cc-debian12 (glibc, libgcc, CA certificates): libgit2,
# libssh2, zlib and OpenSSL (vendored, built here with the image's perl and make) are linked
# statically, as is aws-lc-rs (rustls); git2 and native-tls find the image's CA bundle at
# start. The builder checks the binary needs nothing else.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
ARG SOURCE_DATE_EPOCH=0
ENV SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH} \
    CARGO_INCREMENTAL=0 \
    CARGO_NET_RETRY=5 \
    LIBZ_SYS_STATIC=1 \
    LIBSSH2_SYS_USE_PKG_CONFIG= \
    RUSTFLAGS="--remap-path-prefix=/src=/plumb --remap-path-prefix=/usr/local/cargo=/cargo -C link-arg=-Wl,--build-id=none"
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev cmake clang \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked -p plumb --bin plumb \
 && cp target/release/plumb /plumb \
 && ldd /plumb \
 && ! ldd /plumb | grep -vE 'linux-vdso|ld-linux|libc\.so|libm\.so|libgcc_s|libpthread|libdl|librt' \
 && /plumb version

FROM ${RUNTIME_IMAGE}
COPY --from=build --chown=0:0 --chmod=0555 /plumb /plumb
# distroless' nonroot user; the Helm chart also sets runAsUser 65532.
USER 65532:65532
EXPOSE 9090 8080 9440 9292
ENTRYPOINT ["/plumb"]
CMD ["run"]
