#!/usr/bin/env bash
# Builds everything docker-compose.yml (and docker-compose.head.yml,
# docker-compose.worker.yml) needs: static binaries of the coordinator, the
# worker and the official nats-server (from the Go module klring depends on),
# each in a FROM scratch image; the nats-server image holds
# docker/nats-server.conf, docker/nats-server-tls.conf and
# docker/nats-cluster.conf. No image registry
# is contacted.
#
#   bash scripts/build-images.sh            # or: make images
#
# Environment:
#   KLRING_IMAGE_TAG   tag of the images (default: latest), as in docker-compose.yml
#   KLRING_SKIP_GO=1   do not run go build; use the binaries already in KLRING_BIN_DIR
#   KLRING_BIN_DIR     where the binaries are built (default: bin)
set -euo pipefail
cd "$(dirname "$0")/.."

tag=${KLRING_IMAGE_TAG:-latest}
bindir=${KLRING_BIN_DIR:-bin}
stamp() { printf '[build-images %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

command -v docker >/dev/null || { echo "build-images: docker is not installed" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "build-images: the Docker engine does not answer (docker info)" >&2; exit 1; }

# Without the buildx plugin the client must use the classic builder.
if [ -z "${DOCKER_BUILDKIT:-}" ] && ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi

# Binaries for the engine's platform, not necessarily the host's.
goarch=$(docker version --format '{{.Server.Arch}}' 2>/dev/null || true)
goarch=${goarch:-$(go env GOARCH)}
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

mkdir -p "$bindir"
if [ "${KLRING_SKIP_GO:-0}" != 1 ]; then
  command -v go >/dev/null || { echo "build-images: go is not installed" >&2; exit 1; }
  for target in coordinator:./cmd/coordinator worker:./cmd/worker nats-server:github.com/nats-io/nats-server/v2; do
    name=${target%%:*} pkg=${target#*:}
    stamp "go build $pkg -> $bindir/$name (linux/$goarch, static)"
    CGO_ENABLED=0 GOOS=linux GOARCH=$goarch go build -trimpath -ldflags='-s -w' -o "$bindir/$name" "$pkg"
  done
fi
for name in coordinator worker nats-server; do
  [ -x "$bindir/$name" ] || { echo "build-images: $bindir/$name is missing" >&2; exit 1; }
done

# Each image gets a small staged context: the Dockerfile, a root file system
# (the binary, an /etc/passwd naming the unprivileged user, a sticky /tmp) and,
# for the coordinator, an empty /data owned by that user.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
for name in coordinator worker nats-server; do
  ctx="$stage/$name"
  mkdir -p "$ctx/rootfs/etc" "$ctx/rootfs/tmp" "$ctx/data"
  chmod 1777 "$ctx/rootfs/tmp"
  cp "docker/$name.Dockerfile" "$ctx/Dockerfile"
  cp "$bindir/$name" "$ctx/rootfs/$name"
  printf 'root:x:0:0:root:/:/sbin/nologin\nklring:x:65532:65532:klring:/data:/sbin/nologin\n' >"$ctx/rootfs/etc/passwd"
  printf 'root:x:0:\nklring:x:65532:\n' >"$ctx/rootfs/etc/group"
  if [ "$name" = nats-server ]; then
    mkdir -p "$ctx/rootfs/etc/nats"
    cp docker/nats-server.conf docker/nats-server-tls.conf docker/nats-cluster.conf "$ctx/rootfs/etc/nats/"
  fi
  stamp "docker build klring/$name:$tag"
  if ! out=$(docker build --build-arg "REVISION=$revision" -t "klring/$name:$tag" "$ctx" 2>&1); then
    printf '%s\n' "$out" >&2
    echo "build-images: docker build klring/$name:$tag failed" >&2
    exit 1
  fi
done
stamp "done: $(docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' 'klring/*' | grep ":$tag " | tr '\n' ' ')"
