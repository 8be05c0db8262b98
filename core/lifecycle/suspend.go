package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// maxSuspendAttempts bounds how often a failed suspend sends the session
// back to run before giving up.
const maxSuspendAttempts = 3

// suspendWanted: the run stage ended asking for a suspend.
func (s *Session) suspendWanted() bool { return s.suspendAsked && !s.poweredOff }

// suspendStage suspends the machine into a new sealed point. A failed
// suspend of a machine that still runs goes back to the run stage (up to
// maxSuspendAttempts), so the session is not lost.
func (s *Session) suspendStage(ctx context.Context, note *string) error {
	s.attempts++
	if s.padGone() {
		return s.padUnplugged()
	}
	ctx, cancel := s.cancelOnUnplug(ctx)
	defer cancel()
	err := s.suspend(ctx, note)
	if err == nil {
		s.result.Outcome = OutcomeSuspended
		return nil
	}
	if s.padGone() {
		return errors.Join(s.padUnplugged(), err)
	}
	if s.crypt.Exited() {
		return errors.Join(err, s.cryptDied())
	}
	if errors.Is(err, ErrRefusedPoint) {
		return err // the resumed point failed its check: no retry
	}
	st, serr := s.vmm.VMM().Status(ctx, vmm.StatusRequest{Name: s.spec.Name})
	if serr != nil || st.State != vmm.StateRunning || s.attempts >= maxSuspendAttempts || s.stopping {
		return err
	}
	s.r.progress("  the machine is still running and nothing was lost; ask again to retry the suspend (attempt %d of %d failed)", s.attempts, maxSuspendAttempts)
	return &errAgain{stage: StageRun, err: err}
}

// suspend writes a new suspend point and seals it.
func (s *Session) suspend(ctx context.Context, note *string) error {
	if err := s.checkSoFar(); err != nil {
		return err
	}
	// A check still running waits: the suspend has the pad and the CPUs.
	s.checkHeld.Store(true)
	defer s.checkHeld.Store(false)
	defer s.presum.halt()
	var phases []vmm.Phase
	pend, err := s.machine.NewPending()
	if err != nil {
		return err
	}
	// Should soulpad die from here on, the next run seals what the VMM
	// plugin finishes writing (pad.Recover). Nothing that waits for the
	// pad comes between the request and the plugin: the draft is made
	// durable, and the hashing ahead has ended, once the plugin is done.
	if err := pend.Draft(s.draftManifest(false)); err != nil {
		_ = pend.Discard()
		return err
	}
	go writeBack(s.running)
	start := time.Now()
	// The state as it reaches the vault: memory and device state, about
	// the guest's RAM when it is streamed.
	ram := int64(s.spec.MemoryMiB) << 20
	if free, _, ok := vaultSpace(pend.Dir()); ok && free < ram {
		s.r.progress("  warning: the vault has %s free and the machine's RAM is %s: a point that streams the RAM may not fit", humanBytes(free), humanBytes(ram))
	}
	stopWatch := watchDir(ctx, pend.Dir(), "suspend", uint64(ram), 250*time.Millisecond, s.opts.Progress)
	out, err := s.vmm.VMM().Suspend(ctx, vmm.SuspendRequest{Name: s.spec.Name, StateDir: pend.Dir()})
	stopWatch(err == nil)
	if err != nil {
		err = s.vmm.Err("suspend", err)
		if full := vaultFull(pend.Dir(), ram); full != "" {
			err = fmt.Errorf("%s: %w", full, err)
		}
		_ = pend.Discard()
		return err
	}
	phases = append(phases, out.Phases...)
	sealing := time.Now()
	if err := pend.SyncDraft(); err != nil {
		_ = pend.Discard()
		return err
	}
	s.presum.halt()
	s.presum.lend(pend) // what was hashed while the machine ran
	point, err := s.sealPoint(pend, out, start, false)
	if err != nil {
		return err
	}
	s.result.Point = point.Manifest.ID
	s.presum.clear()
	phases = append(phases, vmm.Phase{Name: "seal", Seconds: time.Since(sealing).Seconds()})
	s.journalPhases(StageSuspend, phases)
	s.retain(ctx, point)
	// No secrets: what status shows without unlocking the vault.
	fields := map[string]any{
		"point": point.Manifest.ID, "bytes": point.Size(), "hashed_bytes": pend.Hashed(), "cpu_model": s.spec.CPUModel,
		"accelerator": s.spec.Accelerator, "host": s.profile.Hostname,
		"host_summary": HostSummary(s.profile), "host_fingerprint": s.profile.Fingerprint,
	}
	maps.Copy(fields, s.presum.fields())
	if n := mappedBytes(point); n > 0 {
		fields["memory_bytes"] = n // the RAM the guest touched
	}
	_ = s.r.journal.Append(pad.Entry{Stage: StageSuspend, Event: "info", Message: "suspend point sealed", Fields: fields})
	*note = fmt.Sprintf("sealed %s, %s", point.Manifest.ID, humanBytes(point.Size()))
	if len(s.result.Pruned) > 0 {
		*note += fmt.Sprintf("; removed the oldest point(s) %s (session.keep_points = %d)", strings.Join(s.result.Pruned, ", "), s.cfg.Session.KeepPoints)
	}
	return nil
}

