package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// ErrRefusedPoint: the latest suspend point cannot be resumed here; the
// message says why and how to cold-boot instead.
var ErrRefusedPoint = errors.New("suspend point refused")

// refusal is a point refused before anything changed; the way out is
// another point or a cold boot.
func refusal(p pad.Point, err error) error {
	return withWayOut(fmt.Errorf("%w: %w; nothing was changed (point %s is kept)", ErrRefusedPoint, err, p.Manifest.ID),
		WayOut{Kind: WayOutOtherPoint, Point: p.Manifest.ID})
}

// resume resumes the planned point, or boots, and says why.
func (s *Session) resume(ctx context.Context, note *string) error {
	plan, sess, err := s.plan()
	if err != nil {
		return err
	}
	if err := s.keepWhatWasLeft(ctx, &plan, sess); err != nil {
		return err
	}
	if p := plan.Resume; p != nil {
		err = s.resumePoint(ctx, *p, note)
	} else {
		err = s.coldBoot(ctx, plan, note)
	}
	if err != nil {
		return err
	}
	s.r.push("power off machine", s.powerOff)
	// From here the disk moves on: a crash must not resume an old point
	// against it without keeping it first (see PlanResume).
	host, _ := os.Hostname()
	return s.machine.SetSession(pad.SessionState{State: pad.SessionRunning, Point: s.parent, Session: s.ID, Generation: s.gen, Host: host})
}

// plan chooses what to resume or boot, and checks everything that can
// refuse it before anything changes.
func (s *Session) plan() (Plan, pad.SessionState, error) {
	pts, err := s.machine.Points()
	if err != nil {
		return Plan{}, pad.SessionState{}, err
	}
	sess, err := s.machine.Session()
	if err != nil {
		return Plan{}, sess, err
	}
	plan, err := PlanResume(PlanInput{Session: sess, Points: pts, ColdBoot: s.opts.ColdBoot, PointID: s.opts.Point,
		DiskHistory: s.vmm.Info.Has(vmm.CapDiskHistory)})
	if err != nil {
		return plan, sess, err
	}
	s.gen = pad.NextGeneration(sess, pts)
	// The machine as it will run: machine.json on this host's
	// accelerator; a resumed point's memory and CPU model below.
	s.spec = s.machineSpec
	s.spec.Accelerator = s.accel
	if err := s.vmmRuns(s.spec); err != nil {
		return plan, sess, err
	}
	if p := plan.Resume; p != nil {
		if err := s.resumable(*p); err != nil {
			return plan, sess, err
		}
		if m := p.Manifest.Spec.MemoryMiB; m > 0 {
			s.spec.MemoryMiB = m // what the point's machine had, whatever machine.json says now
		}
		if err := s.compatible(*p); err != nil {
			return plan, sess, refusal(*p, err)
		}
	}
	return plan, sess, nil
}

// resumable refuses a point another VMM plugin made, or one that does
// not verify.
func (s *Session) resumable(p pad.Point) error {
	if made := p.Manifest.VMM.Name; made != "" && made != s.vmm.Name {
		return withWayOut(fmt.Errorf("%w: suspend point %s was made by %s %s (CPU model %q, machine %s), and only that VMM plugin can resume it, not %s: set plugins.vmm = %q to resume it, or boot its disk with %s (the point is kept); nothing was changed",
			ErrRefusedPoint, p.Manifest.ID, made, p.Manifest.VMM.Version, p.Manifest.CPUModel, machineLine(p.Manifest.VMMMachine), s.vmm.Name, made, s.vmm.Name),
			WayOut{Kind: WayOutOtherPoint, Point: p.Manifest.ID})
	}
	if err := p.VerifyEager(); err != nil {
		return refusal(p, err)
	}
	return nil
}

// keepWhatWasLeft keeps the disks' latest state as a disk point when the
// plan leaves it behind, and says what the last session lost.
func (s *Session) keepWhatWasLeft(ctx context.Context, plan *Plan, sess pad.SessionState) error {
	if plan.KeepLatestDisk {
		id, err := s.keepLatestDisk(ctx, sess)
		if err != nil {
			return err
		}
		s.result.KeptDisk = id
		if plan.Lost != "" {
			plan.Lost += fmt.Sprintf("; its disk is kept as point %s (`soulpad run --point %s` boots it)", id, id)
		} else {
			s.r.progress("  the disk's latest state is kept as point %s (`soulpad run --point %s` boots it)", id, id)
		}
	}
	if plan.Lost != "" {
		s.result.Lost = plan.Lost
		s.r.progress("  %s", plan.Lost)
		_ = s.r.journal.Append(pad.Entry{Stage: StageResume, Event: "info", Message: plan.Lost})
	}
	return nil
}

