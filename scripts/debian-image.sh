#!/usr/bin/env bash
# Builds the real OS the tests and `make demo DESKTOP=1` put on a pad: a
# Debian 12 system made here with mmdebstrap from Debian's packages (never
# a prebuilt image), on a GPT disk that boots with BIOS (GRUB) and with
# UEFI (Debian's signed shim and GRUB, so with Secure Boot on too), with
# systemd, QEMU's guest agent, DHCP on every Ethernet port, a root login
# without a password on the console (a test system: no secrets on it), and
# soulpad-counter.service: a counter kept in RAM, printed every half second
# on the serial console and the screen, which also says at boot the last
# tick the previous boot left on disk.
#
#   scripts/debian-image.sh [OUTDIR]     default OUTDIR: .cache/debian
#
# Writes OUTDIR/debian.raw (about 1.2 GiB, sparse); does nothing when it is
# up to date with this script. Needs root (mmdebstrap, device nodes) and
# about 3 GB free while it builds; takes 3 to 5 minutes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$root/.cache/debian}
mkdir -p "$out"
out=$(cd "$out" && pwd)
die() { echo "debian-image: $*" >&2; exit 1; }

key=$(sha256sum "$here/debian-image.sh" | cut -c1-16)
if [ -f "$out/.key" ] && [ "$(cat "$out/.key")" = "$key" ] && [ -s "$out/debian.raw" ]; then
  exit 0
fi
[ "$(id -u)" = 0 ] || die "needs root (mmdebstrap makes device nodes and runs the packages' scripts)"
for t in mmdebstrap sgdisk mkfs.vfat mmd mcopy grub-mkimage mke2fs python3; do
  command -v "$t" >/dev/null || die "$t is missing (make deps installs it)"
done
[ -d /usr/lib/grub/i386-pc ] || die "GRUB for BIOS is missing (apt-get install grub-pc-bin)"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/soulpad-debian.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs="$work/root"

# Debian's packages from this machine's own mirror list when it has one.
mirror=http://deb.debian.org/debian
[ -f /etc/apt/sources.list.d/debian.sources ] && mirror=/etc/apt/sources.list.d/debian.sources
echo "debian-image: building Debian 12 with mmdebstrap (a few minutes)"
mmdebstrap --quiet --variant=minbase \
  --include=systemd,systemd-sysv,udev,dbus,linux-image-amd64,initramfs-tools,qemu-guest-agent,kmod,e2fsprogs,procps,iproute2,util-linux,shim-signed,grub-efi-amd64-signed \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  bookworm "$rootfs" "$mirror"

kver=$(basename "$(ls -d "$rootfs"/lib/modules/* | head -n1)")
[ -f "$rootfs/boot/vmlinuz-$kver" ] && [ -f "$rootfs/boot/initrd.img-$kver" ] || die "no kernel and initramfs in the system"
uuid=$(cat /proc/sys/kernel/random/uuid)

echo "debian-image: configuring it"
echo soulpad-test >"$rootfs/etc/hostname"
printf 'UUID=%s / ext4 defaults,discard 0 1\n' "$uuid" >"$rootfs/etc/fstab"
chroot "$rootfs" passwd -q -d root
mkdir -p "$rootfs/etc/systemd/network" "$rootfs/etc/systemd/system/multi-user.target.wants"
printf '[Match]\nName=en*\n\n[Network]\nDHCP=yes\n' >"$rootfs/etc/systemd/network/80-ethernet.network"
ln -sf /lib/systemd/system/systemd-networkd.service "$rootfs/etc/systemd/system/multi-user.target.wants/"
cat >"$rootfs/usr/local/bin/soulpad-counter" <<'EOF'
#!/bin/sh
# Counts in RAM: a resumed machine goes on, a cold-booted one starts at 1.
# The last tick also goes to disk, so a boot says what the last one left.
state=/var/lib/soulpad-counter
mkdir -p "$state"
say() { for t in /dev/ttyS0 /dev/tty1; do echo "$*" >"$t" 2>/dev/null; done; }
say "soulpad-guest: real os $(uname -r), last tick on disk: $(cat "$state/last" 2>/dev/null || echo none)"
n=0
while :; do
  n=$((n + 1))
  say "soulpad-counter $n clock $(date +%s)"
  echo "$n" >"$state/last"
  [ $((n % 10)) -eq 0 ] && sync "$state/last"
  sleep 0.5
done
EOF
chmod 755 "$rootfs/usr/local/bin/soulpad-counter"
cat >"$rootfs/etc/systemd/system/soulpad-counter.service" <<'EOF'
[Unit]
Description=SoulPad's test counter (serial console and screen)
After=systemd-user-sessions.service

[Service]
ExecStart=/usr/local/bin/soulpad-counter

