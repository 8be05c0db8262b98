package bench

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func cells() []Cell {
	var out []Cell
	for _, m := range []int64{256, 1024} {
		for _, sp := range []string{"usb2", "none"} {
			for _, cr := range []string{"crypt-plain", "crypt-luks"} {
				for rep := 1; rep <= 3; rep++ {
					f := float64(m) / 256 * float64(rep)
					if sp == "usb2" {
						f *= 5
					}
					if cr == "crypt-luks" {
						f += 1
					}
					out = append(out, Cell{MemoryMiB: m, Speed: sp, Crypt: cr, Rep: rep, Suspend1: f, Resume: 2 * f, ResumeTick: 2*f + 0.5, Suspend2: f / 10,
						Written1: float64(m) / 2, Written2: 10, Stages: map[string]float64{"boot": 0.2, "detect": 0.01, "unlock": 0.1, "resume": 2 * f, "suspend": f, "shutdown": 0.05}})
				}
			}
		}
	}
	return append(out, Cell{MemoryMiB: 256, Speed: "usb2", Crypt: "crypt-plain", Rep: 4, Error: "boom"})
}

func TestMedianTablesAndFiles(t *testing.T) {
	med := Median(cells())
	if len(med) != 8 {
		t.Fatalf("%d medians, want 8", len(med))
	}
	// 256 MiB, usb2, crypt-plain: reps 1..3 give 5, 10, 15; the failed run is left out.
	if c := med[0]; c.MemoryMiB != 256 || c.Speed != "usb2" || c.Crypt != "crypt-plain" || c.Suspend1 != 10 || c.Resume != 20 || c.Rep != 3 || c.Stages["resume"] != 20 {
		t.Fatalf("first median %+v", c)
	}
	var buf bytes.Buffer
	Table(&buf, med)
	out := buf.String()
	for _, want := range []string{"116–141", "10–30", "Tables 3–4", "57 (host OS autoconfiguration)", "Table 5", "+1.00", "+10"} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
	dir := t.TempDir()
	if err := WriteCSV(filepath.Join(dir, "r.csv"), cells()); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(filepath.Join(dir, "r.csv"))
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != 26 || rows[25][len(rows[25])-1] != "boom" {
		t.Fatalf("csv: %v, %d rows", err, len(rows))
	}
	if err := WriteJSON(filepath.Join(dir, "r.json"), cells(), med); err != nil {
		t.Fatal(err)
	}
	var js struct {
		Runs, Medians []Cell
	}
	b, _ := os.ReadFile(filepath.Join(dir, "r.json"))
	if err := json.Unmarshal(b, &js); err != nil || len(js.Runs) != 25 || len(js.Medians) != 8 {
		t.Fatalf("json: %v %d %d", err, len(js.Runs), len(js.Medians))
	}
	if err := WriteChart(filepath.Join(dir, "c.svg"), med); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "c.svg")); !bytes.Contains(b, []byte("<svg")) || !bytes.Contains(b, []byte("resume to the guest&#39;s tick")) || !bytes.Contains(b, []byte("256 MB, USB 2.0")) {
		t.Fatal("the SVG chart lacks its legend")
	}
	if err := WriteChart(filepath.Join(dir, "c.png"), med); err != nil {
		t.Fatal(err)
	}
	pf, _ := os.Open(filepath.Join(dir, "c.png"))
	defer pf.Close()
	if _, err := png.Decode(pf); err != nil {
		t.Fatalf("the PNG chart: %v", err)
	}
}

func TestEstimateGrowsWithTheWork(t *testing.T) {
	small := Plan{SizesMiB: []int64{256}, Speeds: []Speed{Speeds["none"]}, Crypts: []string{"c"}, Reps: 1}
	big := Plan{SizesMiB: []int64{256, 2048}, Speeds: []Speed{Speeds["usb2"], Speeds["none"]}, Crypts: []string{"a", "b"}, Reps: 3}
	if s, b := small.Estimate(), big.Estimate(); s <= 0 || b < 10*s {
		t.Fatalf("estimates %s and %s", s, b)
	}
}

// What a killed bench left is removed by the next; a live bench's is not.
func TestSweepStale(t *testing.T) {
	dir := t.TempDir()
	dead := filepath.Join(dir, "soulpad-bench-1")
	live := filepath.Join(dir, "soulpad-bench-2")
	other := filepath.Join(dir, "not-a-bench")
	// Planted by someone else in a shared /tmp: open to others, and a
	// symlink to a cell-looking directory elsewhere.
	open := filepath.Join(dir, "soulpad-bench-3")
	target := filepath.Join(t.TempDir(), "victim")
	link := filepath.Join(dir, "soulpad-bench-4")
	for _, d := range []string{dead, live, other, open, target} {
		if err := os.MkdirAll(filepath.Join(d, "mnt"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(open, 0o777)
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(open, pidFile), []byte("4194305"), 0o600)
	os.WriteFile(filepath.Join(target, pidFile), []byte("4194305"), 0o600)
	// A pid that is not running: past the largest pid Linux hands out.
	os.WriteFile(filepath.Join(dead, pidFile), []byte("4194305"), 0o600)
	os.WriteFile(filepath.Join(live, pidFile), []byte(fmt.Sprint(os.Getpid())), 0o600)
	os.WriteFile(filepath.Join(other, pidFile), []byte("4194305"), 0o600)
	swept := SweepStale(dir)
	if len(swept) != 1 || swept[0] != dead {
		t.Fatalf("swept %v, want only %s", swept, dead)
	}
	for _, d := range []string{live, other, open, target, link} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed: %v", d, err)
		}
	}
}

// Each step is set beside what its pad needs for the bytes it moved.
func TestRatiosToThePadsLimit(t *testing.T) {
	c := Cell{MemoryMiB: 256, Speed: "usb2", Crypt: "crypt-luks", PadReadMiBs: 35, PadWriteMiBs: 35,
		Suspend2: 2.0, Written2: 35, // 1 s at the limit: 2.0×
		ResumeTick: 4.0, ColdStart: 2.5, ReadTick: 70, // 1.5 s beyond the cold start, 2 s at the limit: 0.75×
		ReadSession: 150, Touched: 140}
	c.ratios()
	if c.Suspend2Ratio != 2.0 || c.TickRatio != 0.75 || c.ReadsRatio != 150.0/140 {
		t.Fatalf("ratios %.3f %.3f %.3f; want 2, 0.75, 1.071", c.Suspend2Ratio, c.TickRatio, c.ReadsRatio)
	}
	streamed := Cell{Suspend2: 1, Written2: 10, PadWriteMiBs: 100, ReadSession: 300} // no RAM file: no reads ratio
	streamed.ratios()
	if streamed.ReadsRatio != 0 || streamed.TickRatio != 0 || streamed.Suspend2Ratio != 10 {
		t.Fatalf("streamed ratios %+v", streamed)
	}
	var buf bytes.Buffer
	GoalTable(&buf, Median([]Cell{c, streamed}))
	for _, want := range []string{"2.00 over", "0.75 ok", "1.07 ok", "ratio (≤1.5)", "ratio (≤1.1)", "35/35"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("the goal table lacks %q:\n%s", want, buf.String())
		}
	}
}
