package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/core/pluginhost"
	"github.com/soulpad/soulpad/sdk"
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
	if len(ids) == 0 || vp == nil || !vp.Info.Has(vmm.CapDiskHistory) {
		return ids, nil
	}
	dh, ok := vp.VMM().(vmm.DiskHistory)
	if !ok {
		return ids, nil
	}
	left, err := m.Points()
	if err != nil {
		return ids, err
	}
	var keep []vmm.PointState
	for _, p := range left {
		keep = append(keep, vmm.PointState{StateDir: p.Dir, Description: p.Manifest.Description})
	}
	if _, err := dh.CollectDisks(ctx, vmm.CollectDisksRequest{Spec: spec, MachineDir: m.Dir, Keep: keep}); err != nil {
		return ids, vp.Err("collect disks", err)
	}
	return ids, nil
}

// PointInfo is one point as `soulpad points` lists it.
type PointInfo struct {
	ID          string    `json:"id"`
	Kind        string    `json:"kind"`
	Taken       time.Time `json:"taken"`
	Parent      string    `json:"parent,omitempty"`
	Generation  int       `json:"generation,omitempty"`
	Session     string    `json:"session,omitempty"`
	Bytes       int64     `json:"bytes"`
	VMM         string    `json:"vmm"`
	CPUModel    string    `json:"cpu_model"`
	Accelerator string    `json:"accelerator"`
	Host        string    `json:"host"`
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
		vm := mf.VMM.Name
		if mf.VMM.Version != "" {
			vm += " " + mf.VMM.Version
		}
		out = append(out, PointInfo{ID: mf.ID, Kind: p.KindName(), Taken: mf.Created, Parent: mf.Parent, Generation: mf.Generation,
			Session: mf.Session, Bytes: p.Size(), VMM: vm, CPUModel: mf.CPUModel, Accelerator: mf.Accelerator,
			Host: mf.Host.Hostname, Latest: mf.ID == latest})
	}
	return out
}

// VaultOptions open a pad's vault outside a session (to list or prune
// its points).
type VaultOptions struct {
	Config *config.Config
	Log    hclog.Logger
	Out    io.Writer
	// Command names the holder of the pad's lock ("points").
	Command         string
	Credential      CredentialFunc
	CredentialTries int
	// AcceptPadPlugins: as in Options.
	AcceptPadPlugins bool
	// WithVMM also starts the VMM plugin (to collect disk state).
	WithVMM bool
	// PluginDirs, when set, replaces the search path derived from config.
	PluginDirs []string
}

// Vault is a pad whose vault is open, with its lock held.
type Vault struct {
	Pad     *pad.Pad
	Machine *pad.Machine
	// VMM is the VMM plugin when WithVMM was set.
	VMM  *pluginhost.Plugin
	Spec vmm.Spec
	// Journal is the pad's journal for this command.
	Journal *pad.Journal

	s *Session
}

// OpenVault takes the pad's lock, starts its plugins and unlocks the
// vault, as a session's boot and unlock steps do. Close undoes it all.
func OpenVault(ctx context.Context, o VaultOptions) (*Vault, error) {
	s := New(Options{Config: o.Config, Log: o.Log, Out: o.Out, Credential: o.Credential, CredentialTries: o.CredentialTries,
		PluginDirs: o.PluginDirs, AcceptPadPlugins: o.AcceptPadPlugins})
	s.r.progress = func(f string, a ...any) {
		if o.Out != nil {
			fmt.Fprintf(o.Out, f+"\n", a...)
		}
	}
	s.r.quiet = true
	v := &Vault{s: s}
	err := s.bounded(ctx, StageBoot, s.stageTimeout(), func(ctx context.Context, note *string) error {
		return s.openForMaintenance(ctx, o)
	})
	if err == nil {
		err = s.bounded(ctx, StageUnlock, s.stageTimeout(), s.unlock)
	}
	if err != nil {
		return nil, errors.Join(err, v.Close())
	}
	v.Pad, v.Machine, v.Spec, v.Journal = s.pad, s.machine, s.machineSpec, s.r.journal
	if o.WithVMM {
		v.VMM = s.vmm
	}
	return v, nil
}

// openForMaintenance is boot without detect: the lock, the crypt plugin
// and (optionally) the VMM plugin.
func (s *Session) openForMaintenance(ctx context.Context, o VaultOptions) error {
	cmd := o.Command
	if cmd == "" {
		cmd = "points"
	}
	if err := s.openPad(cmd, cmd+"-"+s.ID); err != nil {
		return err
	}
	name := s.pad.Meta.Crypt.Name
	if name == "" {
		name = s.cfg.Plugins.Crypt
	}
	s.startHost()
	var err error
	if s.crypt, err = s.host.Start(ctx, name, sdk.KindCrypt, s.cfg.PluginConfigJSON(name)); err != nil {
		return err
	}
	if o.WithVMM {
		if s.vmm, err = s.host.Start(ctx, s.cfg.Plugins.VMM, sdk.KindVMM, s.cfg.PluginConfigJSON(s.cfg.Plugins.VMM)); err != nil {
			return err
		}
	}
	return nil
}

// Close locks the vault, stops the plugins and releases the pad.
func (v *Vault) Close() error {
	if v == nil || v.s == nil {
		return nil
	}
	s := v.s
	v.s = nil
	ctx, cancel := context.WithTimeout(context.Background(), s.stageTimeout())
	defer cancel()
	return s.r.runCleanups(ctx)
}
