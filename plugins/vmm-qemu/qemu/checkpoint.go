package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/vmm"
	"github.com/soulpad/soulpad/sdk/vmm/diskchain"
)

// A checkpoint is a point taken while the machine goes on running. With
// mapped memory it costs a short pause: the pages the guest changed are
// written back while it still runs, then the guest stops for its device
// state, the disks' switch to new overlays and the RAM file's clone (a
// reflink: the few pages changed since the write-back), and goes on. The
// point's files are the clone, the device state and the disks' frozen
// overlays, as a suspend's; the core seals them while the guest runs.
// With streamed memory a checkpoint would stop the guest for the whole
// RAM's write: it is refused.

// checkpoint takes a checkpoint of v into dir.
func (p *Plugin) checkpoint(ctx context.Context, v *proc, dir string) (vmm.SuspendResponse, error) {
	if why := p.noCheckpoint(v); why != "" {
		return vmm.SuspendResponse{}, fmt.Errorf("vmm-qemu: checkpoint: %s: %w", why, sdk.ErrUnsupported)
	}
	timer := vmm.NewTimer()
	// The bulk of what the guest changed reaches the pad while it runs.
	if err := syncFile(v.ramFile); err != nil {
		return vmm.SuspendResponse{}, fmt.Errorf("vmm-qemu: checkpoint: %w", err)
	}
	timer.Mark("writeback")
	tops, err := p.liveOverlays(ctx, v)
	if err != nil {
		return vmm.SuspendResponse{}, err
	}
	paused := false
	fail := func(err error) (vmm.SuspendResponse, error) {
		if paused && v.alive() {
			_ = v.qmp.Execute(context.WithoutCancel(ctx), "cont", nil, nil)
		}
		// Only the overlays no disk was switched to (a switched disk
		// goes on in its new one: switchDisks made it current).
		unused := map[string]string{}
		for name, top := range tops {
			if v.tops[name] != top {
				unused[name] = top
			}
		}
		diskchain.Drop(v.machineDir, diskchain.Disks(v.spec), unused)
		_ = os.Remove(filepath.Join(dir, StateFile))
		_ = os.Remove(filepath.Join(dir, RAMFile))
		return vmm.SuspendResponse{}, fmt.Errorf("vmm-qemu: checkpoint: %w", err)
	}
	if err := v.qmp.Execute(ctx, "stop", nil, nil); err != nil {
		return fail(err)
	}
	paused = true
	stopped := time.Now()
	timer.Mark("stop")
	// The disks first: QEMU snapshots only active block devices, and a
	// migration leaves them inactive until cont.
	frozen, err := p.switchDisks(ctx, v, tops)
	if err != nil {
		return fail(err)
	}
	timer.Mark("disks")
	stateSum, err := p.saveStateRunning(ctx, v, dir)
	if err != nil {
		return fail(err)
	}
	timer.Mark("state")
	if err := cloneFile(ctx, filepath.Join(dir, RAMFile), v.ramFile); err != nil {
		return fail(err)
	}
	timer.Mark("clone")
	if err := v.qmp.Execute(ctx, "cont", nil, nil); err != nil {
		return fail(err)
	}
	pause := time.Since(stopped)
	timer.Mark("cont")
	// From here the checkpoint stands: the guest writes to the new
	// overlays, the old ones are the point's.
	if err := syncFile(filepath.Join(dir, StateFile)); err != nil {
		return vmm.SuspendResponse{}, err
	}
	files, _, err := p.chain().Freeze(v.machineDir, dir, diskchain.Disks(v.spec), frozen)
	if err != nil {
		return vmm.SuspendResponse{}, err
	}
	desc := v.desc
	desc.Disks = frozen
	stateSum.OnLoad = true
	phases := append(timer.Phases(), vmm.Phase{Name: "pause", Seconds: pause.Seconds()})
	// The clone is what a resume maps: the core sums it in chunks, and
	// reads only those not shared with the parent point's RAM file.
	return vmm.SuspendResponse{Files: append([]string{StateFile, RAMFile}, files...), Description: desc.String(),
		Sums: []vmm.FileSum{stateSum, {Name: RAMFile, Mapped: true}}, Phases: phases, Machine: fmt.Sprintf("QEMU %s, %s", desc.QEMUVersion, desc.MachineType)}, nil
}

// noCheckpoint says why v cannot take a checkpoint ("" when it can).
func (p *Plugin) noCheckpoint(v *proc) string {
	if v.ramFile == "" || p.cfg.Memory == memoryStream {
		return "the guest's memory is streamed, not mapped from a file the vault can clone (crypt-luks with XFS), so a checkpoint would stop the guest while all its RAM is written"
	}
	return ""
}

// liveOverlays makes a new overlay over each disk's running top, for the
// switch; nothing runs on them yet.
func (p *Plugin) liveOverlays(ctx context.Context, v *proc) (map[string]string, error) {
	tops := map[string]string{}
	for _, d := range diskchain.Disks(v.spec) {
		top, err := p.chain().LiveOverlay(ctx, v.machineDir, d, v.tops[d.Name])
		if err != nil {
			diskchain.Drop(v.machineDir, diskchain.Disks(v.spec), tops)
			return nil, err
		}
		tops[d.Name] = top
	}
	return tops, nil
}

// switchDisks moves each running disk onto its new overlay (the old top
// becomes its backing, and no longer changes), makes the new one the
// disk's current top, and returns the old tops.
func (p *Plugin) switchDisks(ctx context.Context, v *proc, tops map[string]string) (map[string]string, error) {
	var blocks []struct {
		Device   string `json:"device"`
		Inserted *struct {
			File string `json:"file"`
		} `json:"inserted"`
	}
	if err := v.qmp.Execute(ctx, "query-block", nil, &blocks); err != nil {
		return nil, err
	}
	frozen := map[string]string{}
	for _, d := range diskchain.Disks(v.spec) {
		running := filepath.Join(diskchain.DiskDir(v.machineDir, d), v.tops[d.Name])
		// The drive QEMU opened on the running top; once switched, QEMU
		// names the new top by options, not by file: the name is kept.
		dev := v.drives[d.Name]
		for _, b := range blocks {
			if dev == "" && b.Inserted != nil && filepath.Clean(b.Inserted.File) == running {
				dev = b.Device
			}
		}
		if dev == "" {
			return nil, fmt.Errorf("disk %s: QEMU has no drive on %s", d.Name, running)
		}
		next := filepath.Join(diskchain.DiskDir(v.machineDir, d), tops[d.Name])
		if err := v.qmp.Execute(ctx, "blockdev-snapshot-sync", map[string]any{"device": dev, "snapshot-file": next, "format": "qcow2", "mode": "existing"}, nil); err != nil {
			return nil, fmt.Errorf("disk %s: %w", d.Name, err)
		}
		if v.drives == nil {
			v.drives = map[string]string{}
		}
		v.drives[d.Name] = dev
		frozen[d.Name] = v.tops[d.Name]
		v.tops[d.Name] = tops[d.Name]
		if err := diskchain.SetCurrent(v.machineDir, d, tops[d.Name]); err != nil {
			return nil, fmt.Errorf("disk %s: %w", d.Name, err)
		}
	}
	return frozen, nil
}