// resumePoint restores the machine from p.
func (s *Session) resumePoint(ctx context.Context, p pad.Point, note *string) error {
	s.spec.CPUModel = p.Manifest.CPUModel
	var sums []vmm.FileSum
	for _, f := range p.OnLoadSums() {
		sums = append(sums, f.VMM())
	}
	stopWatch := s.watchVMM(ctx, "resume")
	out, err := s.vmm.VMM().Resume(ctx, vmm.ResumeRequest{Spec: s.spec, MachineDir: s.machine.Dir, StateDir: p.Dir, Description: p.Manifest.Description, Sums: sums})
	stopWatch(err == nil)
	if err != nil {
		err = s.vmm.Err("resume "+p.Manifest.ID, err)
		if errors.Is(err, sdk.ErrIncompatibleHost) || errors.Is(err, sdk.ErrCorrupt) {
			return refusal(p, err)
		}
		return err
	}
	s.journalPhases(StageResume, out.Phases)
	for _, n := range out.Notes {
		n = pad.Printable(n)
		s.r.progress("  note: %s", n)
		_ = s.r.journal.Append(pad.Entry{Stage: StageResume, Event: "info", Message: n})
	}
	s.console = out.Console
	s.cpuFeatures = out.CPUFeatures
	s.desc = p.Manifest.Description
	s.parent = p.Manifest.ID
	s.running = s.runningCopies(out.RunningCopies)
	if p.HasMapped() {
		s.checkMappedBeside(ctx, p, s.running)
	}
	s.result.ResumedFrom = p.Manifest.ID
	*note = "resumed " + p.Manifest.ID
	return nil
}

// checkMappedBeside checks the point's mapped files (the guest's RAM,
// read as the guest touches it) beside the running machine, and those of
// the points its memory derives from that were not checked when it was
// sealed. A point sealed before the check ends lists what is left
// (pad.Manifest.Unchecked); a failed check stops the machine.
func (s *Session) checkMappedBeside(ctx context.Context, p pad.Point, copies map[string]string) {
	todo := []pad.Point{p}
	if len(p.Manifest.Unchecked) > 0 {
		todo = append(todo, s.uncheckedAncestors(p)...)
	}
	s.unchecked = nil
	for _, q := range todo {
		s.unchecked = append(s.unchecked, q.Manifest.ID)
	}
	vctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.r.push("stop checking the point", func(context.Context) error { cancel(); return nil })
	s.checked = make(chan error, 1)
	checked, journal, ids := s.checked, s.r.journal, strings.Join(s.unchecked, ", ")
	go func() {
		start := time.Now()
		var read int64 // bytes read from the points' own files
		for _, q := range todo {
			via := copies // an unchecked ancestor has no running copy
			if q.Manifest.ID != p.Manifest.ID {
				via = nil
			}
			n, err := q.VerifyMappedHeld(vctx, via, s.checkHeld.Load)
			read += n
			if err != nil {
				if q.Manifest.ID != p.Manifest.ID {
					err = fmt.Errorf("point %s's memory derives from point %s, which had not passed its check when %s was sealed: %w", p.Manifest.ID, q.Manifest.ID, p.Manifest.ID, err)
				}
				checked <- err
				return
			}
		}
		_ = journal.Append(pad.Entry{Stage: StageResume, Event: "info",
			Message: fmt.Sprintf("point %s's mapped memory checked in %.1f s (%s read from the point's own files, the rest through the running copy)", ids, time.Since(start).Seconds(), humanBytes(read)),
			Fields:  map[string]any{"seconds": time.Since(start).Seconds(), "point_bytes": read}})
		checked <- nil
	}()
}

