#!/bin/sh
# mmdebstrap customize hook: customize.sh ROOTFS GUEST_DIR. Turns the bootstrap into a test guest.
set -eu
root=$1
guest=$2

echo envbox-vm > "$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 envbox-vm\n' > "$root/etc/hosts"
# The root file system is the virtio disk; 9p shares are mounted by the runner.
echo '/dev/vda / ext4 rw,relatime 0 1' > "$root/etc/fstab"

# The normal user: uid 1000 with a lingering user manager (user@1000.service starts at boot,
# as on a desktop after the first login). tests/run reuses it as its test user.
chroot "$root" useradd --create-home --uid 1000 --shell /bin/bash envboxtest
mkdir -p "$root/var/lib/systemd/linger"
touch "$root/var/lib/systemd/linger/envboxtest"

# The host's extra CAs (a TLS-inspecting proxy's among them) so the guest reaches the same
# registries the host does.
for f in /usr/local/share/ca-certificates/*.crt; do
    [ -e "$f" ] && cp "$f" "$root/usr/local/share/ca-certificates/"
done
chroot "$root" update-ca-certificates >/dev/null 2>&1

# The runner: one oneshot unit that mounts the shares and runs tests/vm/guest/envbox-vm-run
# from the checkout, which runs the host's command and powers the guest off.
install -m 0755 "$guest/envbox-vm-boot" "$root/usr/local/sbin/envbox-vm-boot"
install -m 0644 "$guest/envbox-vm.service" "$root/etc/systemd/system/envbox-vm.service"
ln -sf /etc/systemd/system/envbox-vm.service "$root/etc/systemd/system/multi-user.target.wants/envbox-vm.service"

# First-boot work done once here instead of at every boot (under TCG the hwdb alone takes tens
# of seconds): a fixed machine id, the hwdb, and /etc/.updated + /var/.updated so the
# ConditionNeedsUpdate= jobs (ldconfig, catalog, sysusers) see nothing to do.
chroot "$root" systemd-machine-id-setup >/dev/null 2>&1 || echo 0123456789abcdef0123456789abcdef > "$root/etc/machine-id"
chroot "$root" systemd-hwdb update >/dev/null 2>&1 || true
touch "$root/etc/.updated" "$root/var/.updated"
# Nothing periodic may run during a test: timers and first-boot jobs only cost time under TCG.
for unit in systemd-hwdb-update.service ldconfig.service systemd-journal-catalog-update.service systemd-update-done.service \
            systemd-firstboot.service \
            apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer e2scrub_reap.service \
            fstrim.timer dpkg-db-backup.timer systemd-timesyncd.service getty@tty1.service \
            systemd-networkd-wait-online.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
# A root without password is not needed: nobody logs in; the runner is the only entry point.
rm -f "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*_Packages* 2>/dev/null || true
