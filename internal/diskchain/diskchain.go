// Package diskchain keeps a machine's disks as chains of qcow2 overlays
// paired with suspend points; the VMM plugins share it.
package diskchain

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

// DiskDir is where a disk's chain lives.
func DiskDir(machineDir string, d vmm.Disk) string {
	return filepath.Join(machineDir, "disks", d.Name)
}

func currentFile(machineDir string, d vmm.Disk) string {
	return filepath.Join(DiskDir(machineDir, d), "current")
}

// Current returns the top overlay's file name, or "" for none yet.
func Current(machineDir string, d vmm.Disk) (string, error) {
	b, err := os.ReadFile(currentFile(machineDir, d))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	return strings.TrimSpace(string(b)), err
}

// SetCurrent makes name the disk's top overlay, durably.
func SetCurrent(machineDir string, d vmm.Disk, name string) error {
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

// Chain makes overlays with qemu-img; Plugin names the caller in errors.
type Chain struct {
	QemuImg string
	Plugin  string
}

func (c Chain) qemuImg(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, c.QemuImg, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("qemu-img %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// BasePath is the disk's base image.
func BasePath(machineDir string, d vmm.Disk) string {
	if filepath.IsAbs(d.Path) {
		return d.Path
	}
	return filepath.Join(machineDir, d.Path)
}

// NewOverlay creates a new top overlay over backing (a file name in the
// disk's directory, or "" for the base image) and returns its name.
func (c Chain) NewOverlay(ctx context.Context, machineDir string, d vmm.Disk, backing string) (string, error) {
	dir := DiskDir(machineDir, d)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	base := BasePath(machineDir, d)
	if backing == "" {
		if _, err := os.Stat(base); errors.Is(err, fs.ErrNotExist) {
			if d.SizeMiB == 0 {
				return "", fmt.Errorf("%s: disk %s: %s does not exist and has no size to create it with: %w", c.Plugin, d.Name, base, sdk.ErrNotFound)
			}
			format := d.Format
			if format == "" {
				format = "qcow2"
			}
			if err := c.qemuImg(ctx, machineDir, "create", "-q", "-f", format, base, fmt.Sprintf("%dM", d.SizeMiB)); err != nil {
				return "", fmt.Errorf("%s: create disk %s: %w", c.Plugin, d.Name, err)
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
	if err := c.qemuImg(ctx, dir, "create", "-q", "-f", "qcow2", "-F", format, "-b", backing, name); err != nil {
		return "", fmt.Errorf("%s: disk %s: new overlay: %w", c.Plugin, d.Name, err)
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

// LinkOrCopy hard-links src to dst, copying when the file system cannot.
func LinkOrCopy(src, dst string) error {
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

// StateDiskName is the disk's file in a suspend point.
func StateDiskName(d vmm.Disk) string { return "disk-" + d.Name + ".qcow2" }

// StartTops puts a new overlay on top of each disk's current state for a
// cold boot and returns them by disk name; on error none are left.
func (c Chain) StartTops(ctx context.Context, machineDir string, disks []vmm.Disk) (map[string]string, error) {
	tops := map[string]string{}
	for _, d := range disks {
		cur, err := Current(machineDir, d)
		if err == nil {
			tops[d.Name], err = c.NewOverlay(ctx, machineDir, d, cur)
		}
		if err != nil {
			Drop(machineDir, disks, tops)
			return nil, err
		}
	}
	return tops, nil
}

// ResumeTops puts a new overlay on top of each disk's frozen state in a
// suspend point (frozen maps disk names to overlay names, as Freeze
// returned them). An overlay the chain lost (a restore that broke hard
// links) is taken back from the point's own copy. On error none are left.
func (c Chain) ResumeTops(ctx context.Context, machineDir, stateDir string, disks []vmm.Disk, frozen map[string]string) (map[string]string, error) {
	tops := map[string]string{}
	fail := func(err error) (map[string]string, error) {
		Drop(machineDir, disks, tops)
		return nil, err
	}
	for _, d := range disks {
		f := frozen[d.Name]
		if f == "" {
			return fail(fmt.Errorf("%s: resume: the point has no state for disk %s: %w", c.Plugin, d.Name, sdk.ErrCorrupt))
		}
		inChain := filepath.Join(DiskDir(machineDir, d), f)
		if _, err := os.Stat(inChain); errors.Is(err, fs.ErrNotExist) {
			if err := os.MkdirAll(DiskDir(machineDir, d), 0o700); err != nil {
				return fail(err)
			}
			if err := LinkOrCopy(filepath.Join(stateDir, StateDiskName(d)), inChain); err != nil {
				return fail(fmt.Errorf("%s: resume: disk %s: %v: %w", c.Plugin, d.Name, err, sdk.ErrNotFound))
			}
		}
		top, err := c.NewOverlay(ctx, machineDir, d, f)
		if err != nil {
			return fail(err)
		}
		tops[d.Name] = top
	}
	return tops, nil
}

// Commit makes tops the disks' current state.
func (c Chain) Commit(machineDir string, disks []vmm.Disk, tops map[string]string) error {
	for _, d := range disks {
		if err := SetCurrent(machineDir, d, tops[d.Name]); err != nil {
			return fmt.Errorf("%s: disk %s: %w", c.Plugin, d.Name, err)
		}
	}
	return nil
}

// Drop removes overlays made for a machine that did not run.
func Drop(machineDir string, disks []vmm.Disk, tops map[string]string) {
	for _, d := range disks {
		if top := tops[d.Name]; top != "" {
			_ = os.Remove(filepath.Join(DiskDir(machineDir, d), top))
		}
	}
}

// Freeze keeps each disk's top overlay (no longer written: the machine
// has stopped) with the suspend point in stateDir, and returns the files
// written there and the frozen overlays by disk name.
func (c Chain) Freeze(machineDir, stateDir string, disks []vmm.Disk, tops map[string]string) ([]string, map[string]string, error) {
	var files []string
	frozen := map[string]string{}
	for _, d := range disks {
		top := tops[d.Name]
		if err := LinkOrCopy(filepath.Join(DiskDir(machineDir, d), top), filepath.Join(stateDir, StateDiskName(d))); err != nil {
			return nil, nil, fmt.Errorf("%s: suspend: keep disk %s with the point: %w", c.Plugin, d.Name, err)
		}
		frozen[d.Name] = top
		files = append(files, StateDiskName(d))
	}
	return files, frozen, nil
}
