// Package padimage builds a bootable pad: a disk image that any PC boots
// (BIOS or UEFI, Secure Boot through Debian's signed shim and GRUB) into a
// small host OS that finds the pad on the same disk, asks for the
// passphrase (or reads a key disk), resumes the machine and powers off
// after the suspend.
//
// The image is a GPT disk:
//
//	1 BIOS-BOOT    1 MiB    GRUB's core.img for BIOS
//	2 SOULPAD-EFI  64 MiB   FAT: GRUB for UEFI, the kernel, the initramfs
//	3 SOULPAD-SYS  squashfs: the host OS (QEMU, soulpad, plugins, udev, drivers)
//	4 SOULPAD-PAD  ext4: the pad (site.hcl and pad/), the rest of the disk
//
// The kernel is Debian's linux-image-amd64, downloaded with apt-get
// download. The initramfs holds only busybox and the USB, storage and
// squashfs drivers; everything else is in the squashfs. build.sh does the
// work; Build writes the BIOS boot code, which needs byte-exact patches.
package padimage

import (
	"bufio"
	"context"
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/soulpad/soulpad/sdk/ownerpid"
)

//go:embed build.sh initramfs-init host-init
var scripts embed.FS

// Options say what to build.
type Options struct {
	Out      string // the image file
	SizeMiB  int64  // its size
	PadRoot  string // what goes on the pad partition: site.hcl and pad/
	Soulpad  string // the soulpad binary to carry
	Plugins  string // the plugin directory to carry
	Cache    string // downloads and the extracted kernel
	KeyLabel string // the key disk's file-system label
	Console  string // "tty0" (the screen) or "ttyS0" (the serial port)
	// Progress gets one line per step ("step 3/7 …").
	Progress func(string)
	// Log gets what the build's tools print on stderr.
	Log io.Writer
	// Record, called before the pad partition is made from PadRoot,
	// keeps the boot chain's record in the pad's vault.
	Record func(context.Context, BootRecord) error
}

// Result says what was built.
type Result struct {
	Kernel     string // the kernel version
	SecureBoot bool   // Debian's signed shim and GRUB are on the image
	SystemMiB  int64  // the host OS's squashfs
}

// Build writes the image to o.Out. The image is built beside it under a
// temporary name and renamed at the end, so o.Out is whole or untouched.
func Build(ctx context.Context, o Options) (Result, error) {
	var r Result
	if o.Console == "" {
		o.Console = "tty0"
	}
	if err := CheckOptions(o.Console, o.KeyLabel); err != nil {
		return r, err
	}
	work, err := Scratch(filepath.Dir(o.Out), "work-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(work)
	tmp := filepath.Join(work, "image")
	if err := runScript(ctx, o, work, tmp); err != nil {
		return r, err
	}
	env, err := readEnv(filepath.Join(work, "bios.env"))
	if err != nil {
		return r, err
	}
	lba, err1 := strconv.ParseUint(env["core_lba"], 10, 64)
	n, err2 := strconv.ParseUint(env["core_sectors"], 10, 16)
	if err := errors.Join(err1, err2); err != nil {
		return r, fmt.Errorf("bios.env: %w", err)
	}
	boot, err := os.ReadFile(filepath.Join(work, "boot.img"))
	if err != nil {
		return r, err
	}
	if err := writeBIOSBoot(tmp, boot, lba, uint16(n)); err != nil {
		return r, err
	}
	r.Kernel = env["kernel"]
	r.SecureBoot = env["secure_boot"] == "yes"
	r.SystemMiB, _ = strconv.ParseInt(env["system_mib"], 10, 64)
	if err := recordAndMakePad(ctx, o, tmp, env); err != nil {
		return r, err
	}
	if err := os.Rename(tmp, o.Out); err != nil {
		return r, err
	}
	return r, nil
}

// runScript runs build.sh (steps 1 to 6) in work, writing the image to
// tmp; o.Progress gets its step lines.
func runScript(ctx context.Context, o Options, work, tmp string) error {
	here := filepath.Join(work, "scripts")
	if err := os.Mkdir(here, 0o755); err != nil {
		return err
	}
	for _, n := range []string{"build.sh", "initramfs-init", "host-init"} {
		b, _ := scripts.ReadFile(n)
		if err := os.WriteFile(filepath.Join(here, n), b, 0o755); err != nil {
			return err
		}
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(here, "build.sh"))
	// The script dies with soulpad (a tool it runs ends its step, and the
	// next build removes the scratch left behind).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Env = append(os.Environ(),
		"OUT="+tmp, "SIZE_MIB="+strconv.FormatInt(o.SizeMiB, 10), "CACHE="+o.Cache,
		"SOULPAD="+o.Soulpad, "PLUGINS="+o.Plugins, "PADROOT="+o.PadRoot, "HERE="+here,
		"KEY_LABEL="+o.KeyLabel, "CONSOLE="+o.Console, "WORK="+work)
	var stderr strings.Builder
	if o.Log != nil {
		cmd.Stderr = io.MultiWriter(&stderr, o.Log)
	} else {
		cmd.Stderr = &stderr
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if o.Progress != nil {
			o.Progress(sc.Text())
		}
	}
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if o.Log != nil { // already shown
			return fmt.Errorf("building the image: %w", err)
		}
		return fmt.Errorf("building the image: %w\n%s", err, lastLines(stderr.String(), 15))
	}
	return nil
}

