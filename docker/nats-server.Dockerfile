# The NATS server of the compose deployment: the official nats-server, built
# by scripts/build-images.sh from the Go module klring already depends on, as
# a static binary in an empty image (no registry is needed to build it).
FROM scratch
ARG REVISION=unknown
LABEL org.opencontainers.image.title="klring nats-server" \
      org.opencontainers.image.revision="${REVISION}"
COPY rootfs/ /
USER 65532:65532
EXPOSE 4222
ENTRYPOINT ["/nats-server"]
CMD ["--config", "/etc/nats/nats-server.conf"]
