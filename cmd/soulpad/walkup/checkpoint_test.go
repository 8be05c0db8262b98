package walkup_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/internal/testcli"
)

// TestCheckpointsBoundWhatACrashLoses: with checkpoints every 9 s, the
// machine runs on across them (its counter never stops for long), status
// says what a crash would lose, only keep_checkpoints of them stay, and a
// power cut (kill -9 of soulpad, its plugins and QEMU at once) long after
// the last one resumes that checkpoint, not the point the session began
// from, and keeps the disk's later state as a disk point.
func TestCheckpointsBoundWhatACrashLoses(t *testing.T) {
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", "crypt-luks")
	t.Setenv("SOULPAD_SESSION_CHECKPOINT_MINUTES", "0.15")
	t.Setenv("SOULPAD_SESSION_KEEP_CHECKPOINTS", "2")
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	cmd, buf, done := e.StartRunArgs(t)
	testcli.WaitFor(t, buf, done, "the machine is running", 90*time.Second)
	status, _, _ := e.Run(t, "status")
	if !strings.Contains(status, "crash now  loses") || !strings.Contains(status, "next checkpoint at") {
		t.Fatalf("status while running does not say what a crash loses:\n%s", status)
	}
	// Three checkpoints; the counter at the moment the third was sealed.
	floor := 0
	for n := 1; n <= 3; n++ {
		deadline := time.Now().Add(2 * time.Minute)
		for strings.Count(buf.String(), "  checkpoint ") < n {
			if time.Now().After(deadline) {
				t.Fatalf("no checkpoint %d in 2 minutes:\n%s", n, buf.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		// Printed before the line was seen: at most what the checkpoint
		// holds (the guest prints once a second).
		vs := e.Counters(t)
		floor = vs[len(vs)-1] - 1
	}
	t.Logf("three checkpoints; the third holds a counter ≥ %d:\n%s", floor, grepLines(buf.String(), "checkpoint "))
	status, _, _ = e.Run(t, "status")
	if !strings.Contains(status, "next checkpoint at") || !strings.Contains(status, "checkpoint") {
		t.Fatalf("status after checkpoints:\n%s", status)
	}
	// The machine runs on: a few more ticks, then the power cut (before
	// the next checkpoint, 9 s after the last).
	cut := 0
	for deadline := time.Now().Add(time.Minute); cut < floor+4; time.Sleep(200 * time.Millisecond) {
		if vs := e.Counters(t); len(vs) > 0 {
			cut = vs[len(vs)-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("the counter did not go past %d after the checkpoint: the machine did not run on", floor+4)
		}
	}
	kill := []int{cmd.Process.Pid}
	for pid := range testcli.Descendants(cmd.Process.Pid) {
		kill = append(kill, pid)
	}
	for _, pid := range kill {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	testcli.Ended(t, done, buf)
	if strings.Count(buf.String(), "  checkpoint ") > 3 {
		t.Logf("a fourth checkpoint came before the cut: the resumed counter may be higher")
	}

	_, buf, done = e.StartRunArgs(t)
	testcli.WaitFor(t, buf, done, "the machine is running", 90*time.Second)
	out := buf.String()
	if !strings.Contains(out, "resumes from its checkpoint") || !strings.Contains(out, "its disk is kept as point") {
		t.Fatalf("after the power cut the run does not say it resumes the checkpoint and keeps the disk:\n%s", out)
	}
	got := e.WaitCounter(t, 1)[0]
	if got < floor || (got > cut && strings.Count(buf.String(), "  checkpoint ") <= 3) {
		t.Fatalf("after the power cut the counter went on from %d: the last checkpoint held ≥ %d, the cut came at %d", got, floor, cut)
	}
	t.Logf("power cut at counter %d; resumed from the checkpoint at %d (≥ %d): lost %d s of work, not the session", cut, got, floor, cut-got)
	// The resumed checkpoint's RAM is checked through the copy the guest
	// runs on, so the pad's bytes are read once: of the point's own file,
	// only chunks the guest changed before the check reached them.
	if read := checkedPointBytes(t, e.Pad, 2*time.Minute); read > 32<<20 {
		t.Errorf("the check read %d MiB of the point's own 128 MiB RAM file: not through the running copy", read>>20)
	} else {
		t.Logf("the check read %d KiB of the point's own RAM file", read>>10)
	}
	if o, eo, code := e.Run(t, "suspend"); code != 0 {
		t.Fatalf("suspend: %s %s", o, eo)
	}
	if code := testcli.Ended(t, done, buf); code != 0 {
		t.Fatalf("the recovery run: exit %d\n%s", code, buf.String())
	}
	pj, _, _ := e.Run(t, "points", "--json")
	var pts []testcli.PointJSON
	if err := json.Unmarshal([]byte(pj), &pts); err != nil {
		t.Fatalf("points --json: %v\n%s", err, pj)
	}
	kinds := map[string]int{}
	for _, p := range pts {
		kinds[p.Kind]++
		if want := map[bool]string{true: "", false: "mapped"}[p.Kind == "disk"]; p.Memory != want {
			t.Errorf("%s point %s says its memory is %q; want %q (crypt-luks maps guest RAM)", p.Kind, p.ID, p.Memory, want)
		}
	}
	if kinds["checkpoint"] < 1 || kinds["checkpoint"] > 2 || kinds["disk"] != 1 || kinds["memory"] < 1 {
		t.Fatalf("points after the cut and a suspend (keep_checkpoints = 2): %v\n%s", kinds, pj)
	}
}

// checkedPointBytes waits for the journal to say a resumed point's mapped
// memory was checked, and returns how many bytes of the point's own files
// the check read.
func checkedPointBytes(t *testing.T, padDir string, wait time.Duration) int64 {
	t.Helper()
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		es, _ := pad.LastSession(filepath.Join(padDir, "journal"))
		for _, e := range es {
			if n, ok := e.Fields["point_bytes"].(float64); ok && strings.Contains(e.Message, "mapped memory checked") {
				return int64(n)
			}
		}
	}
	t.Fatalf("the journal does not say the resumed point's memory was checked in %s", wait)
	return 0
}

// grepLines is the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestStatusSaysWhyNoCheckpoints: with crypt-gocryptfs the guest's memory
// is streamed (no file to clone), so no checkpoints are taken, and status
// says so while the machine runs.
func TestStatusSaysWhyNoCheckpoints(t *testing.T) {
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", "crypt-gocryptfs")
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	_, buf, done := e.StartRun(t)
	status, _, _ := e.Run(t, "status")
	if !strings.Contains(status, "crash now  loses") || !strings.Contains(status, "no checkpoints: the guest's memory is streamed") {
		t.Fatalf("status does not say why there are no checkpoints:\n%s", status)
	}
	if o, eo, code := e.Run(t, "suspend"); code != 0 {
		t.Fatalf("suspend: %s %s", o, eo)
	}
	testcli.Wait(t, done, buf)
	// The point says how it holds guest RAM (what the bench reads).
	if m := testcli.LatestMemory(e.Points(t)); m != "streamed" {
		t.Errorf("a point on crypt-gocryptfs says its memory is %q; want streamed", m)
	}
}

// TestAskedSuspendFinishesAfterSoulpadDies: soulpad is killed (kill -9)
// right after a suspend was asked for. The VMM plugin finishes writing
// the state, the crypt plugin keeps the vault open until it has, and the
// next run seals that point ("recovered the suspend that was cut short")
// and resumes it: the work up to the request is kept. With the guest's
// RAM mapped (crypt-luks) and streamed (crypt-gocryptfs).
func TestAskedSuspendFinishesAfterSoulpadDies(t *testing.T) {
	for _, c := range []string{"crypt-luks", "crypt-gocryptfs"} {
		t.Run(c, func(t *testing.T) {
			e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", c)
			if out, errOut, code := e.Run(t, "init"); code != 0 {
				t.Fatalf("init: %s %s", out, errOut)
			}
			cmd, buf, done := e.StartRunArgs(t)
			testcli.WaitFor(t, buf, done, "the machine is running", 90*time.Second)
			vs := e.WaitCounter(t, 4)
			asked := vs[len(vs)-1]
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			testcli.WaitFor(t, buf, done, "▸ suspend", time.Minute)
			kids := testcli.Descendants(cmd.Process.Pid)
			_ = cmd.Process.Kill()
			testcli.Ended(t, done, buf)
			if sealedRE.MatchString(buf.String()) {
				t.Skipf("the suspend was sealed before the kill landed:\n%s", buf.String())
			}
			// The plugins finish and end on their own.
			for pid, name := range kids {
				deadline := time.Now().Add(90 * time.Second)
				for syscall.Kill(pid, 0) == nil {
					if time.Now().After(deadline) {
						t.Fatalf("%s (pid %d) did not end within 90 s of soulpad's death", name, pid)
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
			_, buf, done = e.StartRunArgs(t)
			testcli.WaitFor(t, buf, done, "the machine is running", 90*time.Second)
			out := buf.String()
			if !strings.Contains(out, "recovered the suspend that was cut short") || !strings.Contains(out, "nothing was lost") {
				t.Fatalf("the next run did not seal and resume the suspend soulpad was killed in:\n%s", out)
			}
			got := e.WaitCounter(t, 1)[0]
			if got < asked {
				t.Fatalf("the counter went on from %d; the suspend was asked for at %d", got, asked)
			}
			t.Logf("suspend asked at counter %d, soulpad killed in it; the next run recovered it and went on from %d", asked, got)
			if o, eo, code := e.Run(t, "suspend"); code != 0 {
				t.Fatalf("suspend: %s %s", o, eo)
			}
			testcli.Wait(t, done, buf)
		})
	}
}