// runningCopies are the VMM plugin's running copies of the point's mapped
// files (vmm.ResumeResponse.RunningCopies, StartResponse.RunningFiles)
// that lie in the machine's directory; the check reads those first, and
// presum hashes them ahead of the suspend.
func (s *Session) runningCopies(in map[string]string) map[string]string {
	out := map[string]string{}
	for name, path := range in {
		rel, err := filepath.Rel(s.machine.Dir, path)
		if err == nil && filepath.IsAbs(path) && filepath.IsLocal(rel) {
			out[name] = path
		}
	}
	return out
}

// uncheckedAncestors are the points p lists as unchecked that are still
// on the pad; one that is gone cannot be checked, which is said.
func (s *Session) uncheckedAncestors(p pad.Point) []pad.Point {
	pts, err := s.machine.Points()
	var out []pad.Point
	for _, id := range p.Manifest.Unchecked {
		q, ferr := pad.FindPoint(pts, id)
		if err != nil || ferr != nil || !q.HasMapped() {
			msg := fmt.Sprintf("point %s's memory derives from point %s, which was not checked and is gone: that part cannot be checked", p.Manifest.ID, id)
			s.r.progress("  warning: %s", msg)
			_ = s.r.journal.Append(pad.Entry{Stage: StageResume, Event: "info", Message: msg})
			continue
		}
		out = append(out, q)
	}
	return out
}

// coldBoot boots the machine's latest disk, or the plan's disk point.
func (s *Session) coldBoot(ctx context.Context, plan Plan, note *string) error {
	mib, warn, err := fitMemory(s.spec.MemoryMiB, s.profile, false)
	if err != nil {
		return err
	}
	if warn != "" {
		s.spec.MemoryMiB = mib
		s.r.progress("  warning: %s", warn)
	}
	if s.spec.CPUModel == CPUHost || s.spec.CPUModel == CPUMax {
		s.r.progress("  warning: CPU model %q: the suspend points of this session resume only on hosts with this CPU's features (cpu_model = \"portable\" resumes anywhere)", s.spec.CPUModel)
	}
	req := vmm.StartRequest{Spec: s.spec, MachineDir: s.machine.Dir}
	if b := plan.BootFrom; b != nil {
		req.From = &vmm.PointState{StateDir: b.Dir, Description: b.Manifest.Description}
		s.parent = b.Manifest.ID
	}
	out, err := s.vmm.VMM().Start(ctx, req)
	if err != nil {
		return s.vmm.Err("start", err)
	}
	s.desc = out.Description
	s.console = out.Console
	s.cpuFeatures = out.CPUFeatures
	s.running = s.runningCopies(out.RunningFiles)
	s.result.ColdBootReason = plan.Reason
	*note = "cold boot: " + plan.Reason
	return nil
}

// powerOff stops the machine unless it stopped (the cleanup of resume).
func (s *Session) powerOff(ctx context.Context) error {
	if s.stopEvents != nil {
		s.stopEvents()
	}
	if s.vmm.Exited() {
		return nil // the machine went with its plugin
	}
	vm := s.vmm.VMM()
	st, err := vm.Status(ctx, vmm.StatusRequest{Name: s.spec.Name})
	if err == nil && st.State == vmm.StateStopped {
		return nil
	}
	_, err = vm.PowerOff(ctx, vmm.PowerOffRequest{Name: s.spec.Name, Force: true})
	return s.vmm.Err("power off", err)
}

// keepLatestDisk keeps the disks' latest state, left by the session in
// sess that ended without suspending, as a sealed disk point.
func (s *Session) keepLatestDisk(ctx context.Context, sess pad.SessionState) (string, error) {
	dh, ok := s.vmm.VMM().(vmm.DiskHistory)
	if !ok {
		return "", fmt.Errorf("%s: keep disks: %w", s.vmm.Name, sdk.ErrUnsupported)
	}
	pend, err := s.machine.NewPending()
	if err != nil {
		return "", err
	}
	out, err := dh.KeepDisks(ctx, vmm.KeepDisksRequest{Spec: s.spec, MachineDir: s.machine.Dir, StateDir: pend.Dir()})
	if err != nil {
		_ = pend.Discard()
		return "", s.vmm.Err("keep disks", err)
	}
	point, err := pend.Seal(out.Files, pad.Manifest{
		Kind: pad.KindDisk, Parent: sess.Point, Session: sess.Session, Generation: sess.Generation, SessionStarted: sess.Since,
		CPUModel: s.spec.CPUModel, Accelerator: s.spec.Accelerator, Description: out.Description,
		VMM: pad.PluginRef{Name: s.vmm.Name, Version: s.vmm.Info.Version}, Host: s.profile, Spec: s.spec,
	})
	if err != nil {
		_ = pend.Discard()
		return "", err
	}
	_ = s.r.journal.Append(pad.Entry{Stage: StageResume, Event: "info", Message: "disk kept as a point", Fields: map[string]any{
		"point": point.Manifest.ID, "kind": pad.KindDisk, "session": sess.Session}})
	return point.Manifest.ID, nil
}

