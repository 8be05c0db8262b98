// Package diskchain keeps a machine's disks as chains of qcow2 overlays
// paired with suspend points, for VMM plugins whose VMM reads qcow2
// (vmm-qemu and vmm-libvirt use it): a frozen overlay per point, a new
// overlay per session, disk states kept apart and collected
// (vmm.DiskHistory).
package diskchain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/atomicfile"
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

// VarsDisk is the UEFI variable store of a machine with UEFI firmware:
// kept as a chain like a disk, so each point holds the variables (boot
// entries) it was taken with. The plugin puts the firmware's template at
// its base (efivars.fd) before the first boot.
var VarsDisk = vmm.Disk{Name: "efivars", Path: "efivars.fd", Format: "raw"}

// Disks are the chains of a machine: its disks, and its UEFI variable
// store when it has UEFI firmware.
func Disks(spec vmm.Spec) []vmm.Disk {
	if spec.FirmwareOf() != vmm.FirmwareUEFI {
		return spec.Disks
	}
	return append(append([]vmm.Disk{}, spec.Disks...), VarsDisk)
}

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
	return atomicfile.WriteFile(currentFile(machineDir, d), []byte(name+"\n"), 0o600)
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
	args := []string{"create", "-q", "-f", "qcow2", "-F", format, "-b", backing, name}
	// A disk grown since (soulpad disk grow: a larger SizeMiB) gets its
	// new size with its next overlay; a disk never shrinks.
	if want := int64(d.SizeMiB) << 20; want > 0 {
		if have, err := VirtualSize(filepath.Join(dir, backing), format); err == nil && have < want {
			args = append(args, strconv.FormatInt(want, 10))
		}
	}
	if err := c.qemuImg(ctx, dir, args...); err != nil {
		return "", fmt.Errorf("%s: disk %s: new overlay: %w", c.Plugin, d.Name, err)
	}
	return name, nil
}

// LiveOverlay creates a new overlay over backing (a file name in the
// disk's directory) while the VMM still has backing open and writes to
// it: backing is not opened (qemu-img would wait for the VMM's lock), its
// size is read from its header. The VMM then switches the running disk
// to the new overlay (QEMU's blockdev-snapshot-sync, mode existing).
func (c Chain) LiveOverlay(ctx context.Context, machineDir string, d vmm.Disk, backing string) (string, error) {
	dir := DiskDir(machineDir, d)
	size, err := VirtualSize(filepath.Join(dir, backing), "qcow2")
	if err != nil {
		return "", fmt.Errorf("%s: disk %s: the running overlay's size: %w", c.Plugin, d.Name, err)
	}
	name := "g" + time.Now().UTC().Format("20060102T150405.000000000") + ".qcow2"
	name = strings.Replace(name, ".", "", 1)
	if err := c.qemuImg(ctx, dir, "create", "-q", "-u", "-f", "qcow2", "-F", "qcow2", "-b", backing, name, strconv.FormatInt(size, 10)); err != nil {
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

// Keep freezes each disk's latest state (its current overlay, written by a
// session that ended without suspending) into stateDir, as Freeze does at
// suspend. The chain is unchanged: the overlay is linked, not moved.
func (c Chain) Keep(machineDir, stateDir string, disks []vmm.Disk) ([]string, map[string]string, error) {
	tops := map[string]string{}
	for _, d := range disks {
		cur, err := Current(machineDir, d)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: keep disk %s: %w", c.Plugin, d.Name, err)
		}
		if cur == "" {
			return nil, nil, fmt.Errorf("%s: keep disk %s: it has no state yet: %w", c.Plugin, d.Name, sdk.ErrNotFound)
		}
		tops[d.Name] = cur
	}
	return c.Freeze(machineDir, stateDir, disks, tops)
}

// DisksOf reads the frozen overlays ({"disks": {name: overlay}}) from a
// plugin's point description; both VMM plugins keep them there.
func DisksOf(description string) (map[string]string, error) {
	var d struct {
		Disks map[string]string `json:"disks"`
	}
	if err := json.Unmarshal([]byte(description), &d); err != nil {
		return nil, fmt.Errorf("the point's description is not JSON: %v: %w", err, sdk.ErrCorrupt)
	}
	for _, f := range d.Disks {
		if !validOverlayName(f) {
			return nil, fmt.Errorf("the point's description names overlay %q: %w", f, sdk.ErrCorrupt)
		}
	}
	return d.Disks, nil
}

// validOverlayName: a plain file name in a disk's directory.
func validOverlayName(f string) bool {
	return f != "" && f != "." && f != ".." && !strings.ContainsAny(f, "/\x00")
}

// KeptPoint is a point whose disk state must stay: its directory and its
// frozen overlays by disk name.
type KeptPoint struct {
	StateDir string
	Disks    map[string]string
}

// Collect removes the overlays of each disk that neither the current
// state nor any kept point needs: what is needed is each of those
// overlays and every overlay it is backed by, read from the qcow2
// headers (from the point's own copy when the chain lacks the file). A
// disk whose chain cannot be read whole is left as it is. Base images and
// files that are not overlays are never touched. Long chains are then
// merged (compact).
func (c Chain) Collect(machineDir string, disks []vmm.Disk, keep []KeptPoint) ([]string, uint64, error) {
	var removed []string
	var freed uint64
	for _, d := range disks {
		dir := DiskDir(machineDir, d)
		cur, err := Current(machineDir, d)
		if err != nil {
			return removed, freed, err
		}
		type root struct{ name, copy string }
		var roots []root
		if cur != "" {
			roots = append(roots, root{name: cur})
		}
		for _, k := range keep {
			if f := k.Disks[d.Name]; f != "" {
				roots = append(roots, root{name: f, copy: filepath.Join(k.StateDir, StateDiskName(d))})
			}
		}
		needed := map[string]bool{}
		whole := true
		for _, r := range roots {
			name, alt := r.name, r.copy
			for name != "" && !needed[name] {
				needed[name] = true
				back, err := backingName(filepath.Join(dir, name))
				if errors.Is(err, fs.ErrNotExist) && alt != "" {
					back, err = backingName(alt)
				}
				if err != nil {
					whole = false
					break
				}
				alt = ""
				if back == "" || filepath.Base(back) != back || !isOverlayName(back) {
					break // the base image, or something outside the chain
				}
				name = back
			}
		}
		if !whole {
			continue
		}
		ents, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return removed, freed, err
		}
		n0 := len(removed)
		for _, e := range ents {
			n := e.Name()
			if !isOverlayName(n) || needed[n] || !e.Type().IsRegular() {
				continue
			}
			if fi, err := e.Info(); err == nil {
				freed += uint64(fi.Size())
			}
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				return removed, freed, err
			}
			removed = append(removed, filepath.Join("disks", d.Name, n))
		}
		if len(removed) > n0 {
			if err := atomicfile.SyncDir(dir); err != nil {
				return removed, freed, err
			}
		}
		merged, f, err := c.compactDisk(d, dir, cur, keep)
		removed, freed = append(removed, merged...), freed+f
		if err != nil {
			return removed, freed, err
		}
	}
	return removed, freed, nil
}

