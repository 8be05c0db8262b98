package lifecycle

import (
	"context"
	"time"

	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/core/pluginhost"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// Prune removes the points PrunePlan picks (at most keep memory points
// stay; disk points go only with disks; protected points always stay),
// then asks the VMM plugin to drop the disk state that none of the
// remaining points nor the latest disk needs. It returns the IDs removed.
func Prune(ctx context.Context, j *pad.Journal, m *pad.Machine, vp *pluginhost.Plugin, spec vmm.Spec, keep int, disks bool, protected ...string) ([]string, error) {
	pts, err := m.Points()
	if err != nil {
		return nil, err
	}
	return RemovePoints(ctx, j, m, vp, spec, PrunePlan(pts, keep, disks, protected...))
}

// RemovePoints removes the given points, then collects the disk state
// nothing needs any more (when the VMM plugin can).
// The journal (which status reads) notes the removal, never a secret.
func RemovePoints(ctx context.Context, j *pad.Journal, m *pad.Machine, vp *pluginhost.Plugin, spec vmm.Spec, doomed []pad.Point) (ids []string, err error) {
	defer func() {
		if len(ids) > 0 {
			_ = j.Append(pad.Entry{Event: "info", Message: "removed suspend points", Fields: map[string]any{"removed": ids}})
		}
	}()
	for _, p := range doomed {
		if err := m.RemovePoint(p); err != nil {
			return ids, err
		}
		ids = append(ids, p.Manifest.ID)
	}
	if len(ids) == 0 {
		return ids, nil
	}
	return ids, CollectDisks(ctx, m, vp, spec)
}

// CollectDisks asks the VMM plugin (when it keeps disk history) to drop
// the disk state no point needs and to merge long chains of it; the
// machine must not be running.
func CollectDisks(ctx context.Context, m *pad.Machine, vp *pluginhost.Plugin, spec vmm.Spec) error {
	if vp == nil || !vp.Info.Has(vmm.CapDiskHistory) {
		return nil
	}
	dh, ok := vp.VMM().(vmm.DiskHistory)
	if !ok {
		return nil
	}
	left, err := m.Points()
	if err != nil {
		return err
	}
	var keep []vmm.PointState
	for _, p := range left {
		keep = append(keep, vmm.PointState{StateDir: p.Dir, Description: p.Manifest.Description})
	}
	if _, err := dh.CollectDisks(ctx, vmm.CollectDisksRequest{Spec: spec, MachineDir: m.Dir, Keep: keep}); err != nil {
		return vp.Err("collect disks", err)
	}
	return nil
}

// PointInfo is one point as `soulpad points` lists it.
type PointInfo struct {
	ID          string        `json:"id"`
	Kind        string        `json:"kind"`
	Taken       time.Time     `json:"taken"`
	Parent      string        `json:"parent,omitempty"`
	Generation  int           `json:"generation,omitempty"`
	Session     string        `json:"session,omitempty"`
	Bytes       int64         `json:"bytes"`
	VMM         pad.PluginRef `json:"vmm"`
	CPUModel    string        `json:"cpu_model"`
	Accelerator string        `json:"accelerator"`
	Host        string        `json:"host"`
	// Memory: "mapped" or "streamed", as the VMM plugin sealed guest RAM
	// (pad.Point.Memory); empty for a disk point.
	Memory string `json:"memory,omitempty"`
	// Unchecked: the points this one's memory derives from that had not
	// passed their check when it was sealed (its resume checks them).
	Unchecked []string `json:"unchecked,omitempty"`
	// Latest: the point the next `soulpad run` resumes.
	Latest bool `json:"latest,omitempty"`
}

// Infos describes points for listing.
func Infos(pts []pad.Point) []PointInfo {
	out := make([]PointInfo, 0, len(pts))
	latest := ""
	for _, p := range pts {
		if !p.IsDisk() {
			latest = p.Manifest.ID
		}
	}
	for _, p := range pts {
		mf := p.Manifest
		out = append(out, PointInfo{ID: mf.ID, Kind: p.KindName(), Taken: mf.Created, Parent: mf.Parent, Generation: mf.Generation,
			Session: mf.Session, Bytes: p.Size(), VMM: mf.VMM, CPUModel: mf.CPUModel, Accelerator: mf.Accelerator,
			Host: mf.Host.Hostname, Memory: p.Memory(), Unchecked: mf.Unchecked, Latest: mf.ID == latest})
	}
	return out
}
