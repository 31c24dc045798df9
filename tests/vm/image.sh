#!/bin/sh
# Build one VM image from Debian packages only: tests/vm/image.sh SUITE OUTDIR
#
# OUTDIR receives root.img (ext4, raw), vmlinuz and initrd.img (the suite's own kernel and
# initramfs, extracted so QEMU boots them with -kernel/-initrd) and versions.txt. The harness
# (vm.py) names OUTDIR after a hash of this file and everything under guest/, so editing the
# recipe makes a new image; a finished image is never written again (each boot writes to a
# throw-away qcow2 overlay).
set -eu
suite=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
mirror=${ENVBOX_VM_MIRROR:-http://deb.debian.org/debian}

# What the guest needs: systemd as PID 1 with logind and a user manager per login (libpam-systemd,
# dbus-user-session gives the user bus at $XDG_RUNTIME_DIR/bus), the suite's kernel with an
# initramfs, what tests/run would otherwise apt-get (so a run needs no apt), and the tools the
# VM tests compare against or drive (bubblewrap, strace, gio from libglib2.0-bin).
pkgs=systemd,systemd-sysv,dbus,dbus-user-session,libpam-systemd,udev,kmod,linux-image-amd64,initramfs-tools
pkgs=$pkgs,python3,python3-venv,ca-certificates,desktop-file-utils,dpkg-dev,zstd,xz-utils,util-linux,passwd
pkgs=$pkgs,procps,iproute2,strace,bubblewrap,libglib2.0-bin,psmisc,sudo,e2fsprogs

rootfs="$out/rootfs"
rm -rf "$rootfs"
mkdir -p "$out"
# --variant=apt: only Essential packages + apt + what we list; recommends off keeps it small.
mmdebstrap --variant=apt --include="$pkgs" --components=main \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --customize-hook="sh '$here/guest/customize.sh' \"\$1\" '$here/guest'" \
    "$suite" "$rootfs" "$mirror"

cp "$(ls -1 "$rootfs"/boot/vmlinuz-* | sort -V | tail -n 1)" "$out/vmlinuz"
cp "$(ls -1 "$rootfs"/boot/initrd.img-* | sort -V | tail -n 1)" "$out/initrd.img"
{
    echo "suite: $suite"
    echo "kernel: $(basename "$(ls -1 "$rootfs"/boot/vmlinuz-* | sort -V | tail -n 1)" | sed 's/^vmlinuz-//')"
    echo "systemd: $(chroot "$rootfs" dpkg-query -W -f='${Version}' systemd)"
    echo "python3: $(chroot "$rootfs" dpkg-query -W -f='${Version}' python3)"
} > "$out/versions.txt"
# A sparse 8 GiB ext4 filled from the tree (no loop device or mount needed).
rm -f "$out/root.img"
mkfs.ext4 -q -L envbox-vm -d "$rootfs" "$out/root.img" 8G
rm -rf "$rootfs"
