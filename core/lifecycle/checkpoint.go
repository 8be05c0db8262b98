package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/soulpad/soulpad/core/control"
	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// Checkpoints bound what a crash loses: every session.checkpoint_minutes
// while the machine runs, the VMM plugin takes a point without stopping
// the machine for more than its device state and the clone of its RAM
// file (vmm.SuspendRequest.Checkpoint), and the session seals it while
// the machine runs on. A crash (kill -9, power cut, unplugged pad)
// resumes the newest point of either kind; the disk's later state is
// kept as a disk point.

// noInterval: checkpoints come only when asked for (`soulpad checkpoint`).
const noInterval = "session.checkpoint_minutes = 0"

// CheckpointSealed is the journal's message for a sealed checkpoint
// (SuspendSealed's for a suspend point).
const CheckpointSealed = "checkpoint sealed"

// checkpointTicker ticks when a checkpoint is due; nil (never) when
// checkpoints are off here, with the reason in s.noCheckpoints.
func (s *Session) checkpointTicker() (<-chan time.Time, func()) {
	every := s.cfg.Session.CheckpointEvery()
	switch {
	case every <= 0:
		s.checkpointsOff(noInterval)
	case !s.vmm.Info.Has(vmm.CapCheckpoint):
		s.checkpointsOff(s.vmm.Name + " cannot take checkpoints")
	default:
		// Known before the first is due: status says why none will come.
		if st, err := s.vmm.VMM().Status(context.Background(), vmm.StatusRequest{Name: s.spec.Name}); err == nil && st.NoCheckpoint != "" {
			s.checkpointsOff(pad.Printable(st.NoCheckpoint))
		}
	}
	if s.whyNoCheckpoints() != "" {
		return nil, func() {}
	}
	t := time.NewTicker(every)
	return t.C, t.Stop
}

// checkpoint takes and seals a checkpoint; a failure is said and
// journaled, and the machine runs on (a plugin that cannot take one for
// this machine turns them off, saying why).
func (s *Session) checkpoint(ctx context.Context) (stop bool) {
	if s.checked != nil {
		return false // nothing is sealed on top of an unchecked point: next time
	}
	if !s.checkRoom(ctx) {
		return false // said by checkRoom; tried again next time
	}
	pend, err := s.machine.NewPending()
	if err != nil {
		s.checkpointFailed(err)
		return false
	}
	// The checkpoint takes the sums hashed ahead; the rounds go on from
	// it once it is sealed.
	s.presum.halt()
	defer func() { s.presum.start(ctx, s.parent) }()
	s.presum.lend(pend)
	start := time.Now()
	out, err := s.vmm.VMM().Suspend(ctx, vmm.SuspendRequest{Name: s.spec.Name, StateDir: pend.Dir(), Checkpoint: true})
	if err != nil {
		_ = pend.Discard()
		if errors.Is(err, sdk.ErrUnsupported) {
			why := pad.Printable(err.Error())
			s.checkpointsOff(why)
			s.r.progress("  no checkpoints while this machine runs: %s", why)
			_ = s.r.journal.Append(pad.Entry{Stage: StageRun, Event: "info", Message: "no checkpoints: " + why})
			return true
		}
		s.checkpointFailed(s.vmm.Err("checkpoint", err))
		return false
	}
	point, err := s.sealPoint(pend, out, start, true)
	if err != nil {
		s.checkpointFailed(err)
		return false
	}
	s.parent = point.Manifest.ID
	s.lastPoint.Store(point.Manifest.Created.UnixNano())
	s.checkpointsTaken++
	pause := 0.0
	for _, ph := range out.Phases {
		if ph.Name == "pause" {
			pause = ph.Seconds
		}
	}
	s.r.progress("  checkpoint %s: the machine paused %.2f s; %s sealed in %.1f s", point.Manifest.ID, pause, humanBytes(point.Size()), time.Since(start).Seconds())
	// No secrets: what status shows without unlocking the vault.
	_ = s.r.journal.Append(pad.Entry{Stage: StageRun, Event: "info", Message: CheckpointSealed, Fields: map[string]any{
		"point": point.Manifest.ID, "kind": pad.KindCheckpoint, "bytes": point.Size(), "hashed_bytes": pend.Hashed(), "pause_seconds": pause,
		"seconds": time.Since(start).Seconds(), "cpu_model": s.spec.CPUModel, "accelerator": s.spec.Accelerator,
		"host": s.profile.Hostname, "host_summary": HostSummary(s.profile), "host_fingerprint": s.profile.Fingerprint,
	}})
	s.pruneCheckpoints(ctx, point.Manifest.ID)
	return false
}

