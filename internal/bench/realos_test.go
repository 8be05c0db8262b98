package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func osCells() []OSCell {
	var out []OSCell
	for _, cr := range []string{"crypt-plain", "crypt-luks"} {
		for rep := 1; rep <= 3; rep++ {
			f := float64(rep)
			c := OSCell{Cell: Cell{MemoryMiB: 1024, Speed: "none", Crypt: cr, Rep: rep, Suspend1: f, Resume: 2 * f},
				Boot: 50 + f, HandBoot: 48, Work: 40 + 2*f, HandWork: 40, WorkCPU: 39, HandWorkCPU: 38}
			c.WorkRatio = ratio(c.Work, c.HandWork)
			out = append(out, c)
		}
	}
	return append(out, OSCell{Cell: Cell{MemoryMiB: 1024, Speed: "none", Crypt: "crypt-luks", Rep: 4, Error: "boom"}, Work: 1000})
}

func TestOSMedianTableAndJSON(t *testing.T) {
	med := OSMedian(osCells())
	if len(med) != 2 {
		t.Fatalf("%d medians, want 2", len(med))
	}
	// crypt-plain: work 42, 44, 46 against 40: the median run's 44 and 1.1×;
	// the failed run is left out.
	if c := med[0]; c.Crypt != "crypt-plain" || c.Work != 44 || c.WorkRatio != 1.1 || c.Boot != 52 || c.Suspend1 != 2 || c.Rep != 3 {
		t.Fatalf("crypt-plain's median %+v", c)
	}
	if c := med[1]; c.Crypt != "crypt-luks" || c.Work != 44 || c.Rep != 3 {
		t.Fatalf("crypt-luks's median %+v", c)
	}
	var buf bytes.Buffer
	OSTable(&buf, "debian.raw", med)
	for _, want := range []string{"debian.raw", "1.10×", "≤ 1.1×", "≤ 1.3×", "44.0 (39.0)", "40.0 (38.0)", "The real OS's walk"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, buf.String())
		}
	}
	path := filepath.Join(t.TempDir(), "realos.json")
	if err := WriteOSJSON(path, "debian.raw", osCells(), med); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Workload string           `json:"workload"`
		Runs     []map[string]any `json:"runs"`
		Medians  []map[string]any `json:"medians"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Workload != Workload || len(got.Runs) != 7 || len(got.Medians) != 2 || got.Medians[0]["work_ratio"] != 1.1 || got.Runs[6]["error"] != "boom" {
		t.Fatalf("realos.json: %s", b)
	}
}

// The console is read as it comes: each wait looks past the last match,
// so a marker printed before the step that waits for it is not taken
// for a new one.
func TestSerialWaitLooksPastTheLastMatch(t *testing.T) {
	r, w := io.Pipe()
	var typed bytes.Buffer
	s := newSerial(r, &typed, func() { r.Close() })
	defer s.close()
	ctx := context.Background()
	go io.WriteString(w, "soulpad-test login: ")
	if _, err := s.wait(ctx, loginRE, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.send("root\n"); err != nil || typed.String() != "root\n" {
		t.Fatalf("typed %q, %v", typed.String(), err)
	}
	go io.WriteString(w, "soulpad-counter 7 clock 1\nroot@soulpad-test:~# ")
	if _, err := s.wait(ctx, shellRE, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// The counter came before the prompt: it is behind the last match.
	if _, err := s.wait(ctx, counterRE, 300*time.Millisecond); err == nil || !strings.Contains(err.Error(), "root@soulpad-test") {
		t.Fatalf("a counter before the last match was found again (or the error does not show the last line): %v", err)
	}
	// The echo of the typed workload holds no marker; its output does.
	go io.WriteString(w, Workload+"\r\nsoulpad-counter 8 clock 2\r\nsoulpad-work-begin\r\n12345\r\nsoulpad-work-failed\r\n")
	if _, err := s.wait(ctx, beginRE, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	m, err := s.wait(ctx, endRE, 5*time.Second)
	if err != nil || m[1] != "failed" {
		t.Fatalf("end marker %q, %v", m, err)
	}
	if regexp.MustCompile(beginRE.String() + "|" + endRE.String()).MatchString(Workload) {
		t.Fatal("the workload's own text holds its markers: its echo would be taken for them")
	}
}