// mappedBytes is what p's mapped files hold on the disk (their blocks:
// the RAM the guest ever touched).
func mappedBytes(p pad.Point) int64 {
	var n int64
	for _, f := range p.Manifest.Files {
		var st unix.Stat_t
		if f.Mapped && unix.Stat(filepath.Join(p.Dir, f.Name), &st) == nil {
			n += st.Blocks * 512
		}
	}
	return n
}

// vaultSpace is what the file system holding dir has free (for soulpad)
// and in all, in bytes.
func vaultSpace(dir string) (free, total int64, ok bool) {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return 0, 0, false
	}
	return int64(st.Bavail) * st.Bsize, int64(st.Blocks) * st.Bsize, true
}

// vaultFull says, after a suspend failed, whether the vault (dir's file
// system) is full, in words that say what the point needs and what is
// free; "" when it is not.
func vaultFull(dir string, ram int64) string {
	free, total, ok := vaultSpace(dir)
	written := dirBytes(dir)
	if !ok || free >= min(16<<20, total/50) {
		return ""
	}
	return fmt.Sprintf("the vault is full: the point stopped at %s written, with %s free of %s, and a point of this machine needs up to %s (its RAM); "+
		"remove old points (soulpad points prune) or give the pad a larger vault (pad.vault_size_mib)",
		humanBytes(int64(written)), humanBytes(free), humanBytes(total), humanBytes(ram))
}

// checkSoFar takes the result of the check of the resumed point's
// mapped memory when it has come. A suspend does not wait for a check
// still running: the point it seals lists the points left unchecked
// (pad.Manifest.Unchecked, from draftManifest), and its resume checks
// them, so damage in them is still refused.
func (s *Session) checkSoFar() error {
	if s.checked == nil {
		return nil
	}
	select {
	case err := <-s.checked:
		s.checked, s.unchecked = nil, nil
		if err != nil {
			return s.checkFailed(err)
		}
	default:
		msg := fmt.Sprintf("the check of the memory of point(s) %s has not finished; the new point records that, and its resume checks them", strings.Join(s.unchecked, ", "))
		s.r.progress("  %s", msg)
		_ = s.r.journal.Append(pad.Entry{Stage: StageSuspend, Event: "info", Message: msg})
	}
	return nil
}

// pendingChecks is what a point sealed now lists as unchecked.
func (s *Session) pendingChecks() []string {
	if s.checked == nil {
		return nil
	}
	return slices.Clone(s.unchecked)
}

// sealPoint seals what the VMM wrote into pend as the newest point, and
// makes it the one the next run resumes: a suspend's, or a checkpoint's
// (the session still runs: a crash resumes it).
func (s *Session) sealPoint(pend *pad.Pending, out vmm.SuspendResponse, start time.Time, checkpoint bool) (pad.Point, error) {
	if out.Description == "" {
		out.Description = s.desc
	}
	man := s.draftManifest(checkpoint)
	man.SuspendSeconds = time.Since(start).Seconds()
	point, err := sealWith(pend, man, out)
	if err != nil {
		_ = pend.Discard()
		return point, err
	}
	host, _ := os.Hostname()
	state := pad.SessionSuspended
	if checkpoint {
		state = pad.SessionRunning
	}
	err = s.machine.SetSession(pad.SessionState{State: state, Point: point.Manifest.ID, Session: s.ID, Generation: s.gen, Host: host})
	return point, err
}