// recordAndMakePad records the finished boot chain of the image tmp in
// the pad's vault (o.Record) and makes the pad partition from o.PadRoot:
// the build's step 7.
func recordAndMakePad(ctx context.Context, o Options, tmp string, env map[string]string) error {
	if o.Progress != nil {
		o.Progress("step 7/7 pad partition (ext4), the boot partitions recorded in its vault")
	}
	lba, err1 := strconv.ParseInt(env["pad_lba"], 10, 64)
	kib, err2 := strconv.ParseInt(env["pad_kib"], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("bios.env: %w", err)
	}
	rec, err := Measure(ctx, tmp)
	if err != nil {
		return fmt.Errorf("measuring the boot partitions: %w", err)
	}
	if rec.SysGUID != env["sys_guid"] || rec.PadGUID != env["pad_guid"] {
		return fmt.Errorf("the image's partitions have GUIDs %s and %s, not the build's %s and %s", rec.SysGUID, rec.PadGUID, env["sys_guid"], env["pad_guid"])
	}
	if o.Record != nil {
		if err := o.Record(ctx, rec); err != nil {
			return fmt.Errorf("recording the boot partitions in the pad's vault: %w", err)
		}
	}
	cmd := exec.CommandContext(ctx, "mke2fs", "-q", "-F", "-t", "ext4", "-L", "SOULPAD-PAD", "-m", "0", "-d", o.PadRoot,
		"-E", "offset="+strconv.FormatInt(lba*512, 10), tmp, strconv.FormatInt(kib, 10)+"k")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mke2fs for the pad partition: %w\n%s", err, b)
	}
	return nil
}

// CheckOptions checks the console and the key disk's label.
func CheckOptions(console, keyLabel string) error {
	if console != "tty0" && console != "ttyS0" {
		return fmt.Errorf("--console %q: want tty0 (the screen) or ttyS0 (the serial port)", console)
	}
	if !keyLabelRE.MatchString(keyLabel) {
		return fmt.Errorf("--key-label %q: want 1 to 16 letters, digits, '-' or '_' (the host OS reads it as shell)", keyLabel)
	}
	return nil
}

// keyLabelRE is a file-system label the host OS can take as a word.
var keyLabelRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,16}$`)

// GRUB's offsets (grub-core/boot/i386/pc/boot.S and diskboot.S, as
// grub-bios-setup patches them).
const (
	bootKernelSector = 0x5c  // boot.img: LBA of core.img's first sector (8 bytes)
	bootDrive        = 0x64  // boot.img: 0xff = the drive the BIOS booted
	bootDriveCheck   = 0x66  // boot.img: a jump that hard disks NOP out
	mbrCodeSize      = 0x1b8 // boot code ends where the disk signature starts
	blocklist        = 0x200 - 12
)

// writeBIOSBoot writes GRUB's boot.img into the image's MBR (keeping the
// partition table) pointing at core.img at LBA lba, and fills core.img's
// block list: the remaining n-1 sectors follow its first one.
func writeBIOSBoot(image string, boot []byte, lba uint64, n uint16) error {
	if len(boot) != 512 {
		return fmt.Errorf("boot.img is %d bytes, not 512", len(boot))
	}
	if n < 2 {
		return fmt.Errorf("core.img of %d sectors is too small", n)
	}
	f, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	mbr := make([]byte, 512)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		return err
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa {
		return errors.New("the image has no protective MBR")
	}
	code := append([]byte(nil), boot[:mbrCodeSize]...)
	binary.LittleEndian.PutUint64(code[bootKernelSector:], lba)
	code[bootDrive] = 0xff
	code[bootDriveCheck], code[bootDriveCheck+1] = 0x90, 0x90
	copy(mbr, code)
	first := make([]byte, 512)
	if _, err := f.ReadAt(first, int64(lba)*512); err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(first[blocklist:], lba+1)
	binary.LittleEndian.PutUint16(first[blocklist+8:], n-1)
	if _, err := f.WriteAt(first, int64(lba)*512); err != nil {
		return err
	}
	if _, err := f.WriteAt(mbr, 0); err != nil {
		return err
	}
	return f.Sync()
}

func readEnv(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m, nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// ownerFile in a build's scratch directory names the soulpad that owns it.
const ownerFile = ".owner.pid"

// own marks dir as this process's scratch (SweepStale removes it once the
// process is gone).
func own(dir string) error {
	return ownerpid.Mark(filepath.Join(dir, ownerFile))
}

// Scratch makes a scratch directory beside an image being built, marked
// as this process's.
func Scratch(dir, prefix string) (string, error) {
	d, err := os.MkdirTemp(dir, ".soulpad-image-"+prefix)
	if err != nil {
		return "", err
	}
	if err := own(d); err != nil {
		os.RemoveAll(d)
		return "", err
	}
	return d, nil
}

// SweepStale removes the scratch directories in dir that a build killed
// before it could clean up left (their owner is gone), and names them.
func SweepStale(dir string) []string {
	var swept []string
	old, _ := filepath.Glob(filepath.Join(dir, ".soulpad-image-*"))
	for _, d := range old {
		if !ownerpid.Orphaned(filepath.Join(d, ownerFile)) {
			continue // its build still runs, or it is not a build's
		}
		if os.RemoveAll(d) == nil {
			swept = append(swept, d)
		}
	}
	return swept
}
