#!/usr/bin/env bash
# Build the demo/e2e guest: a small Debian 12 desktop as a qcow2.
#
#   scripts/build-guest-image.sh            -> prints the image's path
#
# What is in it: the Debian kernel, GRUB (BIOS, core image in the post-MBR gap), systemd, Xorg with
# the qxl and modesetting drivers, openbox, an xterm titled "Ravada desktop",
# the wallpaper colour #3465a4 (xsetroot; the e2e checks look for it), getty
# autologin of the user "demo" (password "demo") on tty1 that runs startx,
# spice-vdagent (display follows the client window) and qemu-guest-agent.
#
# Offline: every package comes from the Debian mirror this machine's apt is
# configured with (read from /etc/apt/sources.list*, like build-image.sh), no
# other download. Root is needed (loop device, mount, chroot).
#
# Cached: the image is named after a checksum of this script (the recipe: the
# package list and every file it writes are in here) and of the mirror and
# suite, in $RAVADA_IMAGE_CACHE (default /var/cache/ravada-ci). A second call
# with the same recipe only prints the path. `debian-desktop.qcow2` in the same
# directory is a symlink to the newest build. FORCE=1 rebuilds.
set -euo pipefail

suite=bookworm
cache=${RAVADA_IMAGE_CACHE:-/var/cache/ravada-ci}
disk_size=${GUEST_DISK_SIZE:-3G}   # virtual size; the qcow2 file holds only what is used
wallpaper='#3465a4'

log() { echo "build-guest-image: $*" >&2; }

mirror=$(bash "$(dirname "$0")/debian-mirror.sh") || exit 1

recipe=$( { cat "$0"; echo "$mirror $suite $disk_size"; } | sha256sum | cut -c1-16)
image=$cache/debian-desktop-$recipe.qcow2
if [ "${FORCE:-0}" != 1 ] && [ -s "$image" ]; then
    ln -sfn "$(basename "$image")" "$cache/debian-desktop.qcow2"
    log "cached ($recipe)"
    echo "$image"
    exit 0
fi

for tool in debootstrap grub-mkimage qemu-img mkfs.ext4 sfdisk; do
    command -v "$tool" >/dev/null || {
        log "$tool is missing (Debian packages: debootstrap grub-pc-bin qemu-utils e2fsprogs fdisk)"
        exit 1
    }
done
grub_dir=/usr/lib/grub/i386-pc
[ -r "$grub_dir/boot.img" ] || { log "$grub_dir is missing (Debian package grub-pc-bin)"; exit 1; }

packages=(
    # boot and base system
    linux-image-amd64 initramfs-tools systemd-sysv udev dbus dbus-user-session libpam-systemd kmod
    zstd procps less
    # the X session: server, qxl + modesetting drivers, input, a window manager, a terminal
    xserver-xorg-core xserver-xorg-video-qxl xserver-xorg-input-libinput xinit
    x11-xserver-utils xfonts-base openbox xterm
    # SPICE agent (clipboard, display resize) and the QEMU guest agent
    spice-vdagent qemu-guest-agent
)

mkdir -p "$cache" "$cache/debs"
work=$(mktemp -d /var/tmp/guest-image.XXXXXX)
raw=$work/disk.raw
root=$work/root   # the root filesystem is made here, then copied into the disk by mkfs
cleanup() {
    set +e
    for fs in "$root/dev/pts" "$root/dev" "$root/proc" "$root/sys"; do
        mountpoint -q "$fs" && umount -l "$fs"
    done
    # never rm -rf through a mount (the chroot's /dev is the host's)
    if grep -q " $work" /proc/mounts; then
        log "left $work behind: something is still mounted there"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
start=$(date +%s)

log "debootstrap $suite from $mirror (${#packages[@]} packages + dependencies)"
# No recommends: only what is listed and what it depends on. Downloaded packages are
# kept in $cache/debs for the next build.
# INITRD=No: the kernel's hook makes no initramfs yet (one is made below, small).
if ! INITRD=No debootstrap --variant=minbase --cache-dir="$cache/debs" \
        --include="$(IFS=,; echo "${packages[*]}")" \
        "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 40 "$work/debootstrap.log" >&2
    [ -f "$root/debootstrap/debootstrap.log" ] && tail -n 40 "$root/debootstrap/debootstrap.log" >&2
    exit 1
fi
log "debootstrap done after $(( $(date +%s) - start ))s"

mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; }

uuid=$(cat /proc/sys/kernel/random/uuid)
echo "UUID=$uuid / ext4 errors=remount-ro,noatime 0 1" >"$root/etc/fstab"
echo ravada-desktop >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\travada-desktop\n' >"$root/etc/hosts"
cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
EOF

