# The klring worker: a static binary (CGO_ENABLED=0) built on the host by
# scripts/build-images.sh, in an empty image. It keeps nothing on disk.
FROM scratch
ARG REVISION=unknown
LABEL org.opencontainers.image.title="klring worker" \
      org.opencontainers.image.revision="${REVISION}"
COPY rootfs/ /
USER 65532:65532
ENTRYPOINT ["/worker"]
