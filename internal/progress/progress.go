// Package progress shows the progress of soulpad's long steps: a bar with
// bytes, rate and time left on a terminal (schollz/progressbar), a plain
// line every few seconds otherwise, or JSON events for scripts.
package progress

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/soulpad/soulpad/core/lifecycle"
)

// Modes.
const (
	Auto  = "auto"  // Bar on a terminal, Plain otherwise
	Bar   = "bar"   // a bar redrawn in place
	Plain = "plain" // a line every few seconds and at the end
	JSON  = "json"  // one JSON object per report
	None  = "none"
)

// Modes lists the modes a flag takes.
var Modes = []string{Auto, Bar, Plain, JSON, None}

// Shower renders reports in one mode.
type Shower struct {
	w    io.Writer
	mode string
	// PlainEvery is how often a plain line is printed (the end always is).
	PlainEvery time.Duration

	mu    sync.Mutex
	step  string
	start time.Time
	last  time.Time
	bar   *progressbar.ProgressBar
	now   func() time.Time
}

// New shows progress on w in mode (Auto decides by whether w is a
// terminal).
func New(w io.Writer, mode string) (*Shower, error) {
	switch mode {
	case Auto, "":
		mode = Plain
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			mode = Bar
		}
	case Bar, Plain, JSON, None:
	default:
		return nil, fmt.Errorf("progress %q: want one of auto, bar, plain, json, none", mode)
	}
	return &Shower{w: w, mode: mode, PlainEvery: 2 * time.Second, now: time.Now}, nil
}

// Mode is the mode in use.
func (s *Shower) Mode() string { return s.mode }

// Report is a lifecycle.ProgressFunc.
func (s *Shower) Report(p lifecycle.Progress) {
	if s == nil || s.mode == None {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if p.Step != s.step {
		s.finishBar()
		s.step, s.start, s.last = p.Step, now, time.Time{}
	}
	elapsed := now.Sub(s.start).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(p.Done) / elapsed
	}
	eta := -1.0
	if rate > 0 && p.Total >= p.Done && p.Total > 0 && !p.Failed {
		eta = float64(p.Total-p.Done) / rate
	}
	switch s.mode {
	case JSON:
		if !p.Final && now.Sub(s.last) < 250*time.Millisecond {
			return
		}
		s.last = now
		ev := map[string]any{"event": "progress", "step": p.Step, "done_bytes": p.Done, "total_bytes": p.Total,
			"counts": p.Counts(), "bytes_per_second": int64(rate), "final": p.Final, "failed": p.Failed}
		if eta >= 0 {
			ev["eta_seconds"] = round1(eta)
		} else {
			ev["eta_seconds"] = nil
		}
		b, _ := json.Marshal(ev)
		fmt.Fprintf(s.w, "%s\n", b)
	case Plain:
		if !p.Final && (s.last.IsZero() && now.Sub(s.start) < s.PlainEvery || !s.last.IsZero() && now.Sub(s.last) < s.PlainEvery) {
			return
		}
		s.last = now
		fmt.Fprintln(s.w, Line(p, rate, eta))
	case Bar:
		if s.bar == nil {
			total := int64(p.Total)
			if total == 0 {
				total = -1 // unknown: a spinner
			}
			s.bar = progressbar.NewOptions64(total,
				progressbar.OptionSetWriter(s.w),
				progressbar.OptionSetDescription(barLabel(p)),
				progressbar.OptionShowBytes(true),
				progressbar.OptionUseIECUnits(true),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionSetWidth(30),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionShowElapsedTimeOnFinish(),
				progressbar.OptionOnCompletion(func() { fmt.Fprintln(s.w) }),
			)
		}
		_ = s.bar.Set64(int64(p.Done))
		if p.Final && p.Failed {
			// Where it stopped, not filled to 100%.
			_ = s.bar.Exit()
			fmt.Fprintln(s.w, "  "+p.Step+": failed")
			s.bar, s.step = nil, ""
		} else if p.Final {
			s.finishBar()
			s.step = ""
		}
	}
}

func (s *Shower) finishBar() {
	if s.bar != nil {
		_ = s.bar.Finish()
		s.bar = nil
	}
}

// barLabel is the bar's description: the step and what its bytes are.
func barLabel(p lifecycle.Progress) string {
	if c := p.Counts(); c != "" {
		return "  " + p.Step + " (" + c + ")"
	}
	return "  " + p.Step
}

// Line is a plain progress line: "  suspend: 256.0 MiB of 1.0 GiB guest
// RAM saved (25%), 120.5 MiB/s, about 6 s left".
func Line(p lifecycle.Progress, rate, eta float64) string {
	l := "  " + p.Step + ": " + lifecycle.HumanBytes(int64(p.Done))
	if p.Total > 0 {
		l += " of " + lifecycle.HumanBytes(int64(p.Total))
	}
	if c := p.Counts(); c != "" {
		l += " " + c
	}
	if p.Total > 0 {
		l += fmt.Sprintf(" (%d%%)", p.Done*100/p.Total)
	}
	if rate > 0 {
		l += fmt.Sprintf(", %s/s", lifecycle.HumanBytes(int64(rate)))
	}
	switch {
	case p.Final && p.Failed:
		l += ", failed"
	case p.Final:
		l += ", done"
	case eta >= 0:
		l += fmt.Sprintf(", about %.0f s left", eta)
	}
	return l
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }
