# The klring coordinator: a static binary (CGO_ENABLED=0) built on the host by
# scripts/build-images.sh, in an empty image. It writes its run directory to
# /data, which docker-compose.yml mounts as a named volume.
FROM scratch
ARG REVISION=unknown
LABEL org.opencontainers.image.title="klring coordinator" \
      org.opencontainers.image.revision="${REVISION}"
COPY rootfs/ /
COPY --chown=65532:65532 data/ /data/
USER 65532:65532
WORKDIR /data
ENV KLRING_RUN_DIR=/data \
    KLRING_RUN_METRICS_ADDR=:9090
EXPOSE 9090
ENTRYPOINT ["/coordinator"]
CMD ["run"]
