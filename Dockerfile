# Switchyard's container image (docs/deploy.md).
#
#   docker build -t switchyard .
#   docker run -d --name switchyard -p 8080:8080 \
#       -v "$PWD/conf/switchyard.yml:/etc/switchyard/switchyard.yml:ro" switchyard
#
# Two stages: the Swift toolchain builds a release binary with the Swift runtime linked in
# statically; the image is `scratch` plus that binary, the shared libraries `ldd` lists for
# it (OpenSSL, nghttp2, glibc, libstdc++), CA certificates, a non-root user and busybox for
# the HEALTHCHECK (scripts/image-rootfs). On a machine with no registry, scripts/image
# builds the same final stage from a root filesystem assembled locally.
#
# Build arguments: SWIFT_IMAGE (the toolchain image), SWITCHYARD_COMMIT and
# SWITCHYARD_BUILD_DATE (shown by `switchyard --version`; .git is not sent to the build).

# The toolchain the project is built and tested with (Swift 6.3).
ARG SWIFT_IMAGE=docker.io/library/swift:6.3-bookworm

# MARK: build
FROM ${SWIFT_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev libnghttp2-dev pkg-config busybox-static libcap2-bin ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ARG SWITCHYARD_COMMIT=unknown
ARG SWITCHYARD_BUILD_DATE=
RUN SWITCHYARD_COMMIT="$SWITCHYARD_COMMIT" SWITCHYARD_BUILD_DATE="$SWITCHYARD_BUILD_DATE" \
    swift build -c release --static-swift-stdlib --product switchyard \
 && scripts/image-rootfs .build/release/switchyard /image

# MARK: runtime (scripts/image builds this stage from its own root filesystem)
FROM scratch AS runtime
COPY --from=build /image/rootfs/ /
COPY --from=build --chown=10001:10001 /image/state/ /var/lib/switchyard/
USER 10001:10001
WORKDIR /var/lib/switchyard
ENV SWITCHYARD_ADMIN=http://127.0.0.1:9901
EXPOSE 8080
# The admin API's liveness answer; set SWITCHYARD_ADMIN when the config moves the admin API.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/busybox", "sh", "-c", "exec /usr/local/bin/busybox wget -q -O /dev/null \"${SWITCHYARD_ADMIN:-http://127.0.0.1:9901}/healthz\""]
# SIGTERM drains (timeouts.drain); give `docker stop -t` at least that long.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["run", "--config", "/etc/switchyard/switchyard.yml"]
