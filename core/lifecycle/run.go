package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// runMachine is the run stage: it waits for a suspend request (or the
// context's end) or the guest's power-off. It ends with an error only
// when the machine cannot be suspended any more (a plugin died, the
// resumed point failed its check).
func (s *Session) runMachine(ctx context.Context, note *string) error {
	if s.attempts == 0 {
		if err := s.beginRunning(ctx); err != nil {
			return err
		}
	}
	s.presum.start(ctx, s.parent)
	defer s.presum.stop() // a suspend halts it once the VMM plugin has the request
	s.suspendAsked = false
	s.r.progress("  the machine is running; Ctrl-C or `soulpad suspend` suspends it")
	tick, stopTick := s.checkpointTicker()
	defer func() { stopTick() }()
	for {
		select {
		case <-tick:
			tick = s.checkpointOrStop(ctx, tick, stopTick)
		case <-s.checkpoints:
			tick = s.checkpointOrStop(ctx, tick, stopTick)
		case <-s.unplugged:
			return s.padUnplugged()
		case <-s.crypt.Done():
			return s.cryptDied()
		case <-s.vmm.Done():
			return s.vmmDied("")
		case err := <-s.checked:
			s.checked, s.unchecked = nil, nil
			if err != nil {
				return s.checkFailed(err)
			}
		case <-s.opts.SuspendRequests:
			return s.askSuspend(note, "suspend requested")
		case <-s.requests:
			return s.askSuspend(note, "suspend requested")
		case <-ctx.Done():
			s.stopping = true
			return s.askSuspend(note, "stopping: "+ctx.Err().Error())
		case ev, ok := <-s.events:
			if !ok {
				s.events = nil
				continue
			}
			switch ev.Type {
			case vmm.EventPoweredOff:
				*note = "the guest powered off"
				return s.poweredOffNow()
			case vmm.EventSleepRequested:
				return s.askSuspend(note, "the guest asked to sleep")
			case vmm.EventCrashed:
				return s.vmmDied(ev.Message)
			case vmm.EventGuestAgent, vmm.EventNoGuestAgent:
				s.guestSaid(ev)
			}
		}
	}
}

// guestSaid shows and journals what the VMM said of the guest's agent
// (once a start or resume).
func (s *Session) guestSaid(ev vmm.Event) {
	msg := pad.Printable(ev.Message)
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	s.guest.Store(&msg)
	s.r.progress("  guest: %s", msg)
	_ = s.r.journal.Append(pad.Entry{Stage: StageRun, Event: "info", Message: "guest: " + msg, Fields: map[string]any{"agent": ev.Type == vmm.EventGuestAgent}})
}

// beginRunning is what happens once, as the machine starts running: the
// control socket, the caller's hook, the VMM's events.
func (s *Session) beginRunning(ctx context.Context) error {
	s.lastPoint.Store(time.Now().UnixNano())
	s.watchUnplug(s.life)
	if s.memoryMapped(ctx) {
		s.checkRoom(ctx)
	}
	warned := false
	s.presum = newPresummer(s.machine, s.running, int64(s.spec.MemoryMiB)<<20, func(msg string) {
		if !warned {
			warned = true
			s.r.progress("  warning: %s", msg)
			_ = s.r.journal.Append(pad.Entry{Stage: StageRun, Event: "info", Message: msg})
		}
	})
	if s.opts.Control {
		s.startControl()
	}
	if s.opts.OnRunning != nil {
		s.opts.OnRunning(s)
	}
	if !s.vmm.Info.Has(vmm.CapEvents) {
		return nil
	}
	evctx, cancel := context.WithCancel(ctx)
	s.stopEvents = cancel // by powerOff, the cleanup of resume
	ch, err := s.vmm.VMM().(vmm.EventStreamer).Events(evctx, vmm.EventsRequest{Name: s.spec.Name})
	if err != nil {
		return s.vmm.Err("events", err)
	}
	s.events = ch
	return nil
}

// askSuspend ends the run stage with a suspend to follow.
func (s *Session) askSuspend(note *string, why string) error {
	*note = why + s.checkpointNote()
	s.suspendAsked = true
	return nil
}

