package lifecycle

import (
	"context"
	"io/fs"
	"path/filepath"
	"syscall"
	"time"

	"github.com/soulpad/soulpad/sdk/vmm"
)

// Progress is how far a long step is: Done of Total bytes (Total 0 when
// unknown). Step names it: "suspend", "copy-in", "copy-out", "backup",
// "restore", or a backup plugin's own phase.
type Progress struct {
	Step        string
	Done, Total uint64
	// Final is set on a step's last report.
	Final bool
	// What says what the bytes are ("guest RAM saved", "sent to the
	// store"); empty: the step's usual (Progress.Counts).
	What string
	// Failed marks the final report of a step that failed: it ends where
	// the step stopped, not as done.
	Failed bool
}

// stepCounts says what each step's bytes are.
var stepCounts = map[string]string{
	"suspend":                          "guest RAM saved",
	"resume":                           "machine state loaded",
	"copy-in":                          "fetched from the store",
	"copy-out":                         "sent to the store",
	"writing the container end to end": "of the vault written",
	"importing the disk":               "disk data imported",
	"copying the installer":            "copied into the vault",
	"backup":                           "backed up",
	"restore":                          "restored",
	"dsmc restore":                     "restored",
}

// counted is " " and what step's bytes are, or "".
func counted(step string) string {
	if c := (Progress{Step: step}).Counts(); c != "" {
		return " " + c
	}
	return ""
}

// Counts says what the report's bytes are: What, or the step's usual
// ("" for a step that names none).
func (p Progress) Counts() string {
	if p.What != "" {
		return p.What
	}
	return stepCounts[p.Step]
}

// ProgressFunc receives progress reports; they come from one goroutine at
// a time, a few times a second at most.
type ProgressFunc func(Progress)

// every runs f every interval until the returned stop is called (or ctx
// ends); stop returns once f no longer runs.
func every(ctx context.Context, interval time.Duration, f func()) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				f()
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// watchDir reports the bytes in dir every interval while work runs, as
// step of total, until the returned stop is called; it sends the final
// report: the whole total when the work succeeded, else where it stopped,
// marked failed (a failed step is never shown as done).
func watchDir(ctx context.Context, dir, step string, total uint64, interval time.Duration, report ProgressFunc) (stop func(succeeded bool)) {
	if report == nil {
		return func(bool) {}
	}
	report(Progress{Step: step, Total: total}) // the step starts now
	base := dirBytes(dir)
	written := func() uint64 {
		n := dirBytes(dir)
		return min(n-min(base, n), total)
	}
	end := every(ctx, interval, func() { report(Progress{Step: step, Done: written(), Total: total}) })
	return func(succeeded bool) {
		end()
		if succeeded {
			report(Progress{Step: step, Done: total, Total: total, Final: true})
			return
		}
		report(Progress{Step: step, Done: written(), Total: total, Final: true, Failed: true})
	}
}

// watchVMM reports the VMM plugin's own progress of step (plugins with
// vmm.CapProgress) until the returned stop is called. stop(true), after
// the step succeeded, asks once more and ends the report with the step's
// whole size, so that a step shorter than a poll is reported too.
func (s *Session) watchVMM(ctx context.Context, step string) (stop func(succeeded bool)) {
	pr, ok := s.vmm.VMM().(vmm.ProgressReporter)
	if s.opts.Progress == nil || !ok || !s.vmm.Info.Has(vmm.CapProgress) {
		return func(bool) {}
	}
	var last vmm.ProgressResponse
	poll := func() bool {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		p, err := pr.Progress(qctx, vmm.ProgressRequest{Name: s.spec.Name})
		cancel()
		if err != nil || p.Step != step || p.Total == 0 {
			return false
		}
		last = p
		return true
	}
	end := every(ctx, 250*time.Millisecond, func() {
		if poll() {
			s.opts.Progress(Progress{Step: step, Done: min(last.Done, last.Total), Total: last.Total})
		}
	})
	return func(succeeded bool) {
		end()
		switch {
		case succeeded && (poll() || last.Total > 0):
			s.opts.Progress(Progress{Step: step, Done: last.Total, Total: last.Total, Final: true})
		case last.Total > 0: // it failed part way: end the bar where it stood
			s.opts.Progress(Progress{Step: step, Done: min(last.Done, last.Total), Total: last.Total, Final: true, Failed: true})
		}
	}
}

// dirBytes is the bytes the files under dir (or the file dir) hold on
// disk: their blocks, so that a sparse file counts what was written.
func dirBytes(dir string) uint64 {
	var n uint64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += uint64(st.Blocks) * 512
			} else {
				n += uint64(fi.Size())
			}
		}
		return nil
	})
	return n
}

// tidyNoteAfter is how long tidying after a suspend (pruning, merging
// disk overlays) runs before the person is told what soulpad is doing.
const tidyNoteAfter = 2 * time.Second

// slowNote says what (a progress line) once the step it guards has run
// for after, and how long it took when it ends; a quick step says
// nothing. The returned func ends the step.
func (r *runner) slowNote(after time.Duration, what string) (done func()) {
	start := time.Now()
	said := make(chan struct{})
	t := time.AfterFunc(after, func() {
		r.progress("%s…", what)
		close(said)
	})
	return func() {
		if !t.Stop() {
			<-said
			r.progress("  …done in %.1f s", time.Since(start).Seconds())
		}
	}
}
