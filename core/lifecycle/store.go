package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/soulpad/soulpad/core/isr"
	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/store"
)

// checkout takes the pad's lock, then its lease on the store, and makes
// the pad the store's newest version (or Options.StoreVersion), fetching
// only the chunks it lacks; a PC with no pad starts from an empty
// directory. The copy-out and the checkin are stages of their own at the
// end; the lock and the store's plugin go after them.
func (s *Session) checkout(ctx context.Context, note *string) error {
	dir, name := s.cfg.Pad.Path, s.cfg.Store.Name
	if err := s.lockDir("run", true); err != nil {
		return err
	}
	host, st, err := OpenStore(ctx, s.cfg, s.log)
	if err != nil {
		return err
	}
	s.r.pushAt(true, "stop the store's plugin", func(context.Context) error { host.Close(); return nil })
	hostName, _ := os.Hostname()
	lease, err := isr.Checkout(ctx, st, dir, name, hostName, s.cfg.Store.LeaseTerm(), false)
	if err != nil {
		if errors.Is(err, sdk.ErrBusy) || errors.Is(err, sdk.ErrInvalidArgument) || errors.Is(err, sdk.ErrInvalidConfig) {
			return err
		}
		return s.offline(err, note)
	}
	s.st, s.leased = st, lease.Lease.Acquired
	if r := lease.Replaced; r != nil {
		s.r.progress("  took over the lease of %s from %s, which let it lapse at %s", name, r.Host, r.Expires.Local().Format(time.DateTime))
	}
	s.renewLease(ctx, hostName)
	res, err := isr.Pull(ctx, st, dir, name, s.opts.StoreVersion, false, s.transferProgress)
	switch {
	case errors.Is(err, sdk.ErrNotFound) && s.opts.StoreVersion == 0:
		if _, perr := pad.Open(dir); perr != nil {
			return withWayOut(fmt.Errorf("the store has no version of %s yet and there is no pad at %s (a pad made there is copied out at the session's end)", name, dir), WayOut{Kind: WayOutInit})
		}
		s.storeAhead = true
		*note = "a new pad: its first version is copied out at the end"
		return nil
	case errors.Is(err, isr.ErrConflict) || errors.Is(err, isr.ErrStoreBehind) || errors.Is(err, sdk.ErrCorrupt) || errors.Is(err, sdk.ErrNotFound):
		return err
	case err != nil:
		return s.offline(err, note)
	}
	s.storeAhead, s.pulled = res.Ahead, res.Manifest
	switch {
	case res.Ahead:
		*note = fmt.Sprintf("the pad is ahead of the store's version %d (changes from a session the store did not see): they are copied out at the end", res.Seq)
	default:
		*note = fmt.Sprintf("version %d: copied in %s of %s", res.Seq, humanBytes(res.Fetched), humanBytes(res.PadBytes))
	}
	s.storeNote = *note
	return nil
}

// renewLease keeps the session's lease from lapsing while the session
// lives, until the check-in (or the end). A renewal that finds another PC
// holding the lease (it lapsed while this PC was cut off, and was taken
// over) is journaled, and the copy-out says so.
func (s *Session) renewLease(ctx context.Context, host string) {
	journal := s.r.journal
	s.stopRenewal = keepRenewed(ctx, s.st, s.cfg.Pad.Path, s.cfg.Store.Name, host, s.leased, s.cfg.Store.LeaseTerm(), s.log, func(err error) {
		s.leaseLost.Store(&err)
		if journal != nil {
			_ = journal.Append(pad.Entry{Stage: StageRun, Event: "info", Message: fmt.Sprintf("the store's lease was taken over: %v", err)})
		}
	})
	s.r.pushAt(true, "stop renewing the store's lease", func(context.Context) error { s.stopRenewal(); return nil })
}

// keepRenewed renews the pad's lease for term every term/3 until stop is
// called; a renewal that finds another holder ends the renewals with
// lost; one that fails is logged and tried again at the next tick.
func keepRenewed(ctx context.Context, st store.Store, dir, name, host string, acquired time.Time, term time.Duration, log hclog.Logger, lost func(error)) (stop func()) {
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(term / 3)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
			}
			err := isr.RenewLease(rctx, st, dir, name, host, acquired, term)
			switch {
			case err == nil || rctx.Err() != nil:
			case errors.Is(err, sdk.ErrBusy):
				log.Warn("the store's lease was taken over by another PC", "error", err)
				lost(err)
				return
			default:
				log.Warn("the store's lease could not be renewed; trying again", "error", err)
			}
		}
	}()
	return sync.OnceFunc(func() { cancel(); <-done })
}