// writeBack starts writing back what the guest changed of its mapped
// memory (running: its files): the suspend must put those pages on the
// pad, and they go while the VMM plugin stops the guest and saves its
// devices, instead of after. Run on a goroutine of its own: the kernel
// may make it wait for the pad.
func writeBack(running map[string]string) {
	for _, path := range running {
		if f, err := os.Open(path); err == nil {
			_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
			f.Close()
		}
	}
}

// poweredOffNow ends the session without a suspend point: the next run
// boots the disk.
func (s *Session) poweredOffNow() error {
	s.poweredOff = true
	s.result.Outcome = OutcomePoweredOff
	host, _ := os.Hostname()
	return s.machine.SetSession(pad.SessionState{State: pad.SessionStopped, Point: s.parent, Session: s.ID, Generation: s.gen, Host: host})
}

// vmmDied reports a machine that stopped on its own: the VMM plugin
// exited (why is "") or said its machine crashed (why says how). A
// machine whose disk and memory live in the vault stops too when the
// crypt plugin dies, often a moment before the core sees that plugin's
// end: then the vault's loss is what happened, and is reported as such.
func (s *Session) vmmDied(why string) error {
	select {
	case <-s.crypt.Done():
		return s.cryptDied()
	case <-s.unplugged:
		return s.padUnplugged()
	case <-time.After(2 * time.Second):
	}
	if why != "" {
		return fmt.Errorf("%s: the machine stopped unexpectedly: %s (see the log lines above): %w", s.vmm.Name, pad.Printable(why), sdk.ErrPluginExited)
	}
	return fmt.Errorf("%s: the machine stopped unexpectedly: the plugin process exited, and the machine with it (see its log lines above): %w", s.vmm.Name, sdk.ErrPluginExited)
}

// ErrVaultLost: the crypt plugin died while the vault was open.
var ErrVaultLost = errors.New("the vault was lost")

// cryptDied stops the session after the crypt plugin died while the vault
// was open: its plaintext cannot be trusted to reach the pad any more, so
// the machine is stopped without a suspend point (the last sealed point
// and the disk as the plugin last wrote it stay), and the cleanups detach
// whatever of the vault is still mounted.
func (s *Session) cryptDied() error {
	if s.padGone() {
		return s.padUnplugged()
	}
	s.r.progress("  %s exited while the vault was open: stopping the machine without a suspend point", s.crypt.Name)
	s.stopNow()
	return fmt.Errorf("%s: the crypt plugin exited while the vault was open (see its log lines above), so the machine was stopped without a suspend point; the next `soulpad run` resumes the last sealed point and keeps the disk as it was: %w (%w)",
		s.crypt.Name, ErrVaultLost, sdk.ErrPluginExited)
}

// stopNow stops the machine at once, without a suspend point, and
// detaches what is left of the vault's mount: the vault cannot be
// trusted to take a point any more.
func (s *Session) stopNow() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !s.vmm.Exited() {
		_, _ = s.vmm.VMM().PowerOff(ctx, vmm.PowerOffRequest{Name: s.spec.Name, Force: true})
	}
	if s.mountDir != "" {
		_ = detachMount(s.mountDir)
	}
}

// checkFailed reports a failed check of the resumed point's mapped
// memory. A vault whose crypt plugin died fails the check too (its reads
// fail): then the plugin's death is what happened, and is reported as
// such once seen (it is, within moments, when that is the cause).
func (s *Session) checkFailed(err error) error {
	select {
	case <-s.crypt.Done():
		return s.cryptDied()
	case <-time.After(2 * time.Second):
	}
	return s.damagedPoint(err)
}

// damagedPoint ends a session whose resumed point failed its check
// beside the running machine: the guest ran on memory that is not what
// was sealed, so nothing is suspended on top of it; the machine is
// powered off (the cleanup) and the point is kept.
func (s *Session) damagedPoint(err error) error {
	return withWayOut(fmt.Errorf("%w: %w; the machine ran on it for a moment and was stopped without suspending (its disk is kept as a point at the next run; point %s is kept)",
		ErrRefusedPoint, err, s.parent), WayOut{Kind: WayOutOtherPoint, Point: s.parent})
}