# Kernel modules the guest never needs (hardware a KVM guest does not have);
# the initramfs holds only what finds the root disk.
kver=$(basename "$(ls -d "$root"/lib/modules/*)")
moddir=$root/lib/modules/$kver/kernel
rm -rf "$moddir"/sound "$moddir"/drivers/{media,infiniband,isdn,staging,bluetooth,iio,misc/cardreader}
rm -rf "$moddir"/drivers/net/{wireless,ethernet,can,usb}
rm -rf "$moddir"/net/{wireless,mac80211,bluetooth}
find "$moddir"/drivers/gpu/drm -mindepth 1 -maxdepth 1 -type d \
    ! -name qxl ! -name virtio ! -name tiny ! -name ttm ! -name display ! -name scheduler \
    -exec rm -rf {} +
in_root depmod "$kver"
cat >"$root/etc/initramfs-tools/conf.d/ravada.conf" <<'EOF'
MODULES=list
COMPRESS=zstd
EOF
printf '%s\n' virtio_pci virtio_blk virtio_scsi ext4 >"$root/etc/initramfs-tools/modules"
in_root update-initramfs -c -k "$kver" >/dev/null

# Bootloader: GRUB reads this (the core image below has the modules to find it).
mkdir -p "$root/boot/grub"
cat >"$root/boot/grub/grub.cfg" <<EOF
set timeout=0
linux /boot/vmlinuz-$kver root=UUID=$uuid ro quiet console=tty0 systemd.show_status=false
initrd /boot/initrd.img-$kver
boot
EOF

# The demo user, logged in automatically on tty1; its login shell starts X.
in_root useradd -m -s /bin/bash -G video,audio,input demo
echo 'demo:demo' | in_root chpasswd
mkdir -p "$root/etc/systemd/system/getty@tty1.service.d"
cat >"$root/etc/systemd/system/getty@tty1.service.d/autologin.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin demo --noclear --noissue %I $TERM
EOF
cat >"$root/home/demo/.bash_profile" <<'EOF'
if [ -z "$DISPLAY" ] && [ "$(tty)" = /dev/tty1 ]; then
    exec startx -- -nolisten tcp >"$HOME/.xsession.log" 2>&1
fi
EOF
cat >"$root/home/demo/.xinitrc" <<EOF
# The Ravada demo desktop: a known wallpaper colour, the SPICE agent, a terminal.
xsetroot -solid '$wallpaper'
spice-vdagent
xterm -title 'Ravada desktop' -geometry 80x20+48+48 &
exec openbox
EOF
in_root chown -R demo:demo /home/demo

# Boot fast: no waiting for a network, no periodic jobs.
in_root systemctl enable systemd-networkd >/dev/null 2>&1
mkdir -p "$root/etc/systemd/network"
printf '[Match]\nName=en*\n\n[Network]\nDHCP=yes\n' >"$root/etc/systemd/network/50-dhcp.network"
in_root systemctl mask systemd-networkd-wait-online.service apt-daily.timer \
    apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer >/dev/null 2>&1 || true
in_root systemctl set-default graphical.target >/dev/null

# Small: no package caches, documentation or man pages.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/debootstrap "$root"/var/log/*.log
umount -l "$root/dev/pts" "$root/dev" "$root/proc" "$root/sys"

# One MBR partition from 1 MiB holding ext4, filled from $root (mke2fs -d, no loop
# device or mount needed); GRUB's boot.img in the MBR loads its core image from the
# sectors after it (the gap before the partition), which finds /boot/grub/grub.cfg.
# (extlinux does not run under nested KVM: an emulation failure in its mode switches.)
truncate -s "$disk_size" "$raw"
echo 'start=2048, type=83, bootable' | sfdisk -q "$raw"
fs_kib=$(( $(stat -c %s "$raw") / 1024 - 1024 ))
mkfs.ext4 -q -F -L rvd-root -U "$uuid" -E offset=1048576 -d "$root" "$raw" "${fs_kib}k"
grub-mkimage -O i386-pc -o "$work/core.img" -p '(hd0,msdos1)/boot/grub' \
    biosdisk part_msdos ext2 normal linux configfile
[ "$(stat -c %s "$work/core.img")" -lt $(( 2047 * 512 )) ] || { log "core.img too big"; exit 1; }
dd if="$grub_dir/boot.img" of="$raw" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$raw" bs=512 seek=1 conv=notrunc status=none
qemu-img convert -c -O qcow2 "$raw" "$work/disk.qcow2"
mv "$work/disk.qcow2" "$image"
ln -sfn "$(basename "$image")" "$cache/debian-desktop.qcow2"
# Older builds of other recipes go.
find "$cache" -maxdepth 1 -name 'debian-desktop-*.qcow2' ! -name "$(basename "$image")" -delete
log "built $image in $(( $(date +%s) - start ))s ($(du -h "$image" | cut -f1) on disk, virtual $disk_size)"
echo "$image"
