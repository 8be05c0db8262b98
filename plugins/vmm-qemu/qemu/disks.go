package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// Disks are kept as chains of qcow2 overlays, all in
// <machine>/disks/<disk>/ so backing names stay plain file names:
//
//	disk.qcow2 (base) ← g1.qcow2 ← g2.qcow2 ← … ← current top
//
// A running machine writes only to its newest overlay. At suspend that
// overlay is frozen and hard-linked into the suspend point, and the next
// start or resume adds a new overlay on top of it. A suspend point is thus
// paired for ever with the disk state it was taken with, and a session
// that crashes never changes what an older point resumes against.

func diskDir(machineDir string, d vmm.Disk) string {
	return filepath.Join(machineDir, "disks", d.Name)
}

func currentFile(machineDir string, d vmm.Disk) string {
	return filepath.Join(diskDir(machineDir, d), "current")
}

// current returns the top overlay's file name, or "" for none yet.
func current(machineDir string, d vmm.Disk) (string, error) {
	b, err := os.ReadFile(currentFile(machineDir, d))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	return strings.TrimSpace(string(b)), err
}

func setCurrent(machineDir string, d vmm.Disk, name string) error {
	f := currentFile(machineDir, d)
	tmp := f + ".tmp"
	if err := os.WriteFile(tmp, []byte(name+"\n"), 0o600); err != nil {
		return err
	}
	fh, err := os.Open(tmp)
	if err == nil {
		_ = fh.Sync()
		fh.Close()
	}
	if err := os.Rename(tmp, f); err != nil {
		return err
	}
	return syncDir(filepath.Dir(f))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (p *Plugin) qemuImg(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, p.imgPath, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("qemu-img %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// basePath is the disk's base image.
func basePath(machineDir string, d vmm.Disk) string {
	if filepath.IsAbs(d.Path) {
		return d.Path
	}
	return filepath.Join(machineDir, d.Path)
}

// newOverlay creates a new top overlay over backing (a file name in the
// disk's directory, or "" for the base image) and returns its name.
func (p *Plugin) newOverlay(ctx context.Context, machineDir string, d vmm.Disk, backing string) (string, error) {
	dir := diskDir(machineDir, d)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	base := basePath(machineDir, d)
	if backing == "" {
		if _, err := os.Stat(base); errors.Is(err, fs.ErrNotExist) {
			if d.SizeMiB == 0 {
				return "", fmt.Errorf("vmm-qemu: disk %s: %s does not exist and has no size to create it with: %w", d.Name, base, sdk.ErrNotFound)
			}
			format := d.Format
			if format == "" {
				format = "qcow2"
			}
			if err := p.qemuImg(ctx, machineDir, "create", "-q", "-f", format, base, fmt.Sprintf("%dM", d.SizeMiB)); err != nil {
				return "", fmt.Errorf("vmm-qemu: create disk %s: %w", d.Name, err)
			}
		}
		rel, err := filepath.Rel(dir, base)
		if err != nil {
			return "", err
		}
		backing = rel
	}
	format := "qcow2"
	if backing == rel(dir, base) && d.Format != "" {
		format = d.Format
	}
	name := "g" + time.Now().UTC().Format("20060102T150405.000000000") + ".qcow2"
	name = strings.Replace(name, ".", "", 1)
	if err := p.qemuImg(ctx, dir, "create", "-q", "-f", "qcow2", "-F", format, "-b", backing, name); err != nil {
		return "", fmt.Errorf("vmm-qemu: disk %s: new overlay: %w", d.Name, err)
	}
	return name, nil
}

func rel(dir, path string) string {
	r, err := filepath.Rel(dir, path)
	if err != nil {
		return path
	}
	return r
}

// linkOrCopy hard-links src to dst, copying when the file system cannot.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func stateDiskName(d vmm.Disk) string { return "disk-" + d.Name + ".qcow2" }