// isOverlayName: the names NewOverlay gives (g<time>.qcow2).
func isOverlayName(n string) bool {
	return strings.HasPrefix(n, "g") && strings.HasSuffix(n, ".qcow2") && len(n) > len("g.qcow2")
}

// BootTops puts a new overlay on top of each disk for a cold boot: over
// the disks' latest state, or over the state kept in a point when from is
// set. On error none are left.
func (c Chain) BootTops(ctx context.Context, machineDir string, disks []vmm.Disk, from *vmm.PointState) (map[string]string, error) {
	if from == nil {
		return c.StartTops(ctx, machineDir, disks)
	}
	frozen, err := DisksOf(from.Description)
	if err != nil {
		return nil, fmt.Errorf("%s: start from %s: %w", c.Plugin, from.StateDir, err)
	}
	return c.ResumeTops(ctx, machineDir, from.StateDir, disks, frozen)
}

// KeepDisks implements vmm.DiskHistory for the plugins built on chains.
func (c Chain) KeepDisks(req vmm.KeepDisksRequest) (vmm.KeepDisksResponse, error) {
	files, frozen, err := c.Keep(req.MachineDir, req.StateDir, Disks(req.Spec))
	if err != nil {
		return vmm.KeepDisksResponse{}, err
	}
	b, err := json.Marshal(struct {
		Format int               `json:"format"`
		Kind   string            `json:"kind"`
		Disks  map[string]string `json:"disks"`
	}{1, "disk", frozen})
	if err != nil {
		return vmm.KeepDisksResponse{}, err
	}
	return vmm.KeepDisksResponse{Files: files, Description: string(b)}, nil
}

// CollectDisks implements vmm.DiskHistory for the plugins built on chains.
func (c Chain) CollectDisks(req vmm.CollectDisksRequest) (vmm.CollectDisksResponse, error) {
	var keep []KeptPoint
	for _, k := range req.Keep {
		frozen, err := DisksOf(k.Description)
		if err != nil {
			return vmm.CollectDisksResponse{}, fmt.Errorf("%s: collect disks: point %s: %w", c.Plugin, filepath.Base(k.StateDir), err)
		}
		keep = append(keep, KeptPoint{StateDir: k.StateDir, Disks: frozen})
	}
	removed, freed, err := c.Collect(req.MachineDir, Disks(req.Spec), keep)
	if err != nil {
		return vmm.CollectDisksResponse{Removed: removed, BytesFreed: freed}, fmt.Errorf("%s: collect disks: %w", c.Plugin, err)
	}
	return vmm.CollectDisksResponse{Removed: removed, BytesFreed: freed}, nil
}

// History is vmm.DiskHistory for a plugin whose disks are a Chain, to
// embed: KeepDisks and CollectDisks refuse with sdk.ErrBusy while a
// machine runs.
type History struct {
	// Chain is the plugin's chain of the moment.
	Chain func() Chain
	// Hold takes the plugin's lock for the call and says whether a
	// machine runs; release gives the lock back.
	Hold func() (running bool, release func())
}

// KeepDisks implements vmm.DiskHistory.
func (h History) KeepDisks(_ context.Context, req vmm.KeepDisksRequest) (vmm.KeepDisksResponse, error) {
	running, release := h.Hold()
	defer release()
	c := h.Chain()
	if running {
		return vmm.KeepDisksResponse{}, fmt.Errorf("%s: keep disks: a machine is running: %w", c.Plugin, sdk.ErrBusy)
	}
	return c.KeepDisks(req)
}

// CollectDisks implements vmm.DiskHistory.
func (h History) CollectDisks(_ context.Context, req vmm.CollectDisksRequest) (vmm.CollectDisksResponse, error) {
	running, release := h.Hold()
	defer release()
	c := h.Chain()
	if running {
		return vmm.CollectDisksResponse{}, fmt.Errorf("%s: collect disks: a machine is running: %w", c.Plugin, sdk.ErrBusy)
	}
	return c.CollectDisks(req)
}
