#!/usr/bin/env bash
# Builds a bootable pad image: GPT with a BIOS-boot partition, an EFI system
# partition (GRUB for BIOS and UEFI, Debian's signed shim and GRUB for Secure
# Boot), the host OS as a squashfs (SOULPAD-SYS) and the pad partition
# (ext4, SOULPAD-PAD) holding PADROOT. Run by `soulpad image`, which sets:
#
#   OUT        the image file to write (written whole, then renamed by the caller)
#   SIZE_MIB   the image's size
#   CACHE      where downloaded packages and the extracted kernel are kept
#   SOULPAD    the soulpad binary; PLUGINS its plugin directory
#   PADROOT    what goes on the pad partition (site.hcl, pad/)
#   HERE       the directory holding this script, initramfs-init, host-init
#   KEY_LABEL  the file-system label of the optional key disk
#   CONSOLE    tty0 or ttyS0: where the session's prompt and table go
#   WORK       scratch directory (removed by the caller)
#
# Prints "step N/M what" lines; writes $WORK/bios.env (core.img's place,
# the pad partition's) for the caller, which writes the MBR boot code and
# core.img's block list, records the boot partitions in the pad's vault
# and makes the pad partition (step 7).
set -euo pipefail
export LC_ALL=C
steps=7
step() { echo "step $1/$steps $2"; }
die() { echo "image: $*" >&2; exit 1; }

for t in sgdisk mkfs.vfat mmd mcopy grub-mkimage mksquashfs mke2fs depmod dpkg-deb apt-get cpio busybox ldd strip; do
	command -v "$t" >/dev/null || die "$t is missing (Debian: apt-get install gdisk dosfstools mtools grub-pc-bin grub-efi-amd64-bin squashfs-tools e2fsprogs kmod busybox-static cpio binutils)"
done
[ -d /usr/lib/grub/i386-pc ] || die "GRUB for BIOS is missing (apt-get install grub-pc-bin)"
[ -d /usr/lib/grub/x86_64-efi ] || die "GRUB for UEFI is missing (apt-get install grub-efi-amd64-bin)"
qemu=$(command -v qemu-system-x86_64) || die "qemu-system-x86_64 is missing (apt-get install qemu-system-x86)"

mkdir -p "$CACHE/debs"
# fetch PKG...: apt-get download into the cache, once
fetch() {
	local p
	for p in "$@"; do
		ls "$CACHE/debs/${p}"_*.deb >/dev/null 2>&1 && continue
		(cd "$CACHE/debs" && apt-get download "$p" >/dev/null 2>&1) || {
			apt-get update -qq >/dev/null 2>&1 || true
			(cd "$CACHE/debs" && apt-get download "$p" >/dev/null 2>&1)
		} || return 1
	done
}