// checkpointNote is what the stage table says of the session's
// checkpoints ("" when none were taken).
func (s *Session) checkpointNote() string {
	if s.checkpointsTaken == 0 {
		return ""
	}
	return fmt.Sprintf("; %d checkpoint(s), the last %s", s.checkpointsTaken, time.Unix(0, s.lastPoint.Load()).Local().Format("15:04:05"))
}

// checkpointOrStop takes a checkpoint and returns the ticker to wait on
// next: none once the VMM plugin said this machine cannot take one.
func (s *Session) checkpointOrStop(ctx context.Context, tick <-chan time.Time, stop func()) <-chan time.Time {
	if s.checkpoint(ctx) {
		stop()
		return nil
	}
	return tick
}

// checkpointFailed says a checkpoint failed; the machine runs on, and
// the next one is tried at its time.
func (s *Session) checkpointFailed(err error) {
	s.r.progress("  warning: the checkpoint failed (the machine runs on; the next is tried in %s): %v", s.cfg.Session.CheckpointEvery(), err)
	_ = s.r.journal.Append(pad.Entry{Stage: StageRun, Event: "error", Message: "checkpoint failed", Error: err.Error()})
}

// pruneCheckpoints removes the oldest checkpoints beyond
// session.keep_checkpoints. Their disk state is collected at the next
// suspend (the VMM plugin does not collect while the machine runs).
func (s *Session) pruneCheckpoints(ctx context.Context, newest string) {
	pts, err := s.machine.Points()
	if err == nil {
		_, err = RemovePoints(ctx, s.r.journal, s.machine, nil, s.spec, CheckpointPrunePlan(pts, s.cfg.Session.KeepCheckpoints, newest))
	}
	if err != nil {
		s.r.progress("  warning: removing old checkpoints: %v", err)
	}
}

// lossBound says what a crash would lose now, for status: the time since
// the newest point the session sealed or resumed, and when the next
// checkpoint comes (or why none does).
func (s *Session) lossBound() (since time.Time, next string) {
	if ns := s.lastPoint.Load(); ns != 0 {
		since = time.Unix(0, ns)
	}
	switch why := s.whyNoCheckpoints(); {
	case why != "":
		next = "no checkpoints: " + why
	case s.roomShort.Load() != nil:
		next = "checkpoints skipped: " + *s.roomShort.Load()
	default:
		next = fmt.Sprintf("next checkpoint at %s", since.Add(s.cfg.Session.CheckpointEvery()).Local().Format("15:04:05"))
	}
	return since, next
}

// checkpointsOff records why no checkpoints are taken (status reads it
// from another goroutine).
func (s *Session) checkpointsOff(why string) { s.noCheckpoints.Store(&why) }

// whyNoCheckpoints is why no checkpoints are taken; "" while they are.
func (s *Session) whyNoCheckpoints() string {
	if p := s.noCheckpoints.Load(); p != nil {
		return *p
	}
	return ""
}

// askCheckpoint answers `soulpad checkpoint`: a checkpoint is asked for
// while the machine runs and the VMM plugin can take one.
func (s *Session) askCheckpoint() control.Response {
	if st := s.Stage(); st != StageRun {
		return control.Response{Message: "the machine is not running (stage " + st + ")", Stage: st}
	}
	if why := s.whyNoCheckpoints(); why != "" && why != noInterval {
		return control.Response{Message: "no checkpoints: " + why, Stage: StageRun}
	}
	select {
	case s.checkpoints <- struct{}{}:
		return control.Response{OK: true, Message: "checkpoint asked for", Stage: StageRun}
	default:
		return control.Response{Message: "a checkpoint is already asked for", Stage: StageRun}
	}
}
