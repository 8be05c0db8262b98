#!/usr/bin/env bash
# Installs the Debian packages SoulPad's build, tests and demo need, when
# missing. Idempotent; needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
  protobuf-compiler   # make proto
  qemu-system-x86     # vmm-qemu
  qemu-utils          # qemu-img
  busybox-static      # the demo guest's initramfs
  cpio                # packing the initramfs
  cryptsetup-bin      # crypt-luks
  xfsprogs            # crypt-luks: XFS with reflink inside the vault (mapped guest memory)
  fuse3               # userspace unlock engines
  gocryptfs           # crypt-gocryptfs
  restic              # backup-restic
  libvirt-daemon      # vmm-libvirt: libvirtd (scripts/libvirtd.sh runs it)
  libvirt-daemon-driver-qemu
  libvirt-clients     # virsh
  libvirt-dev         # cgo headers for libvirt.org/go/libvirt
  pkg-config
  curl                # scripts/s3server.sh waits for the S3 server
  python3             # scripts/s3server.sh asks the kernel for free ports
  gdisk               # soulpad image: the GPT (sgdisk)
  dosfstools          # soulpad image: the EFI system partition (mkfs.vfat)
  mtools              # soulpad image: filling it without a mount (mcopy)
  grub-pc-bin         # soulpad image: GRUB for BIOS
  grub-efi-amd64-bin  # soulpad image: GRUB for UEFI (unsigned fallback)
  squashfs-tools      # soulpad image: the host OS (mksquashfs)
  kmod                # soulpad image: module dependencies (depmod, modprobe)
  udev                # soulpad image: the host OS's udev
  e2fsprogs           # soulpad image: the pad partition (mke2fs -d); debugfs in its test
  binutils            # soulpad image: strip
  ovmf                # the bootable pad's test boots UEFI with Secure Boot; machine.firmware = "uefi"
  xorriso             # the installer ISOs the tests build (grub-mkrescue)
  mmdebstrap          # the real Debian system the tests import (scripts/debian-image.sh)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "deps: missing ${missing[*]}; install them with your package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "deps: need root to install ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
