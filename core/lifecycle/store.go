package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"

	"time"

	"github.com/soulpad/soulpad/core/isr"
	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/store"
)

// StageCheckout checks the pad out of the store and copies in what it
// lacks (Internet Suspend/Resume); it runs first when plugins.store is set.
const StageCheckout = "checkout"

// checkout takes the pad's lock, then its lease on the store, and makes
// the pad the store's newest version (or Options.StoreVersion), fetching
// only the chunks it lacks; a PC with no pad starts from an empty
// directory. It pushes the copy-out and the checkin, which run after the
// vault is locked.
func (s *Session) checkout(ctx context.Context, note *string) error {
	dir, name := s.cfg.Pad.Path, s.cfg.Store.Name
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pad %s: %w", dir, err)
	}
	lock, err := pad.LockPad(dir, "run", false)
	if err != nil {
		return err
	}
	s.lock = lock
	// The copy-out comes after everything else has written to the pad
	// (the shutdown's journal entries included), so that the version is
	// the pad as it is left: the store's plugin, the checkin and the
	// pad's lock come last, after the shutdown stage.
	s.finally(func(context.Context) error { return lock.Release() })
	host, st, err := OpenStore(ctx, s.cfg, s.log)
	if err != nil {
		return err
	}
	s.finally(func(context.Context) error { host.Close(); return nil })
	hostName, _ := os.Hostname()
	offline := func(err error) error {
		state, serr := isr.LoadState(dir)
		if serr != nil || state.Seq == 0 || state.Incomplete {
			return fmt.Errorf("store %s: %w (and this pad holds no complete version to run offline)", s.cfg.Plugins.Store, err)
		}
		msg := fmt.Sprintf("the store is out of reach (%v): running the pad's own copy, version %d; the next session that reaches the store copies it out", err, state.Seq)
		s.r.progress("  warning: %s", msg)
		s.storeNote = msg
		*note = fmt.Sprintf("offline: pad's own version %d", state.Seq)
		return nil
	}
	if _, err := isr.Checkout(ctx, st, dir, name, hostName, false); err != nil {
		if errors.Is(err, sdk.ErrBusy) || errors.Is(err, sdk.ErrInvalidArgument) || errors.Is(err, sdk.ErrInvalidConfig) {
			return err
		}
		return offline(err)
	}
	// Run in reverse after the shutdown: the copy-out, then the checkin
	// (kept when the copy-out failed, so that no other PC takes an older
	// version).
	kept := false
	s.finally(func(ctx context.Context) error {
		if kept {
			return nil
		}
		// A failed checkin leaves the lease to this pad; the pad itself
		// is fine, so the session does not fail for it.
		_ = s.timed(StageCheckin, func() (string, error) { return "", isr.Checkin(ctx, st, dir, name) })
		return nil
	})
	s.finally(func(ctx context.Context) error {
		if s.plaintext == "" && !s.storeAhead {
			return nil // the vault was never opened: nothing but the journal changed
		}
		// A failed copy-out leaves the pad ahead of the store, sealed
		// and whole: a warning, not a failed session.
		_ = s.timed(StageCopyOut, func() (string, error) {
			out, err := isr.Push(ctx, st, dir, name, hostName, s.transferProgress)
			if err != nil {
				kept = true
				s.r.progress("  warning: copy-out failed (%v); the pad keeps the lease and its changes, and the next session (or `soulpad store push`) copies them out", err)
				return "", err
			}
			if out.Seq == 0 {
				return "the store has the pad already", nil
			}
			return fmt.Sprintf("copied out version %d: sent %s of %s", out.Seq, humanBytes(out.Uploaded), humanBytes(out.PadBytes)), nil
		})
		return nil
	})
	res, err := isr.Pull(ctx, st, dir, name, s.opts.StoreVersion, false, s.transferProgress)
	switch {
	case errors.Is(err, sdk.ErrNotFound) && s.opts.StoreVersion == 0:
		if _, perr := pad.Open(dir); perr != nil {
			return fmt.Errorf("the store has no version of %s yet and there is no pad at %s: make one with `soulpad init`; the session's end copies it out", name, dir)
		}
		s.storeAhead = true
		*note = "a new pad: its first version is copied out at the end"
		return nil
	case errors.Is(err, isr.ErrConflict) || errors.Is(err, sdk.ErrCorrupt) || errors.Is(err, sdk.ErrNotFound):
		return err
	case err != nil:
		return offline(err)
	}
	s.storeAhead = res.Ahead
	switch {
	case res.Ahead:
		*note = fmt.Sprintf("the pad is ahead of the store's version %d (changes from a session the store did not see): they are copied out at the end", res.Seq)
	default:
		*note = fmt.Sprintf("version %d: copied in %s of %s", res.Seq, humanBytes(res.Fetched), humanBytes(res.PadBytes))
	}
	s.storeNote = *note
	return nil
}

// Stages after the shutdown, with a store.
const (
	StageCopyOut = "copy-out"
	StageCheckin = "checkin"
)

// finally registers work for after the shutdown stage, when nothing
// writes to the pad any more; it runs in reverse order of registration.
func (s *Session) finally(fn func(context.Context) error) { s.finals = append(s.finals, fn) }

// runFinally runs the work registered with finally. The journal is
// closed by then: these stages are in the summary table only.
func (s *Session) runFinally(ctx context.Context) error {
	var errs []error
	for i := len(s.finals) - 1; i >= 0; i-- {
		if err := s.finals[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.finals = nil
	return errors.Join(errs...)
}

// timed runs fn as a stage after the shutdown: timed and printed, not
// journaled.
func (s *Session) timed(name string, fn func() (string, error)) error {
	s.r.progress("▸ %s", name)
	start := time.Now()
	note, err := fn()
	d := time.Since(start)
	s.r.timings = append(s.r.timings, Timing{Stage: name, Duration: d, Err: err, Note: note})
	switch {
	case err != nil:
		s.r.progress("  %s failed after %s: %v", name, round(d), err)
	case note != "":
		s.r.progress("  %s (%s)", note, round(d))
	}
	return err
}

// transferProgress prints a copy's progress now and then.
func (s *Session) transferProgress(phase string, p store.Progress) {
	if s.opts.Progress != nil {
		s.opts.Progress(Progress{Step: phase, Done: p.BytesDone, Total: p.BytesTotal, Final: p.BytesTotal > 0 && p.BytesDone >= p.BytesTotal})
		return
	}
	if p.BytesTotal == 0 {
		return
	}
	s.r.progress("  %s: %s of %s (%d%%)", phase, humanBytes(int64(p.BytesDone)), humanBytes(int64(p.BytesTotal)), p.BytesDone*100/p.BytesTotal)
}
