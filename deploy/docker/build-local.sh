#!/bin/sh
# Build the image where no image registry is reachable, then run it once: a Debian trixie base made from Debian's
# packages (debootstrap), the Dockerfile built on it with podman, and a smoke run (`polyfn version`, then a node
# that must answer /healthz). Needs root, podman, buildah, debootstrap (apt-get install podman buildah debootstrap).
#
#   sh deploy/docker/build-local.sh [TAG]        (default tag localhost/polyfn:dev)
#
# It builds and runs with chroot isolation (`--isolation chroot`): on hosts where the OCI runtimes cannot start a
# container (crun refuses hybrid cgroup v1/v2; no CAP_SYS_RESOURCE to set the container's rlimits) that still
# builds, and it runs the image degraded — the entry point names what is missing, as it would in any container
# without the sandbox's capabilities. Where `podman run --privileged` works, use that for the full sandbox.
set -eu
cd "$(dirname "$0")/../.."
TAG=${1:-localhost/polyfn:dev}
BASE=localhost/debian:trixie-minbase
PORT=${POLYFN_IMAGE_PORT:-28080}

if ! podman image exists "$BASE"; then
  root=$(mktemp -d)
  debootstrap --variant=minbase trixie "$root/rootfs" http://deb.debian.org/debian >"$root/debootstrap.log" 2>&1 \
    || { tail -20 "$root/debootstrap.log"; exit 1; }
  tar -C "$root/rootfs" -c . | podman import - "$BASE" >/dev/null
  rm -rf "$root"
fi

# the host's CA bundle too, for a TLS-intercepting proxy between the build and PyPI
ca=/etc/ssl/certs/ca-certificates.crt
podman build --isolation chroot --network host --build-arg BASE="$BASE" \
  --build-arg PIP_CERT=/etc/host-ca.crt --volume "$ca:/etc/host-ca.crt:ro" -t "$TAG" .

ctr=$(buildah from "$TAG")
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
buildah run --isolation chroot "$ctr" -- polyfn version
buildah run --isolation chroot --network host "$ctr" -- polyfn-entrypoint serve --port "$PORT" --storage-port 0 &
runner=$!
i=0
until curl -fsS "http://127.0.0.1:$PORT/healthz"; do
  i=$((i + 1)); [ $i -lt 120 ] || { kill "$runner"; echo "no answer on :$PORT" >&2; exit 1; }
  sleep 0.5
done
echo
kill -TERM "$runner"  # buildah ends the process it runs (a smoke run: no drain to wait for)
wait "$runner" || true
echo "image $TAG: built and answered /healthz"