// compatible checks a point against this host before the VMM sees it:
// the CPU features the point needs, and the memory it needs.
func (s *Session) compatible(p pad.Point) error {
	if missing := MissingFeatures(p.Manifest.CPUFeatures, s.profile); len(missing) > 0 {
		return fmt.Errorf("suspend point %s (CPU model %q, taken on %s) needs CPU features this host (%s) lacks: %s: %w",
			p.Manifest.ID, p.Manifest.CPUModel, HostSummary(p.Manifest.Host), HostSummary(s.profile), strings.Join(missing, ", "), sdk.ErrIncompatibleHost)
	}
	if p.Manifest.Accelerator == "kvm" && s.spec.Accelerator != "kvm" && p.Manifest.CPUModel == CPUHost {
		return fmt.Errorf("suspend point %s was taken with the host CPU model under KVM; this host has no KVM: %w", p.Manifest.ID, sdk.ErrIncompatibleHost)
	}
	if _, _, err := fitMemory(s.spec.MemoryMiB, s.profile, true); err != nil {
		return fmt.Errorf("suspend point %s: %w", p.Manifest.ID, err)
	}
	return nil
}

// vmmRuns checks the machine against what the VMM plugin announces it
// runs (disk formats, networks), before anything starts.
func (s *Session) vmmRuns(spec vmm.Spec) error {
	caps := s.vmm.Info.Capabilities
	for _, d := range spec.Disks {
		if d.Format != "" && !vmm.Supports(caps, vmm.CapDiskFormatPrefix, d.Format) {
			return fmt.Errorf("disk %s is a %s image, which %s does not run (it runs %s): %w", d.Name, d.Format, s.vmm.Name,
				strings.Join(vmm.Announced(caps, vmm.CapDiskFormatPrefix), ", "), sdk.ErrIncompatibleHost)
		}
	}
	if fw := spec.FirmwareOf(); !vmm.Supports(caps, vmm.CapFirmwarePrefix, fw) {
		return fmt.Errorf("the machine boots %s firmware, which %s does not offer (it offers %s): %w", fw, s.vmm.Name,
			strings.Join(vmm.Announced(caps, vmm.CapFirmwarePrefix), ", "), sdk.ErrIncompatibleHost)
	}
	if spec.Media != "" && !s.vmm.Info.Has(vmm.CapMedia) {
		return fmt.Errorf("the machine has an installer in its CD-ROM drive, and %s has no CD-ROM drive: eject it (soulpad media eject) or use vmm-qemu: %w", s.vmm.Name, sdk.ErrIncompatibleHost)
	}
	if spec.Network != "" && !vmm.Supports(caps, vmm.CapNetworkPrefix, spec.Network) {
		return fmt.Errorf("machine.network = %q, which %s does not offer (it offers %s): %w", spec.Network, s.vmm.Name,
			strings.Join(vmm.Announced(caps, vmm.CapNetworkPrefix), ", "), sdk.ErrIncompatibleHost)
	}
	return nil
}

// machineLine is a VMM's line about a machine, or that it gave none.
func machineLine(machine string) string {
	if machine == "" {
		return "not named by its VMM plugin"
	}
	return machine
}

// journalPhases records where a stage's time went, as the VMM (and the
// core) measured it.
func (s *Session) journalPhases(stage string, ps []vmm.Phase) {
	if len(ps) == 0 {
		return
	}
	_ = s.r.journal.Append(pad.Entry{Stage: stage, Event: "info", Message: stage + " phases: " + vmm.FormatPhases(ps), Fields: map[string]any{"phases": ps}})
}
