#!/usr/bin/env bash
# Builds SoulPad's small demo guest: the Debian cloud kernel (downloaded
# with apt-get download and extracted, not installed) and a busybox
# initramfs whose init runs a counter (see ./init), with QEMU's guest
# agent (qemu-guest-agent, downloaded the same way, with the host's
# libraries it needs: the guest is the same Debian).
#
#   examples/guest/build.sh [OUTDIR]     default OUTDIR: .cache/guest
#
# Writes OUTDIR/vmlinuz and OUTDIR/initrd.img; does nothing when they are
# up to date with this script, init and the kernel package.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/.cache/guest}
mkdir -p "$out"
out=$(cd "$out" && pwd)

command -v busybox >/dev/null || { echo "guest: busybox is missing (apt-get install busybox-static)" >&2; exit 1; }
bb=$(command -v busybox)
if ! file -L "$bb" 2>/dev/null | grep -q static && ! ldd "$bb" 2>&1 | grep -q "not a dynamic"; then
  echo "guest: $bb is not static; install busybox-static" >&2; exit 1
fi

# The kernel package the cloud metapackage points at.
pkg() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}'; }
kpkg=$(pkg || true)
if [ -z "$kpkg" ]; then
  apt-get update -qq >/dev/null 2>&1 || true
  kpkg=$(pkg || true)
fi
[ -n "$kpkg" ] || { echo "guest: cannot find linux-image-cloud-amd64 in the package lists (apt-get update?)" >&2; exit 1; }

qga=$(apt-cache policy qemu-guest-agent 2>/dev/null | awk '/Candidate:/{print $2}')
key=$( (echo "$kpkg $qga"; cat "$here/build.sh" "$here/init"; sha256sum "$bb") | sha256sum | cut -c1-16)
if [ -f "$out/.key" ] && [ "$(cat "$out/.key")" = "$key" ] && [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ]; then
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "guest: downloading $kpkg"
(cd "$work" && apt-get download "$kpkg" >/dev/null 2>&1) || {
  apt-get update -qq >/dev/null 2>&1 || true
  (cd "$work" && apt-get download "$kpkg" >/dev/null)
}
dpkg-deb -x "$work"/linux-image-*.deb "$work/k"
echo "guest: downloading qemu-guest-agent"
(cd "$work" && apt-get download qemu-guest-agent >/dev/null 2>&1) || { echo "guest: cannot download qemu-guest-agent (apt-get update?)" >&2; exit 1; }
dpkg-deb -x "$work"/qemu-guest-agent_*.deb "$work/qga"
kver=${kpkg#linux-image-}
mods="$work/k/lib/modules/$kver/kernel"

echo "guest: building the initramfs"
ir="$work/ir"
mkdir -p "$ir"/{bin,proc,sys,dev,lib/modules,fill}
cp "$bb" "$ir/bin/busybox"
cp "$here/init" "$ir/init"
chmod 755 "$ir/init" "$ir/bin/busybox"
for m in drivers/virtio/virtio.ko drivers/virtio/virtio_ring.ko \
         drivers/virtio/virtio_pci_legacy_dev.ko drivers/virtio/virtio_pci_modern_dev.ko \
         drivers/virtio/virtio_pci.ko drivers/block/virtio_blk.ko fs/efivarfs/efivarfs.ko \
         drivers/char/virtio_console.ko drivers/char/hw_random/virtio-rng.ko; do
  cp "$mods/$m" "$ir/lib/modules/"
done
# device-mapper and dm-crypt's XTS, loaded only by guests that ask for
# them (crypt-luks tests its kernel engine with them).
mkdir -p "$ir/lib/modules/dm"
for m in drivers/md/dm-mod.ko drivers/md/dm-crypt.ko crypto/ecb.ko crypto/xts.ko; do
  cp "$mods/$m" "$ir/lib/modules/dm/"
done
# The guest agent and the libraries it links (ldd's absolute paths).
mkdir -p "$ir/sbin" "$ir/tmp"
cp "$work/qga/usr/sbin/qemu-ga" "$ir/sbin/qemu-ga"
for lib in $(ldd "$work/qga/usr/sbin/qemu-ga" | grep -o '/[^ ]*'); do
  mkdir -p "$ir$(dirname "$lib")"
  cp -L "$lib" "$ir$lib"
done
# qemu-ga runs /sbin/hwclock after it sets the clock.
ln -s ../bin/busybox "$ir/sbin/hwclock"
(cd "$ir" && find . | cpio -o -H newc --quiet | gzip -1) > "$out/initrd.img.tmp"
cp "$work/k/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initrd.img.tmp" "$out/initrd.img"
echo "$key" > "$out/.key"
echo "guest: $out/vmlinuz ($kver), $out/initrd.img"
