#!/usr/bin/env bash
# Print the Debian mirror this machine's apt is configured with: $DEBIAN_MIRROR, else the
# first URI of the main archive in the apt sources (deb822 "URIs:" lines, then one-line
# "deb URI suite ..." entries). Exits 1 with a message when there is none.
# Used by build-image.sh and build-guest-image.sh (no other download source is allowed).
set -euo pipefail

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
    echo "no Debian mirror found in /etc/apt/sources.list*; set DEBIAN_MIRROR" >&2
    exit 1
fi
echo "$mirror"
