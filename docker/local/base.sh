#!/bin/sh
# Makes the base image the project's Dockerfile builds on (PYTHON_IMAGE) when no registry can
# be reached: Debian bookworm with Python 3.11, from debootstrap, imported into podman as
# localhost/edge-gateway-base:<hash of this file>. Also what the stand-ins for Mosquitto and
# VictoriaMetrics (docker/local/standins.Dockerfile) start from. Run as root:
#   sh docker/local/base.sh            # prints the image name; does nothing if it exists
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tag=$(sha256sum "$here/base.sh" | cut -c1-12)
image="localhost/edge-gateway-base:$tag"
if podman image exists "$image"; then
    echo "$image"
    exit 0
fi
rootfs=$(mktemp -d /var/tmp/edge-gateway-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$rootfs" http://deb.debian.org/debian >&2
# The host's CA bundle: HTTPS to the package indexes may be re-signed by a proxy here.
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | podman import --change 'CMD ["python3"]' - "$image" >&2
echo "$image"
