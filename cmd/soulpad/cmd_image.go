package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/lifecycle"
	"github.com/soulpad/soulpad/internal/padimage"
	"github.com/soulpad/soulpad/sdk/crypt"
)

// imageFlags are `soulpad image`'s flags.
type imageFlags struct{ out, size, keyLabel, console, cache, keyFile, passFile string }

func newImageCmd(g *globals) *cobra.Command {
	var fl imageFlags
	c := &cobra.Command{
		Use:   "image --out FILE",
		Short: "Build a bootable pad: a disk image any PC boots to resume the machine",
		Long: `Build a disk image that makes a USB disk a bootable pad. A PC boots it (BIOS
or UEFI; with Secure Boot through Debian's signed shim, GRUB and kernel)
into a small host OS carried on the image: it loads the drivers, finds the
pad on the same disk, reads the key file from a key disk or asks for the
passphrase, and runs 'soulpad run'. The PC's power button (or Ctrl-C)
suspends; the host then unmounts the pad and powers the PC off. Nothing is
written to the PC's own disks: they are never mounted, and all scratch is
in memory.

The pad on the image is made now by 'soulpad init' with the config
(--config, else the built-in one): the passphrase is asked twice, or taken
from --passphrase-file, or --key-file makes a vault opened by that file.
When the boot partitions are done, the vault is opened once more (with
what was given, not asked again) to record their SHA-256: every unlock
on the pad compares the disk with that record, and a run whose boot
chain changed (GRUB's menu, the initramfs, the host OS) stops before the
machine resumes. The initramfs checks the host OS's own digest, on
GRUB's kernel command line, before it runs anything from it.
Copy the key file as soulpad.key onto a second USB disk whose file system
is labelled --key-label (default SOULPAD-KEY) to boot without typing.

The image holds: GRUB for BIOS and UEFI, Debian's linux-image-amd64
(downloaded with apt-get download and kept in --cache), a small initramfs
(USB, storage and squashfs drivers), the host OS as a squashfs (QEMU,
soulpad and its plugins, udev, the kernel's drivers, Debian's free
firmware), and the pad partition (ext4, label SOULPAD-PAD) with the rest
of --size. Building needs root-free tools only: sgdisk, mkfs.vfat,
mtools, grub-mkimage (grub-pc-bin, grub-efi-amd64-bin), mksquashfs,
mke2fs, busybox-static and apt-get ('make deps' installs them).

Write it to a USB disk (every byte on the disk is replaced):
  dd if=pad.img of=/dev/sdX bs=4M conv=fsync status=progress

--console ttyS0 puts the session on the serial port instead of the
screen (for PCs and virtual machines without one); the boot menu offers
both either way.`,
		Example: `  soulpad image --out pad.img --size 8G --config site.hcl
  soulpad image --out pad.img --key-file /media/key/soulpad.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runImage(cmd, g, fl) },
	}
	c.Flags().StringVarP(&fl.out, "out", "o", "", "the image file to write (required)")
	c.Flags().StringVar(&fl.size, "size", "8G", "the image's size (the USB disk's or less), e.g. 8G, 2048M")
	c.Flags().StringVar(&fl.keyLabel, "key-label", "SOULPAD-KEY", "the file-system label of the key disk holding soulpad.key")
	c.Flags().StringVar(&fl.console, "console", "tty0", "where the session's prompt goes by default: tty0 (the screen) or ttyS0 (the serial port)")
	c.Flags().StringVar(&fl.cache, "cache", "", "where downloaded packages are kept (default: ~/.cache/soulpad/image)")
	c.Flags().StringVar(&fl.keyFile, "key-file", "", "make the vault opened by this file's bytes (copy it to the key disk as soulpad.key)")
	c.Flags().StringVar(&fl.passFile, "passphrase-file", "", "read the new vault's passphrase from this file (first line) instead of asking")
	return c
}

// runImage is `soulpad image`: the flags checked, the pad made by soulpad
// init, the image built around it.
func runImage(cmd *cobra.Command, g *globals, fl imageFlags) error {
	cfg, mib, self, plugins, err := checkImage(g, &fl)
	if err != nil {
		return err
	}
	outAbs, err := filepath.Abs(fl.out)
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	// Ctrl-C stops the build and removes what it made (the output
	// file is written last, whole, or not at all).
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The pad, made by soulpad init into a staging directory beside
	// the image (same file system: the vault can be large).
	for _, d := range padimage.SweepStale(filepath.Dir(outAbs)) {
		fmt.Fprintf(w, "removed %s, left by a build that was stopped\n", d)
	}
	stage, err := padimage.Scratch(filepath.Dir(outAbs), "pad-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	// What goes on the pad partition, apart from the scratch's own mark.
	root := filepath.Join(stage, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	hcl := config.DefaultHCL()
	if cfg.Source != "" && cfg.Source != "built-in" {
		if hcl, err = os.ReadFile(cfg.Source); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(root, "site.hcl"), hcl, 0o644); err != nil {
		return err
	}
	// The credential, asked once: init makes the vault with it, and the
	// build opens the vault again to record the boot partitions.
	cred, err := imageCredential(cfg, fl)
	if err != nil {
		return err
	}
	defer cred.Wipe()
	if err := makeImagePad(ctx, cmd, g, fl, self, root, cred); err != nil {
		return err
	}
	padCfg := *cfg
	padCfg.Pad.Path = filepath.Join(root, "pad")
	start := time.Now()
	res, err := padimage.Build(ctx, padimage.Options{
		Out: outAbs, SizeMiB: mib, PadRoot: root, Soulpad: self, Plugins: plugins,
		Cache: fl.cache, KeyLabel: fl.keyLabel, Console: fl.console,
		Progress: func(l string) { fmt.Fprintln(w, l) },
		Log:      cmd.ErrOrStderr(),
		Record: func(ctx context.Context, rec padimage.BootRecord) error {
			return lifecycle.RecordBoot(ctx, lifecycle.VaultOptions{Config: &padCfg, Log: g.logger(cfg), Out: cmd.ErrOrStderr(),
				Command: "image", Credential: cred.again, CredentialTries: 1}, rec)
		},
	})
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: no image was written: %w", ctx.Err())
		}
		return err
	}
	sb := "Secure Boot through Debian's signed shim and GRUB"
	if !res.SecureBoot {
		sb = "UEFI without Secure Boot (Debian's signed shim and GRUB could not be downloaded)"
	}
	fmt.Fprintf(w, "wrote %s (%d MiB) in %.0f s: kernel %s, host OS %d MiB, BIOS and %s\n",
		fl.out, mib, time.Since(start).Seconds(), res.Kernel, res.SystemMiB, sb)
	fmt.Fprintf(w, "write it to a USB disk: dd if=%s of=/dev/sdX bs=4M conv=fsync status=progress\n", fl.out)
	return nil
}

// checkImage checks the flags and the config before anything is made:
// the image's size, the console and key label, the output, the plugins
// beside soulpad (self) that the image carries, and fl.cache's default.
func checkImage(g *globals, fl *imageFlags) (cfg *config.Config, mib int64, self, plugins string, err error) {
	if fl.out == "" {
		return nil, 0, "", "", usageErr(errors.New("--out FILE is required: where the image is written"))
	}
	mib, err = parseSizeMiB(fl.size)
	if err != nil {
		return nil, 0, "", "", usageErr(fmt.Errorf("--size %q: %w", fl.size, err))
	}
	// Checked before the pad is made and the build starts.
	if mib < 512 {
		return nil, 0, "", "", usageErr(fmt.Errorf("--size %s: an image needs at least 512 MiB (the boot partitions and the host OS take about 200 MiB, and the pad the rest)", fl.size))
	}
	if err := padimage.CheckOptions(fl.console, fl.keyLabel); err != nil {
		return nil, 0, "", "", usageErr(err)
	}
	cfg, err = g.load()
	if err != nil {
		return nil, 0, "", "", err
	}
	if fi, err := os.Stat(fl.out); err == nil && !fi.Mode().IsRegular() {
		return nil, 0, "", "", usageErr(fmt.Errorf("--out %s is not a regular file: build the image to a file, then dd it to the disk", fl.out))
	}
	self, err = os.Executable()
	if err != nil {
		return nil, 0, "", "", err
	}
	plugins = filepath.Join(filepath.Dir(self), "plugins")
	if _, err := os.Stat(filepath.Join(plugins, cfg.Plugins.VMM)); err != nil {
		return nil, 0, "", "", fmt.Errorf("the image carries the plugins beside soulpad, and %s has no %s (build them: make build)", plugins, cfg.Plugins.VMM)
	}
	if cfg.Plugins.VMM == "vmm-libvirt" {
		return nil, 0, "", "", usageErr(errors.New("plugins.vmm = \"vmm-libvirt\": the bootable host OS has no libvirtd; use vmm-qemu"))
	}
	if fl.cache == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			return nil, 0, "", "", fmt.Errorf("--cache: %w", err)
		}
		fl.cache = filepath.Join(d, "soulpad", "image")
	}
	return cfg, mib, self, plugins, nil
}

// imageCred is the image's credential: the flags' files, or a passphrase
// asked once (twice, to confirm) and kept in memory until the image is
// built.
type imageCred struct {
	files  lifecycle.CredentialFunc
	typed  []byte
	secret *os.File // typed, as init's --passphrase-file (a memfd)
}

// imageCredential asks for the passphrase when no file gives one.
func imageCredential(cfg *config.Config, fl imageFlags) (*imageCred, error) {
	cf := credFlags{keyFile: fl.keyFile, passphraseFile: fl.passFile}
	if firstNonEmpty(fl.keyFile, cfg.Unlock.KeyFile, fl.passFile, cfg.Unlock.PassphraseFile) != "" {
		return &imageCred{files: cf.credential(cfg, false)}, nil
	}
	c, err := prompt("Passphrase", true)
	if err != nil {
		return nil, err
	}
	fd, err := unix.MemfdCreate("soulpad-passphrase", unix.MFD_CLOEXEC)
	if err != nil {
		c.Wipe()
		return nil, fmt.Errorf("keeping the passphrase in memory: %w", err)
	}
	f := os.NewFile(uintptr(fd), "passphrase")
	if _, err := f.Write(c.Passphrase); err != nil {
		c.Wipe()
		f.Close()
		return nil, err
	}
	return &imageCred{typed: c.Passphrase, secret: f}, nil
}

// again is the credential once more, for the vault's second opening.
func (c *imageCred) again(ctx context.Context) (crypt.Credential, error) {
	if c.files != nil {
		return c.files(ctx)
	}
	return crypt.Credential{Passphrase: bytes.Clone(c.typed)}, nil
}

// Wipe forgets the typed passphrase.
func (c *imageCred) Wipe() {
	clear(c.typed)
	if c.secret != nil {
		_ = c.secret.Truncate(0)
		c.secret.Close()
	}
}

// makeImagePad makes the image's pad in root with soulpad init (self),
// as the config, --key-file and --passphrase-file say, or with the
// passphrase typed (cred.secret, handed over as a file in memory).
func makeImagePad(ctx context.Context, cmd *cobra.Command, g *globals, fl imageFlags, self, root string, cred *imageCred) error {
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "making the pad (soulpad init)\n")
	args := []string{"init", "--no-carry-plugins"}
	if g.configPath != "" {
		args = append(args, "--config", g.configPath)
	}
	if fl.keyFile != "" {
		args = append(args, "--key-file", fl.keyFile)
	}
	if fl.passFile != "" {
		args = append(args, "--passphrase-file", fl.passFile)
	}
	initCmd := exec.CommandContext(ctx, self, args...)
	if cred.secret != nil {
		initCmd.ExtraFiles = []*os.File{cred.secret}
		args = append(args, "--passphrase-file", "/dev/fd/3")
		initCmd.Args = append([]string{self}, args...)
	}
	initCmd.Env = append(os.Environ(), "SOULPAD_PAD_PATH="+filepath.Join(root, "pad"))
	initCmd.Stdin, initCmd.Stderr = os.Stdin, cmd.ErrOrStderr()
	initOut, err := initCmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := initCmd.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(initOut)
	for sc.Scan() {
		// Its "next: soulpad run" is for a pad used here, not on the image.
		if !strings.HasPrefix(sc.Text(), "next:") {
			fmt.Fprintln(w, "  "+sc.Text())
		}
	}
	if err := initCmd.Wait(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			// init said why; keep its exit status.
			fmt.Fprintln(cmd.ErrOrStderr(), "soulpad image: the pad could not be made; no image was written")
			return exitError(ee.ExitCode())
		}
		return fmt.Errorf("soulpad init for the image's pad: %w", err)
	}
	return nil
}

// parseSizeMiB reads sizes such as 8G, 8GiB, 512M, 2048 (MiB).
func parseSizeMiB(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	mult := int64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'M':
			t = t[:len(t)-1]
		case 'G':
			mult, t = 1024, t[:len(t)-1]
		case 'T':
			mult, t = 1024*1024, t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("want a size such as 8G, 8GiB or 2048M")
	}
	if n > (1<<40)/mult {
		return 0, errors.New("too large")
	}
	return n * mult, nil
}
