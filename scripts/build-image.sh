#!/usr/bin/env bash
# Build the local Debian systemd image used by molecule and the demo:
#   scripts/build-image.sh 12   -> local/debian-systemd:12 (bookworm)
#   scripts/build-image.sh 13   -> local/debian-systemd:13 (trixie)
# No container registry is reachable: the root filesystem is made with
# debootstrap from the apt mirror this machine is configured with, then
# `docker import`ed. Skipped when the tag already exists (FORCE=1 rebuilds).
set -euo pipefail

release=${1:?usage: build-image.sh 12|13}
case "$release" in
    12) suite=bookworm ;;
    13) suite=trixie ;;
    *) echo "build-image: unknown Debian release '$release' (12 or 13)" >&2; exit 2 ;;
esac
tag=${IMAGE_PREFIX:-local/debian-systemd}:$release

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$tag" >/dev/null 2>&1; then
    echo "build-image: $tag exists, skipping"
    exit 0
fi

# The Debian mirror apt is configured with (scripts/debian-mirror.sh).
mirror=$(bash "$(dirname "$0")/debian-mirror.sh") || exit 1

command -v debootstrap >/dev/null || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}

rootfs=$(mktemp -d /var/tmp/rootfs-"$suite".XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
start=$(date +%s)
echo "build-image: debootstrap $suite into $rootfs"
debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,python3,dbus,iproute2,sudo,ca-certificates \
    "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    tail -n 40 "$rootfs.log" >&2
    exit 1
}
rm -f "$rootfs.log"
# Keep the image small and let apt in the container work without extra steps.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import \
    -c 'CMD ["/lib/systemd/systemd"]' \
    -c 'ENV container=docker' \
    - "$tag" >/dev/null
echo "build-image: $tag built in $(( $(date +%s) - start ))s"