// verifyVersion checks, once the vault is open, that the version copied
// in carries the vault's seal: only a holder of the vault made it, with
// these files, these chunks and this number (a store that forged or
// spliced it is refused). It keeps the seal key for the copy-out. What
// the copy-in replaced was kept until now: a refused version is undone
// once the vault is locked again (the pad holds its own version, as
// before the copy-in), a verified one lets it go.
func (s *Session) verifyVersion(_ context.Context, note *string) error {
	key, err := isr.SealKey(s.plaintext)
	if err != nil {
		return err
	}
	s.sealKey = key
	s.r.pushAt(true, "forget the seal key", func(context.Context) error { clear(s.sealKey); s.sealKey = nil; return nil })
	rec, err := isr.LoadSealRecord(s.plaintext)
	if err != nil {
		return fmt.Errorf("the vault's seal record: %w", err)
	}
	switch m := s.pulled; {
	case m == nil:
		*note = "the pad's own version: sealed at the copy-out"
	case m.Seal == "" && !rec.Sealed:
		*note = fmt.Sprintf("version %d is from before seals; the next one is sealed", m.Seq)
	default:
		if err := m.Verify(key, rec); err != nil {
			s.refusedVersion = true // never copied out again under a seal
			s.undoCopyIn()
			return err
		}
		*note = fmt.Sprintf("version %d carries this vault's seal", m.Seq)
	}
	if s.pulled != nil {
		if err := isr.DiscardKept(s.cfg.Pad.Path); err != nil {
			return err
		}
	}
	if !rec.Sealed {
		return isr.SealRecord{Sealed: true}.Save(s.plaintext)
	}
	return nil
}

// undoCopyIn puts back what the refused copy-in replaced, after the
// vault is locked (a late cleanup: the vault's container is among the
// files it rewrites), and says so.
func (s *Session) undoCopyIn() {
	dir := s.cfg.Pad.Path
	if !isr.HasKept(dir) {
		return
	}
	s.r.pushAt(true, "undo the refused copy-in", func(context.Context) error {
		seq, err := isr.RestoreKept(dir)
		if err != nil {
			return fmt.Errorf("undoing the refused copy-in: %w", err)
		}
		s.r.progress("  the refused copy-in was undone: the pad holds its own version %d again, as before it", seq)
		return nil
	})
}

// offline runs the pad's own copy when the store is out of reach and
// the pad holds a complete version; the next session copies it out. A
// copy-in that was never verified (its session ended before the check)
// is undone first: the pad runs only what it holds on its own word.
func (s *Session) offline(err error, note *string) error {
	if isr.HasKept(s.cfg.Pad.Path) {
		seq, rerr := isr.RestoreKept(s.cfg.Pad.Path)
		if rerr != nil {
			return fmt.Errorf("store %s: %w; and undoing the last copy-in, never verified, failed: %w", s.cfg.Plugins.Store, err, rerr)
		}
		s.r.progress("  the last copy-in was never verified (its session ended before the check): undone, the pad holds its own version %d again", seq)
	}
	state, serr := isr.LoadState(s.cfg.Pad.Path)
	if serr != nil || state.Seq == 0 || state.Incomplete {
		return fmt.Errorf("store %s: %w (and this pad holds no complete version to run offline)", s.cfg.Plugins.Store, err)
	}
	msg := fmt.Sprintf("the store is out of reach (%v): running the pad's own copy, version %d; the next session that reaches the store copies it out", err, state.Seq)
	s.r.progress("  warning: %s", msg)
	s.storeNote = msg
	*note = fmt.Sprintf("offline: pad's own version %d", state.Seq)
	return nil
}

// copyOutWanted: the pad is checked out and changed (the vault was
// opened, or it was ahead of the store already).
func (s *Session) copyOutWanted() bool {
	return s.st != nil && !s.refusedVersion && (s.plaintext != "" || s.storeAhead)
}