[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/soulpad-counter.service "$rootfs/etc/systemd/system/multi-user.target.wants/"
rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/*

echo "debian-image: boot loaders"
mkdir -p "$rootfs/boot/grub"
cat >"$rootfs/boot/grub/grub.cfg" <<EOF
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=0
menuentry "Debian 12 (SoulPad test system)" {
	search --no-floppy --fs-uuid --set=root $uuid
	linux /boot/vmlinuz-$kver root=UUID=$uuid ro console=tty0 console=ttyS0,115200 quiet
	initrd /boot/initrd.img-$kver
}
EOF
printf 'search.fs_uuid %s root\nset prefix=($root)/boot/grub\n' "$uuid" >"$work/early.cfg"
mods="part_gpt ext2 search search_fs_uuid configfile normal linux echo test serial terminal gzio all_video"
grub-mkimage -O i386-pc -o "$work/core.img" -p /boot/grub -c "$work/early.cfg" biosdisk $mods
esp="$work/esp.img"
mkfs.vfat -n EFI -C "$esp" $((64 * 1024)) >/dev/null
# UEFI boots Debian's shim (signed by Microsoft's UEFI CA) and GRUB
# (signed by Debian), so the same disk boots with Secure Boot on. The
# signed GRUB reads /EFI/debian/grub.cfg (or the one beside it), which
# goes on to the system's own.
printf 'search --no-floppy --fs-uuid --set=root %s\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n' "$uuid" >"$work/esp-grub.cfg"
mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/EFI/debian
mcopy -i "$esp" "$rootfs/usr/lib/shim/shimx64.efi.signed" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$esp" "$rootfs/usr/lib/shim/mmx64.efi.signed" ::/EFI/BOOT/mmx64.efi
mcopy -i "$esp" "$rootfs/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed" ::/EFI/BOOT/grubx64.efi
mcopy -i "$esp" "$work/esp-grub.cfg" ::/EFI/BOOT/grub.cfg
mcopy -i "$esp" "$work/esp-grub.cfg" ::/EFI/debian/grub.cfg

echo "debian-image: the disk"
# 512 MiB free beside the system: room for soulpad bench --os's workload
# (a tree of 150 MB and its tar) and for what a test writes; sparse.
rootmib=$(( $(du -sm "$rootfs" | cut -f1) * 13 / 10 + 576 ))
mke2fs -q -t ext4 -U "$uuid" -L debian -d "$rootfs" "$work/root.img" "${rootmib}M"
# GPT: BIOS boot (1 MiB, GRUB's core.img), EFI system (64 MiB), root.
img="$work/debian.raw"
bios=2048
espstart=4096
rootstart=$((espstart + 64 * 2048))
total=$((rootstart + rootmib * 2048 + 2048))
truncate -s $((total * 512)) "$img"
sgdisk -o -n1:$bios:$((espstart - 1)) -t1:ef02 -c1:bios \
  -n2:$espstart:$((rootstart - 1)) -t2:ef00 -c2:esp \
  -n3:$rootstart:$((rootstart + rootmib * 2048 - 1)) -t3:8304 -c3:root "$img" >/dev/null
dd if="$esp" of="$img" bs=512 seek=$espstart conv=notrunc,sparse status=none
dd if="$work/root.img" of="$img" bs=512 seek=$rootstart conv=notrunc,sparse status=none
dd if="$work/core.img" of="$img" bs=512 seek=$bios conv=notrunc status=none
# GRUB's boot.img in the MBR, pointing at core.img, and core.img's block
# list (what grub-bios-setup patches; offsets from GRUB's boot.S and
# diskboot.S, as internal/padimage writes them).
python3 - "$img" /usr/lib/grub/i386-pc/boot.img "$bios" "$(( ($(stat -c %s "$work/core.img") + 511) / 512 ))" <<'EOF'
import struct, sys
img, boot, lba, n = sys.argv[1], open(sys.argv[2], 'rb').read(), int(sys.argv[3]), int(sys.argv[4])
with open(img, 'r+b') as f:
    mbr = bytearray(f.read(512))
    assert mbr[510:512] == b'\x55\xaa', 'no protective MBR'
    code = bytearray(boot[:0x1b8])
    struct.pack_into('<Q', code, 0x5c, lba)
    code[0x64] = 0xff
    code[0x66:0x68] = b'\x90\x90'
    mbr[:0x1b8] = code
    f.seek(lba * 512)
    first = bytearray(f.read(512))
    struct.pack_into('<QH', first, 0x200 - 12, lba + 1, n - 1)
    f.seek(lba * 512); f.write(first)
    f.seek(0); f.write(mbr)
EOF
mv "$img" "$out/debian.raw.tmp"
mv "$out/debian.raw.tmp" "$out/debian.raw"
echo "$kver" >"$out/kernel-version"
echo "$key" >"$out/.key"
echo "debian-image: $out/debian.raw (Debian 12, kernel $kver)"