// draftManifest is the manifest of the point this session takes now,
// but for what the VMM plugin says (sealWith adds it).
func (s *Session) draftManifest(checkpoint bool) pad.Manifest {
	return pad.Manifest{
		Kind:           pad.KindMemory,
		Parent:         s.parent,
		Session:        s.ID,
		Generation:     s.gen,
		SessionStarted: s.started,
		CPUModel:       s.spec.CPUModel,
		CPUFeatures:    s.neededFeatures(),
		Accelerator:    s.spec.Accelerator,
		Description:    s.desc,
		VMM:            pad.PluginRef{Name: s.vmm.Name, Version: s.vmm.Info.Version},
		Host:           s.profile,
		Spec:           s.spec,
		Checkpoint:     checkpoint,
		Unchecked:      s.pendingChecks(),
	}
}

// sealWith seals pend with the draft manifest man and what the VMM
// plugin wrote (its files, sums, description).
func sealWith(pend *pad.Pending, man pad.Manifest, out vmm.SuspendResponse) (pad.Point, error) {
	if out.Description != "" {
		man.Description = out.Description
	}
	man.VMMMachine = out.Machine
	var known []pad.FileSum
	for _, f := range out.Sums {
		known = append(known, pad.FileSumFrom(f))
	}
	_ = os.Remove(filepath.Join(pend.Dir(), vmm.ResultFile))
	return pend.Seal(out.Files, man, known...)
}

// retain prunes old points (session.keep_points); the new point is
// sealed whatever happens here.
func (s *Session) retain(ctx context.Context, point pad.Point) {
	defer s.r.slowNote(tidyNoteAfter, "  tidying the pad (old points, merging old disk overlays); the point is sealed already")()
	pruned, err := Prune(ctx, s.r.journal, s.machine, s.vmm, s.spec, s.cfg.Session.KeepPoints, false, point.Manifest.ID)
	if err != nil {
		s.r.progress("  warning: pruning old suspend points: %v", err)
		_ = s.r.journal.Append(pad.Entry{Stage: StageSuspend, Event: "info", Message: "pruning failed", Error: err.Error()})
		return
	}
	s.result.Pruned = pruned
	if len(pruned) == 0 {
		// Checkpoints pruned while the machine ran left disk state (and
		// chains) to collect, which a running machine does not allow.
		if err := CollectDisks(ctx, s.machine, s.vmm, s.spec); err != nil {
			s.r.progress("  warning: collecting old disk state: %v", err)
		}
	}
}

// neededFeatures is what a point of the running machine needs of a host:
// what the VMM plugin said, else the x86 default for its CPU model.
func (s *Session) neededFeatures() []string {
	if s.cpuFeatures != nil {
		return s.cpuFeatures
	}
	return NeededFeatures(s.spec.CPUModel, s.profile)
}

// recoverSuspends seals the suspends that a session asked for and its VMM
// plugin finished after soulpad died (a draft manifest and the plugin's
// result beside the state: pad.Pending.Draft, vmm.ResultFile). Pending
// points without them are incomplete; CleanPending removes them.
func (v *Vault) recoverSuspends() {
	for _, pend := range v.machine.Pendings() {
		man, ok := pend.Drafted()
		if !ok {
			continue
		}
		out, err := vmm.ReadResult(pend.Dir())
		if err != nil {
			continue
		}
		point, err := sealWith(pend, man, out)
		if err != nil {
			v.r.progress("  a suspend cut short could not be recovered (%v): it is removed", err)
			continue
		}
		v.r.progress("  recovered the suspend that was cut short: sealed point %s (%s)", point.Manifest.ID, humanBytes(point.Size()))
		_ = v.r.journal.Append(pad.Entry{Stage: StageUnlock, Event: "info", Message: "suspend point sealed", Fields: map[string]any{
			"point": point.Manifest.ID, "bytes": point.Size(), "cpu_model": man.CPUModel, "accelerator": man.Accelerator,
			"host": man.Host.Hostname, "host_summary": HostSummary(man.Host), "host_fingerprint": man.Host.Fingerprint, "recovered": true,
		}})
	}
}
