package walkup_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/soulpad/soulpad/internal/testcli"
)

// soulpad bench --quick, as a user runs it: the tables with the paper's
// numbers, the files, and a throttled pad that is really as slow as USB
// 2.0 (what a suspend writes goes through the 35 MiB/s cap).
func TestBenchQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two walk-ups")
	}
	if os.Geteuid() != 0 {
		t.Skip("soulpad bench needs root")
	}
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", "crypt-plain")
	out := filepath.Join(t.TempDir(), "results")
	stdout, errOut, code := e.Run(t, "bench", "--quick", "--crypts", "crypt-plain", "--out", out, "--dir", t.TempDir())
	if code != 0 {
		t.Fatalf("bench: exit %d\n%s%s", code, stdout, errOut)
	}
	t.Logf("soulpad bench --quick:\n%s", stdout)
	for _, want := range []string{"2 runs", "[2/2]", "Table 2", "116–141", "Tables 3–4", "57 (host OS autoconfiguration)", "wrote ",
		"Against the pad's physical limit", "ratio (≤1.5)", "to the pad's limit: 2nd suspend"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("bench output lacks %q:\n%s", want, stdout)
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Medians []struct {
			Speed    string  `json:"pad_speed"`
			Resume   float64 `json:"resume_to_running_s"`
			Suspend  float64 `json:"suspend_s"`
			Written1 float64 `json:"suspend_mib_to_pad"`
			CPU      float64 `json:"suspend_cpu_s"`
			TickCPU  float64 `json:"resume_to_tick_cpu_s"`
			ReadMiBs float64 `json:"pad_read_mib_s"`
			WriteMiB float64 `json:"pad_write_mib_s"`
			Touched  float64 `json:"memory_touched_mib"`
			Reads    float64 `json:"session_mib_from_pad"`
			ToLimit  float64 `json:"second_suspend_to_limit"`
		} `json:"medians"`
	}
	if err := json.Unmarshal(b, &res); err != nil || len(res.Medians) != 2 {
		t.Fatalf("results.json: %v\n%s", err, b)
	}
	for _, m := range res.Medians {
		// The guest filled 128 MiB; with mapped memory (crypt-plain on
		// XFS) some of it reaches the pad before the suspend, as the
		// kernel writes the RAM file back, so only a floor is sure.
		if m.Written1 < 16 {
			t.Errorf("%s: the suspend wrote %.0f MiB to the pad", m.Speed, m.Written1)
		}
		// The suspend and the resume ran QEMU and the plugins: their CPU
		// time is counted.
		if m.CPU <= 0 || m.TickCPU <= 0 || m.CPU > 10*m.Suspend+5 {
			t.Errorf("%s: the suspend used %.2f CPU-s in %.2f s, the resume %.2f CPU-s", m.Speed, m.CPU, m.Suspend, m.TickCPU)
		}
		// The pad as measured is the pad as throttled; the resumed
		// session read the RAM the guest touched (mapped: crypt-plain
		// on XFS), and the ratios to the pad's limit are there.
		if slow := m.ReadMiBs < 45 && m.WriteMiB < 45; m.ReadMiBs <= 0 || (m.Speed == "usb2") != slow || m.Speed == "usb2" && (m.ReadMiBs < 25 || m.WriteMiB < 25) {
			t.Errorf("%s pad measured at %.0f MiB/s read, %.0f written", m.Speed, m.ReadMiBs, m.WriteMiB)
		}
		if m.Touched < 100 || m.Reads <= 0 || m.ToLimit <= 0 {
			t.Errorf("%s: RAM touched %.0f MiB, read in the session %.0f MiB, 2nd suspend to the limit %.2f×", m.Speed, m.Touched, m.Reads, m.ToLimit)
		}
		// What the suspend wrote went through the cap (it is synced
		// before the point is sealed): no less time than that.
		if floor := 0.8 * m.Written1 / 35; m.Speed == "usb2" && m.Suspend < floor {
			t.Errorf("usb2: the suspend wrote %.0f MiB in %.2f s: faster than 35 MiB/s, the pad is not throttled", m.Written1, m.Suspend)
		}
	}
	for _, f := range []string{"results.csv", "latency.svg", "latency.png"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}
