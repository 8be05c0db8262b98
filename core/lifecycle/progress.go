package lifecycle

import (
	"context"
	"io/fs"
	"path/filepath"
	"time"
)

// Progress is how far a long step is: Done of Total bytes (Total 0 when
// unknown). Step names it: "suspend", "copy-in", "copy-out", "backup",
// "restore", or a backup plugin's own phase.
type Progress struct {
	Step        string
	Done, Total uint64
	// Final is set on a step's last report.
	Final bool
}

// ProgressFunc receives progress reports; they come from one goroutine at
// a time, a few times a second at most.
type ProgressFunc func(Progress)

// watchDir reports the bytes in dir every interval while work runs, as
// step of total, until the returned stop is called (which sends the final
// report).
func watchDir(ctx context.Context, dir, step string, total uint64, interval time.Duration, report ProgressFunc) (stop func()) {
	if report == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	report(Progress{Step: step, Total: total}) // the step starts now
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
				report(Progress{Step: step, Done: min(dirBytes(dir), total), Total: total})
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		report(Progress{Step: step, Done: total, Total: total, Final: true})
	}
}

// dirBytes is the bytes the files under dir hold (their blocks: a sparse
// or cloned file counts what was written).
func dirBytes(dir string) uint64 {
	var n uint64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			n += uint64(fi.Size())
		}
		return nil
	})
	return n
}