step 1 "kernel: Debian's linux-image-amd64"
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
[ -n "$kpkg" ] || { apt-get update -qq >/dev/null 2>&1 || true; kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}'); }
[ -n "$kpkg" ] || die "cannot find linux-image-amd64 in the package lists (apt-get update?)"
kver=${kpkg#linux-image-}
K=$CACHE/$kpkg
if [ ! -f "$K/.done" ]; then
	fetch "$kpkg" || die "apt-get download $kpkg failed"
	rm -rf "$K"
	mkdir -p "$K"
	dpkg-deb -x "$CACHE"/debs/"$kpkg"_*.deb "$K"
	depmod -b "$K" "$kver"
	touch "$K/.done"
fi
M=$K/lib/modules/$kver

step 2 "initramfs: USB, storage and squashfs drivers"
ir=$WORK/initramfs
mkdir -p "$ir"/{bin,dev,proc,sys,root,etc,lib/modules/"$kver"}
cp "$(command -v busybox)" "$ir/bin/busybox"
for a in $(busybox --list); do [ "$a" = busybox ] || ln -s busybox "$ir/bin/$a"; done
cp "$HERE/initramfs-init" "$ir/init"
chmod 755 "$ir/init"
early="xhci-pci xhci-plat-hcd ehci-pci ohci-pci uhci-hcd usb-storage uas sd_mod sr_mod ahci ata_piix nvme virtio_pci virtio_blk virtio_scsi sdhci-pci sdhci-acpi mmc_block squashfs loop"
: >"$ir/etc/modules"
for m in $early; do
	deps=$(modprobe -d "$K" -S "$kver" --show-depends "$m" 2>/dev/null | awk '$1=="insmod"{print $2}') || true
	[ -n "$deps" ] || continue
	echo "$m" >>"$ir/etc/modules"
	for f in $deps; do
		rel=${f#"$M"/}
		mkdir -p "$ir/lib/modules/$kver/$(dirname "$rel")"
		cp -n "$f" "$ir/lib/modules/$kver/$rel"
	done
done
cp "$M"/modules.order "$M"/modules.builtin* "$ir/lib/modules/$kver/" 2>/dev/null || true
depmod -b "$ir" "$kver"
(cd "$ir" && find . | cpio -o -H newc --quiet | gzip -6) >"$WORK/initrd.img"

step 3 "host OS: QEMU, soulpad, plugins, udev and drivers"
R=$WORK/root
mkdir -p "$R"/{bin,sbin,etc,dev,proc,sys,run,tmp,var,root,mnt,media/pad,media/key,usr/bin,usr/sbin,usr/lib/soulpad/plugins,usr/share,lib/modules}
ln -s ../proc/self/mounts "$R/etc/mtab"
cp "$(command -v busybox)" "$R/bin/busybox"
# libs FILE: the libraries FILE needs, at their own paths
libs() {
	local l
	ldd "$1" 2>/dev/null | awk '/=> \//{print $3} /^\t\/lib/{print $1}' | while read -r l; do
		[ -e "$R$l" ] || { mkdir -p "$R$(dirname "$l")"; cp -L "$l" "$R$l"; }
	done
}
# copy FILE...: each file and the libraries it needs, at their own paths
copy() {
	local f
	for f in "$@"; do
		[ -e "$f" ] || continue
		mkdir -p "$R$(dirname "$f")"
		cp -L "$f" "$R$f"
		libs "$f"
	done
}
copy "$qemu" "$(command -v qemu-img)" \
	"$(command -v gocryptfs || true)" "$(command -v fusermount3 || true)" \
	/sbin/e2fsck "$(command -v mkfs.xfs || true)" "$(command -v cryptsetup || true)" \
	/usr/bin/kmod /usr/bin/udevadm /lib/systemd/systemd-udevd
# QEMU's loadable accelerators (TCG is one), its firmware and option ROMs
for f in /usr/lib/x86_64-linux-gnu/qemu/accel-*.so; do copy "$f"; done
mkdir -p "$R/usr/share/qemu" "$R/usr/lib/ipxe"
(cd /usr/share/qemu && tar cf - --exclude='openbios-*' --exclude='s390-*' --exclude=slof.bin --exclude=skiboot.lid \
	--exclude=hppa-firmware.img --exclude='opensbi-*' --exclude=palcode-clipper --exclude='*.dtb' .) | tar xf - -C "$R/usr/share/qemu"
cp -a /usr/share/seabios "$R/usr/share/" 2>/dev/null || true
cp -a /usr/lib/ipxe/qemu "$R/usr/lib/ipxe/" 2>/dev/null || true
for l in modprobe insmod rmmod lsmod depmod modinfo; do ln -sf /usr/bin/kmod "$R/sbin/$l"; done
for a in $(busybox --list); do
	[ "$a" = busybox ] && continue
	[ -e "$R/bin/$a" ] || [ -e "$R/sbin/$a" ] || [ -e "$R/usr/bin/$a" ] || ln -s busybox "$R/bin/$a"
done
# udev and its rules; helpers the rules call, where present
mkdir -p "$R/lib/udev" "$R/etc/udev"
cp -a /lib/udev/rules.d "$R/lib/udev/"
for h in ata_id scsi_id cdrom_id mtd_probe v4l_id; do copy "/lib/udev/$h"; done
[ -f /lib/udev/hwdb.bin ] && cp /lib/udev/hwdb.bin "$R/lib/udev/"
[ -f /etc/udev/hwdb.bin ] && cp /etc/udev/hwdb.bin "$R/etc/udev/"
cp /etc/udev/udev.conf "$R/etc/udev/" 2>/dev/null || true
# soulpad and the plugins that run without a daemon of their own
install -m 0755 "$SOULPAD" "$R/usr/lib/soulpad/soulpad"
ln -s ../lib/soulpad/soulpad "$R/usr/bin/soulpad"
for p in "$PLUGINS"/*; do
	n=$(basename "$p")
	case $n in vmm-libvirt | backup-tsm) continue ;; esac
	install -m 0755 "$p" "$R/usr/lib/soulpad/plugins/$n"
	libs "$p"
done
strip --strip-unneeded "$R/usr/lib/soulpad/soulpad" "$R"/usr/lib/soulpad/plugins/* 2>/dev/null || true
# kernel modules, without what a walk-up PC does not need here
mkdir -p "$R/lib/modules/$kver"
(cd "$M" && tar cf - --exclude=kernel/sound --exclude=kernel/drivers/media --exclude=kernel/drivers/staging \
	--exclude=kernel/drivers/infiniband --exclude=kernel/drivers/isdn --exclude=kernel/net/wireless \
	--exclude=kernel/drivers/net/wireless --exclude=kernel/net/bluetooth --exclude=kernel/drivers/bluetooth \
	--exclude=kernel/drivers/iio --exclude=kernel/drivers/comedi --exclude=kernel/drivers/net/can \
	--exclude=kernel/net/mac80211 --exclude=kernel/drivers/gpu/drm/amd .) | tar xf - -C "$R/lib/modules/$kver"
depmod -b "$R" "$kver"
# firmware from Debian main
if fetch firmware-linux-free; then dpkg-deb -x "$CACHE"/debs/firmware-linux-free_*.deb "$WORK/fw" && cp -a "$WORK/fw/lib/firmware" "$R/lib/" 2>/dev/null || true; fi
# the host's own files
install -m 0755 "$HERE/host-init" "$R/sbin/soulpad-host"
mkdir -p "$R/etc/soulpad" "$R/etc/acpi"
printf 'KEY_LABEL=%s\n' "$KEY_LABEL" >"$R/etc/soulpad/host.conf"
printf 'PWRF power\n' >"$R/etc/acpid.conf"
cat >"$R/etc/acpi/power" <<'PWR'
#!/bin/sh
# The PC's power button: suspend the session (the host powers off after it).
echo "soulpad-host: power button: suspending" >/dev/console
/usr/bin/soulpad suspend --config "$SOULPAD_CONFIG" >/dev/console 2>&1 || killall -TERM soulpad 2>/dev/null
PWR
chmod 755 "$R/etc/acpi/power"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
for g in root:0 tty:5 disk:6 lp:7 kmem:9 dialout:20 cdrom:24 tape:26 audio:29 video:44 input:101 kvm:102 render:103 sgx:104; do
	printf '%s:x:%s:\n' "${g%:*}" "${g#*:}" >>"$R/etc/group"
done
echo soulpad >"$R/etc/hostname"
printf 'NAME="SoulPad host"\nID=soulpad\n' >"$R/etc/os-release"

step 4 "squashfs"
mksquashfs "$R" "$WORK/system.sqfs" -comp zstd -Xcompression-level 6 -noappend -all-root -quiet >/dev/null
sysmib=$((($(stat -c %s "$WORK/system.sqfs") + (1 << 20) - 1) >> 20))
# The partition's bytes, whole: the initramfs checks their digest (on
# GRUB's kernel command line) before it runs anything from them.
truncate -s "${sysmib}M" "$WORK/system.sqfs"
sysdigest=$(sha256sum "$WORK/system.sqfs" | cut -d' ' -f1)

step 5 "boot loaders: GRUB for BIOS and UEFI"
volid=$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n' | tr a-f A-F)
uuid=${volid:0:4}-${volid:4:4}
cat >"$WORK/early.cfg" <<EOF
search.fs_uuid $uuid root
set prefix=(\$root)/boot/grub
EOF
if [ "$CONSOLE" = ttyS0 ]; then kcon="console=tty0 console=ttyS0,115200"; else kcon="console=ttyS0,115200 console=tty0"; fi
# The system and pad partitions' own GUIDs, fresh for this image: the
# initramfs takes only partitions with these, on one disk (a PC's disk
# with partitions of the same names is not the pad).
sysguid=$(cat /proc/sys/kernel/random/uuid)
padguid=$(cat /proc/sys/kernel/random/uuid)
kpad="soulpad.sys=$sysguid soulpad.pad=$padguid soulpad.sysdigest=$sysdigest"
cat >"$WORK/grub.cfg" <<EOF
# SoulPad boot menu
search.fs_uuid $uuid root
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=2
set default=0
menuentry "SoulPad" {
	linux /soulpad/vmlinuz quiet $kcon $kpad
	initrd /soulpad/initrd.img
}
menuentry "SoulPad (session on the serial console)" {
	linux /soulpad/vmlinuz quiet console=tty0 console=ttyS0,115200 $kpad
	initrd /soulpad/initrd.img
}
menuentry "SoulPad (session on the screen)" {
	linux /soulpad/vmlinuz quiet console=ttyS0,115200 console=tty0 $kpad
	initrd /soulpad/initrd.img
}
EOF
mods="part_gpt part_msdos fat search search_fs_uuid configfile normal linux echo test serial terminal gzio all_video sleep"
grub-mkimage -O i386-pc -o "$WORK/core.img" -p /boot/grub -c "$WORK/early.cfg" biosdisk $mods
cp /usr/lib/grub/i386-pc/boot.img "$WORK/boot.img"
core_sectors=$((($(stat -c %s "$WORK/core.img") + 511) / 512))
[ "$core_sectors" -le 2048 ] || die "GRUB's core.img is $core_sectors sectors, more than the 1 MiB BIOS-boot partition"
grub-mkimage -O x86_64-efi -o "$WORK/grubx64-unsigned.efi" -p /boot/grub -c "$WORK/early.cfg" $mods efi_gop efi_uga
secure=no
if fetch shim-signed grub-efi-amd64-signed shim-helpers-amd64-signed; then
	for p in shim-signed grub-efi-amd64-signed shim-helpers-amd64-signed; do dpkg-deb -x "$CACHE"/debs/"$p"_*.deb "$WORK/signed"; done
	[ -f "$WORK/signed/usr/lib/shim/shimx64.efi.signed" ] && [ -f "$WORK/signed/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed" ] && secure=yes
fi
esp=$WORK/esp.img
rm -f "$esp"
mkfs.vfat -C -F 32 -n SOULPAD-EFI -i "$volid" "$esp" $((64 * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/EFI/debian ::/boot ::/boot/grub ::/soulpad
mcopy -i "$esp" "$K/boot/vmlinuz-$kver" ::/soulpad/vmlinuz
mcopy -i "$esp" "$WORK/initrd.img" ::/soulpad/initrd.img
mcopy -i "$esp" "$WORK/grub.cfg" ::/boot/grub/grub.cfg
mcopy -i "$esp" "$WORK/grub.cfg" ::/EFI/debian/grub.cfg
mcopy -i "$esp" "$WORK/grub.cfg" ::/EFI/BOOT/grub.cfg
if [ $secure = yes ]; then
	# Secure Boot: shim (signed by Microsoft's UEFI CA) loads Debian's signed
	# GRUB, which loads Debian's signed kernel; the initramfs and the
	# squashfs are not signed.
	mcopy -i "$esp" "$WORK/signed/usr/lib/shim/shimx64.efi.signed" ::/EFI/BOOT/BOOTX64.EFI
	mcopy -i "$esp" "$WORK/signed/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed" ::/EFI/BOOT/grubx64.efi
	[ -f "$WORK/signed/usr/lib/shim/mmx64.efi.signed" ] && mcopy -i "$esp" "$WORK/signed/usr/lib/shim/mmx64.efi.signed" ::/EFI/BOOT/mmx64.efi
else
	echo "image: Debian's signed shim and GRUB could not be downloaded; UEFI boots GRUB unsigned (turn Secure Boot off)" >&2
	mcopy -i "$esp" "$WORK/grubx64-unsigned.efi" ::/EFI/BOOT/BOOTX64.EFI
fi

step 6 "partitions"
padkib=$(du -s --apparent-size -k "$PADROOT" | cut -f1)
need=$((1 + 1 + 64 + sysmib + padkib / 1024 * 5 / 4 + 256))
[ "$SIZE_MIB" -ge "$need" ] || die "the image needs at least $need MiB (the host OS takes $sysmib MiB, the pad $((padkib / 1024)) MiB); give a larger --size"
rm -f "$OUT"
truncate -s "${SIZE_MIB}M" "$OUT"
sgdisk -o \
	-n 1:2048:+1M -t 1:EF02 -c 1:BIOS-BOOT \
	-n 2:0:+64M -t 2:EF00 -c 2:SOULPAD-EFI \
	-n "3:0:+${sysmib}M" -t 3:8300 -c 3:SOULPAD-SYS -u "3:$sysguid" \
	-n 4:0:0 -t 4:8300 -c 4:SOULPAD-PAD -u "4:$padguid" "$OUT" >/dev/null
first() { sgdisk -i "$1" "$OUT" | awk '/^First sector:/{print $3}'; }
last() { sgdisk -i "$1" "$OUT" | awk '/^Last sector:/{print $3}'; }
p1=$(first 1)
dd if="$WORK/core.img" of="$OUT" bs=512 seek="$p1" conv=notrunc status=none
dd if="$esp" of="$OUT" bs=512 seek="$(first 2)" conv=notrunc,sparse status=none
dd if="$WORK/system.sqfs" of="$OUT" bs=512 seek="$(first 3)" conv=notrunc status=none
p4=$(first 4)
p4kib=$((($(last 4) - p4 + 1) / 2))
printf 'core_lba=%s\ncore_sectors=%s\nsecure_boot=%s\nkernel=%s\nsystem_mib=%s\nsys_guid=%s\npad_guid=%s\npad_lba=%s\npad_kib=%s\n' "$p1" "$core_sectors" "$secure" "$kver" "$sysmib" "$sysguid" "$padguid" "$p4" "$p4kib" >"$WORK/bios.env"
# Step 7 (the pad partition) is the caller's: it first records the boot
# partitions in the pad's vault.
