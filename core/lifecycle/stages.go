// Package lifecycle drives a SoulPad session through its stages — boot,
// detect, unlock, resume, run, suspend, shutdown — and creates pads.
// Each stage is timed with the monotonic clock and journaled on the pad;
// each stage that acquires something registers a cleanup, and the cleanups
// run in reverse order as the shutdown stage, whether the session ended
// well or failed.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/soulpad/soulpad/core/pad"
)

// Stage names, in order.
const (
	StageBoot     = "boot"
	StageDetect   = "detect"
	StageUnlock   = "unlock"
	StageResume   = "resume"
	StageRun      = "run"
	StageSuspend  = "suspend"
	StageShutdown = "shutdown"
)

// Timing is one stage's outcome, for the summary table.
type Timing struct {
	Stage    string
	Duration time.Duration
	Err      error
	Note     string
}

// cleanup undoes what a stage acquired.
type cleanup struct {
	name string
	fn   func(ctx context.Context) error
}

// runner times stages, journals them and keeps the cleanup stack.
type runner struct {
	journal  *pad.Journal
	timings  []Timing
	cleanups []cleanup
	progress func(format string, args ...any)
	// quiet: no stage lines (maintenance commands print their own).
	quiet bool
}

// stage runs fn as the named stage. fn may set a note for the table.
func (r *runner) stage(ctx context.Context, name string, fn func(ctx context.Context, note *string) error) error {
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
	case err != nil:
		r.progress("  %s failed after %s: %v", name, round(d), err)
	case note != "":
		r.progress("  %s (%s)", note, round(d))
	}
	return err
}

// push registers a cleanup; the cleanups run in reverse order.
func (r *runner) push(name string, fn func(ctx context.Context) error) {
	r.cleanups = append(r.cleanups, cleanup{name: name, fn: fn})
}

// shutdown runs the cleanups in reverse order as the shutdown stage. Every
// cleanup runs even if one fails.
func (r *runner) shutdown(ctx context.Context) error {
	return r.stage(ctx, StageShutdown, func(ctx context.Context, note *string) error {
		return r.runCleanups(ctx)
	})
}

// runCleanups runs and forgets the cleanups, newest first; every cleanup
// runs even if one fails.
func (r *runner) runCleanups(ctx context.Context) error {
	var errs []error
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		c := r.cleanups[i]
		_ = r.journal.Append(pad.Entry{Stage: StageShutdown, Event: "info", Message: "cleanup: " + c.name})
		if err := c.fn(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
			_ = r.journal.Append(pad.Entry{Stage: StageShutdown, Event: "info", Message: "cleanup " + c.name + " failed", Error: err.Error()})
		}
	}
	r.cleanups = nil
	return errors.Join(errs...)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// round prints a stage's time in seconds, as the stage table does (not
// Go's "4m18s"), to hundredths.
func round(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