// copyOut sends the chunks the store lacks and makes the pad, as the
// session leaves it, the store's newest version. A failed copy-out leaves
// the pad ahead of the store, sealed and whole, and keeps the lease: a
// warning, not a failed session.
func (s *Session) copyOut(ctx context.Context, note *string) error {
	if lost := s.leaseLost.Load(); lost != nil {
		s.r.progress("  warning: while this session ran, another PC took over the store's lease (%v); the pad keeps its changes", *lost)
	}
	out, err := isr.Push(ctx, s.st, s.cfg.Pad.Path, s.cfg.Store.Name, s.sealKey, s.transferProgress)
	if err != nil {
		s.leaseKept = true
		s.keepLease(ctx)
		s.r.progress("  warning: copy-out failed (%v); the pad keeps the lease and its changes, and the next session (or `soulpad store push`) copies them out", err)
		return err
	}
	if out.Seq == 0 {
		*note = "the store has the pad already"
		return nil
	}
	*note = fmt.Sprintf("copied out version %d: sent %s of %s", out.Seq, humanBytes(out.Uploaded), humanBytes(out.PadBytes))
	return nil
}

// keepLease makes the lease of a pad whose copy-out failed hold until
// the pad's next session (or a break), not lapse, so that no other PC
// takes the store's older version meanwhile; when the store cannot be
// reached for that either, the lease lapses as it would have.
func (s *Session) keepLease(ctx context.Context) {
	if s.stopRenewal != nil {
		s.stopRenewal()
	}
	host, _ := os.Hostname()
	if err := isr.RenewLease(ctx, s.st, s.cfg.Pad.Path, s.cfg.Store.Name, host, s.leased, 0); err != nil {
		s.r.progress("  warning: the store's lease could not be kept (%v): it lapses %s after its last renewal", err, s.cfg.Store.LeaseTerm())
	}
}

// checkinWanted: the pad is checked out, and no failed copy-out keeps the
// lease (so that no other PC takes an older version).
func (s *Session) checkinWanted() bool { return s.st != nil && !s.leaseKept }

// checkin gives the lease back. A failed checkin leaves the lease to
// this pad; the pad itself is fine, so the session does not fail for it.
func (s *Session) checkin(ctx context.Context, _ *string) error {
	if s.stopRenewal != nil {
		s.stopRenewal()
	}
	return isr.Checkin(ctx, s.st, s.cfg.Pad.Path, s.cfg.Store.Name)
}

// SealKey opens the pad's vault (o.Command holds the lock meanwhile) for
// the key that seals its versions, and locks it again: a copy-out by
// hand seals its version as a session's does. The caller wipes the key.
func SealKey(ctx context.Context, o VaultOptions) ([]byte, error) {
	v, err := OpenVault(ctx, o)
	if err != nil {
		return nil, err
	}
	key, err := isr.SealKey(v.plaintext)
	if rec, rerr := isr.LoadSealRecord(v.plaintext); err == nil && (rerr != nil || !rec.Sealed) {
		err = isr.SealRecord{Sealed: true}.Save(v.plaintext)
	}
	if cerr := v.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		clear(key)
		return nil, err
	}
	return key, nil
}

// CheckedOut runs fn with the local pad (pad.path, made if missing)
// locked for o.Command and checked out of the store: the store's lease is
// given back after, unless fn says to keep it (a copy-out that failed
// keeps it, so that no other PC takes an older version).
func CheckedOut(ctx context.Context, o VaultOptions, fn func(ctx context.Context, st store.Store) (keep bool, err error)) error {
	v := newVault(o.Config, o.Log, o.Out, o.PluginDirs)
	defer v.Close()
	if err := v.lockDir(o.Command, false); err != nil {
		return err
	}
	host, st, err := OpenStore(ctx, v.cfg, v.log)
	if err != nil {
		return err
	}
	defer host.Close()
	dir, name := v.cfg.Pad.Path, v.cfg.Store.Name
	hostName, _ := os.Hostname()
	term := v.cfg.Store.LeaseTerm()
	lease, err := isr.Checkout(ctx, st, dir, name, hostName, term, false)
	if err != nil {
		return err
	}
	var lost atomic.Pointer[error]
	stop := keepRenewed(ctx, st, dir, name, hostName, lease.Lease.Acquired, term, v.log, func(err error) { lost.Store(&err) })
	keep, err := fn(ctx, st)
	stop()
	if l := lost.Load(); l != nil {
		v.r.progress("warning: another PC took over the store's lease meanwhile (%v)", *l)
	}
	if keep {
		if kerr := isr.RenewLease(ctx, st, dir, name, hostName, lease.Lease.Acquired, 0); kerr != nil {
			v.r.progress("warning: the store's lease could not be kept (%v): it lapses %s after its last renewal", kerr, term)
		}
		return err
	}
	if cerr := isr.Checkin(ctx, st, dir, name); cerr != nil {
		v.r.progress("warning: check-in: %v", cerr)
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
