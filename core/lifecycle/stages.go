// Package lifecycle drives a SoulPad session through its stages —
// checkout, boot, detect, unlock, resume, run, suspend, shutdown, backup,
// copy-out, checkin — and creates pads. The session is one list of named
// stages (Session.stages) run by one mechanism: each stage is timed with
// the monotonic clock and journaled on the pad; each stage that acquires
// something registers its undoing on one reverse stack, which the
// shutdown stage runs whether the session ended well or failed.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/soulpad/soulpad/core/pad"
)

// Stage names, in order.
const (
	StageCheckout = "checkout"
	StageBoot     = "boot"
	StageDetect   = "detect"
	StageUnlock   = "unlock"
	StageVerify   = "verify"
	StageResume   = "resume"
	StageRun      = "run"
	StageSuspend  = "suspend"
	StageShutdown = "shutdown"
	StageBackup   = "backup"
	StageCopyOut  = "copy-out"
	StageCheckin  = "checkin"
)

// Timing is one stage's outcome, for the summary table.
type Timing struct {
	Stage    string
	Duration time.Duration
	Err      error
	Note     string
}

// stage is one entry of a session's list.
type stage struct {
	name string
	run  func(ctx context.Context, note *string) error
	// timeout bounds the stage; 0 means session.stage_timeout_seconds.
	timeout time.Duration
	// when, if set, says whether the stage runs this time (the store's
	// stages only with a store; suspend not after a power-off).
	when func() bool
	// ending stages end the session: they run even after an earlier
	// stage failed, and a cancelled session does not cancel them.
	ending bool
	// unjournaled: from this stage on the pad must not change any more
	// (it is being copied out): it and what follows are timed and
	// printed, not journaled.
	unjournaled bool
	// soft: a failure is shown and journaled but does not fail the
	// session (a copy-out that leaves the pad ahead of the store).
	soft bool
}

// errAgain sends the list back to an earlier stage (a failed suspend of
// a machine that still runs goes back to run).
type errAgain struct {
	stage string
	err   error
}

func (e *errAgain) Error() string { return e.err.Error() }
func (e *errAgain) Unwrap() error { return e.err }

// cleanup undoes what a stage acquired.
type cleanup struct {
	name string
	fn   func(ctx context.Context) error
	// late cleanups run after the ending stages, not at shutdown (the
	// pad's lock while a copy-out reads the pad).
	late bool
}

// runner runs stages, times and journals them and keeps the cleanup
// stack.
type runner struct {
	journal  *pad.Journal
	timings  []Timing
	cleanups []cleanup
	progress func(format string, args ...any)
	// quiet: no stage lines (maintenance commands print their own).
	quiet bool
	// current is the stage now running.
	current atomic.Value // string
	// failed is the first failure of runStages, nil while all went well.
	failed error
	// soft: the stage running is soft (its failure is said on its line,
	// as the session's result will not carry it).
	soft bool
}

// runStages runs list in order with timeout as the default bound. After a
// failure only the ending stages run; the first failure is returned,
// joined with those of the ending stages.
func (r *runner) runStages(ctx context.Context, list []stage, timeout time.Duration) error {
	for i := 0; i < len(list); i++ {
		st := list[i]
		if (r.failed != nil && !st.ending) || (st.when != nil && !st.when()) {
			continue
		}
		sctx := ctx
		if st.ending {
			sctx = context.WithoutCancel(ctx)
		}
		d := st.timeout
		if d == 0 {
			d = timeout
		}
		r.soft = st.soft
		err := r.bounded(sctx, st.name, d, st.unjournaled, st.run)
		r.soft = false
		var again *errAgain
		if errors.As(err, &again) {
			if j := indexOf(list, again.stage); j >= 0 {
				i = j - 1
				continue
			}
		}
		if err != nil && !st.soft {
			r.failed = errors.Join(r.failed, err)
		}
	}
	return r.failed
}

func indexOf(list []stage, name string) int {
	for i, st := range list {
		if st.name == name {
			return i
		}
	}
	return -1
}

// bounded runs fn as the named stage with deadline d.
func (r *runner) bounded(ctx context.Context, name string, d time.Duration, unjournaled bool, fn func(context.Context, *string) error) error {
	r.current.Store(name)
	return r.stage(ctx, name, unjournaled, func(ctx context.Context, note *string) error {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return fn(ctx, note)
	})
}

// stage runs fn as the named stage. fn may set a note for the table.
func (r *runner) stage(ctx context.Context, name string, unjournaled bool, fn func(ctx context.Context, note *string) error) error {
	if unjournaled {
		r.journal = nil
	}
	_ = r.journal.Append(pad.Entry{Stage: name, Event: "start"})
	if !r.quiet {
		r.progress("▸ %s", name)
	}
	start := time.Now()
	var note string
	err := fn(ctx, &note)
	d := time.Since(start)
	e := pad.Entry{Stage: name, Event: "end", DurationMS: ms(d), Message: note}
	if err != nil {
		e.Event, e.Error = "fail", err.Error()
	}
	_ = r.journal.Append(e)
	r.timings = append(r.timings, Timing{Stage: name, Duration: d, Err: err, Note: note})
	switch {
	case r.quiet:
	case err != nil && r.soft:
		r.progress("  %s failed after %s: %v", name, round(d), err)
	case err != nil:
		// The session's error says why, once, at the end.
		r.progress("  %s failed after %s", name, round(d))
	case note != "" && name == StageRun:
		r.progress("  %s, after the machine ran %s", note, round(d)) // the time worked, not waited
	case note != "":
		r.progress("  %s (%s)", note, round(d))
	}
	return err
}

// push registers a cleanup; the cleanups run in reverse order at
// shutdown.
func (r *runner) push(name string, fn func(ctx context.Context) error) { r.pushAt(false, name, fn) }

// pushAt registers a cleanup; late ones run after the ending stages.
func (r *runner) pushAt(late bool, name string, fn func(ctx context.Context) error) {
	r.cleanups = append(r.cleanups, cleanup{name: name, fn: fn, late: late})
}

// shutdown runs the cleanups that are not late, newest first, as the
// shutdown stage's work. Every cleanup runs even if one fails.
func (r *runner) shutdown(ctx context.Context, _ *string) error { return r.runCleanups(ctx, false) }

// runAll runs every cleanup left, late ones included, newest first.
func (r *runner) runAll(ctx context.Context) error { return r.runCleanups(ctx, true) }

func (r *runner) runCleanups(ctx context.Context, late bool) error {
	var errs []error
	var kept []cleanup
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		c := r.cleanups[i]
		if c.late && !late {
			kept = append([]cleanup{c}, kept...)
			continue
		}
		_ = r.journal.Append(pad.Entry{Stage: StageShutdown, Event: "info", Message: "cleanup: " + c.name})
		if err := c.fn(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
			_ = r.journal.Append(pad.Entry{Stage: StageShutdown, Event: "info", Message: "cleanup " + c.name + " failed", Error: err.Error()})
		}
	}
	r.cleanups = kept
	return errors.Join(errs...)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// round prints a stage's time in seconds, as the stage table does (not
// Go's "4m18s"), to hundredths.
func round(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
