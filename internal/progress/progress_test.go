package progress

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/core/lifecycle"
)

// fake is a clock the test moves.
type fake struct{ t time.Time }

func (f *fake) now() time.Time { return f.t }

func reports(t *testing.T, mode string) string {
	t.Helper()
	var buf bytes.Buffer
	s, err := New(&buf, mode)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fake{t: time.Unix(1000, 0)}
	s.now = clock.now
	const total = 100 << 20
	for i := 0; i <= 10; i++ {
		s.Report(lifecycle.Progress{Step: "suspend", Done: uint64(i) * 8 << 20, Total: total})
		clock.t = clock.t.Add(500 * time.Millisecond) // 16 MiB/s
	}
	s.Report(lifecycle.Progress{Step: "suspend", Done: total, Total: total, Final: true})
	return buf.String()
}

func TestPlainLinesAreFewAndSayRateAndTimeLeft(t *testing.T) {
	out := reports(t, Plain)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	// 5.5 s of reports, a line every 2 s, and the final one.
	if len(lines) < 3 || len(lines) > 4 {
		t.Fatalf("%d lines, want 3 or 4:\n%s", len(lines), out)
	}
	if !strings.Contains(lines[0], "suspend: 32.0 MiB of 100.0 MiB guest RAM saved (32%), 16.0 MiB/s, about 4 s left") {
		t.Errorf("first line: %q", lines[0])
	}
	if !strings.HasSuffix(lines[len(lines)-1], "100.0 MiB of 100.0 MiB guest RAM saved (100%), 18.2 MiB/s, done") {
		t.Errorf("last line: %q", lines[len(lines)-1])
	}
}

func TestJSONEventsDecode(t *testing.T) {
	out := reports(t, JSON)
	var last map[string]any
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if err := json.Unmarshal([]byte(l), &last); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		if last["event"] != "progress" || last["step"] != "suspend" {
			t.Fatalf("event %v", last)
		}
		n++
	}
	if n != 12 || last["final"] != true || last["counts"] != "guest RAM saved" || last["done_bytes"].(float64) != 100<<20 || last["eta_seconds"].(float64) != 0 {
		t.Fatalf("%d events, last %v", n, last)
	}
}

func TestBarDrawsAndEnds(t *testing.T) {
	out := reports(t, Bar)
	if !strings.Contains(out, "suspend (guest RAM saved)") || !strings.Contains(out, "100%") || !strings.HasSuffix(out, "\n") {
		t.Fatalf("bar output %q", out)
	}
}

func TestModes(t *testing.T) {
	if _, err := New(nil, "fancy"); err == nil {
		t.Fatal("an unknown mode was taken")
	}
	var buf bytes.Buffer
	s, _ := New(&buf, Auto) // a buffer is not a terminal
	if s.Mode() != Plain {
		t.Fatalf("auto on a non-terminal is %s, want plain", s.Mode())
	}
	s, _ = New(&buf, None)
	s.Report(lifecycle.Progress{Step: "x", Done: 1, Total: 1, Final: true})
	if buf.Len() != 0 {
		t.Fatalf("none printed %q", buf.String())
	}
}

// Every step soulpad reports names what its bytes are, and a report that
// says it itself wins.
func TestEveryStepSaysWhatItCounts(t *testing.T) {
	for _, step := range []string{"suspend", "resume", "copy-in", "copy-out", "writing the container end to end", "importing the disk", "copying the installer", "backup", "restore"} {
		l := Line(lifecycle.Progress{Step: step, Done: 1 << 20, Total: 2 << 20}, 0, -1)
		if c := (lifecycle.Progress{Step: step}).Counts(); c == "" || !strings.Contains(l, "of 2.0 MiB "+c+" (50%)") {
			t.Errorf("step %q: %q", step, l)
		}
	}
	if l := Line(lifecycle.Progress{Step: "suspend", Done: 1 << 20, What: "written"}, 0, -1); l != "  suspend: 1.0 MiB written" {
		t.Errorf("a report's own What: %q", l)
	}
}

// A step that failed ends where it stopped and says so, in every mode:
// never "done", never a full bar.
func TestAFailedStepIsNotShownAsDone(t *testing.T) {
	for _, mode := range []string{Plain, JSON, Bar} {
		var buf bytes.Buffer
		s, err := New(&buf, mode)
		if err != nil {
			t.Fatal(err)
		}
		s.Report(lifecycle.Progress{Step: "suspend", Done: 10 << 20, Total: 128 << 20})
		s.Report(lifecycle.Progress{Step: "suspend", Done: 40 << 20, Total: 128 << 20, Final: true, Failed: true})
		out := buf.String()
		if mode == JSON {
			if !strings.Contains(out, `"done_bytes":41943040,"eta_seconds":null,"event":"progress","failed":true,"final":true`) {
				t.Errorf("json: a failed step's last event: %q", out)
			}
			continue
		}
		if strings.Contains(out, "done") || strings.Contains(out, "100%") || strings.Contains(out, "128.0 MiB of 128.0 MiB") ||
			!strings.Contains(out, "failed") {
			t.Errorf("%s: a failed step shows %q", mode, out)
		}
	}
}
