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

# The Debian mirror: first URI of the main archive in the apt sources
# (deb822 "URIs:" lines or one-line "deb URI suite ..." format).
mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' \
        | grep -v -e security -e '^#' | grep '/debian/\?$' | head -n1 || true)
fi
if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' \
        | grep -v security | grep '/debian/\?$' | head -n1 || true)
fi
if [ -z "$mirror" ]; then
    echo "build-image: no Debian mirror found in /etc/apt/sources.list*; set DEBIAN_MIRROR" >&2
    exit 1
fi

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
