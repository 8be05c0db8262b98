package walkup

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/proccpu"
	"github.com/soulpad/soulpad/internal/testcli"
	"github.com/soulpad/soulpad/internal/testguest"
)

// BenchmarkCheckpointSlowdown measures what checkpoints cost a busy
// guest: a 256 MiB guest on crypt-luks (mapped memory) that rewrites 64
// MiB of its RAM over and over, 4 MiB at a time (soulpad.busy), run for a window of
// SOULPAD_BENCH_MINUTES (default 10) with a checkpoint every
// SOULPAD_BENCH_CHECKPOINT_MINUTES (default 1) and, as the baseline in
// the same repetition, with checkpoints off. The work is the guest's own
// count of 4 MiB chunks written in the window. It prints, over SOULPAD_BENCH_REPS
// repetitions (default 3), the median slowdown (1 − rounds with ÷ rounds
// without; goal ≤ 3 %), the checkpoints taken, and CPU-seconds beside
// wall time for both sides.
//
//	go test -run '^$' -bench CheckpointSlowdown -benchtime 1x -timeout 120m ./cmd/soulpad/walkup
func BenchmarkCheckpointSlowdown(b *testing.B) {
	testguest.RequireQEMU(b)
	env, reps, _ := benchSettings(b)
	window := benchMinutes(b, env, "SOULPAD_BENCH_MINUTES", 10)
	every := benchMinutes(b, env, "SOULPAD_BENCH_CHECKPOINT_MINUTES", 1)
	var slow []float64
	for r := 0; r < reps; r++ {
		// Alternated, so a drift of the machine's speed hits both sides.
		var with, without busyRun
		if r%2 == 0 {
			without, with = runBusy(b, window, 0), runBusy(b, window, every)
		} else {
			with, without = runBusy(b, window, every), runBusy(b, window, 0)
		}
		s := 1 - float64(with.rounds)/float64(max(without.rounds, 1))
		slow = append(slow, s)
		b.Logf("rep %d: %d chunks with %d checkpoints (%.0f s wall, %.0f CPU-s), %d chunks without (%.0f s wall, %.0f CPU-s): slowdown %.1f %%",
			r+1, with.rounds, with.checkpoints, with.wall, with.cpu, without.rounds, without.wall, without.cpu, 100*s)
	}
	b.Logf("busy 256 MiB guest, %s window, a checkpoint every %s: median slowdown %.1f %% (goal ≤ 3 %%) over %d reps", window, every, 100*median(slow), len(slow))
}

// benchMinutes reads a duration in minutes from the bench's settings.
func benchMinutes(b *testing.B, env map[string]string, key string, def float64) time.Duration {
	b.Helper()
	m := def
	if s := env[key]; s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v <= 0 {
			b.Fatalf("%s=%q: want minutes", key, s)
		}
		m = v
	}
	return time.Duration(m * float64(time.Minute))
}

// busyRun is one window of a busy guest.
type busyRun struct {
	rounds, checkpoints int
	wall, cpu           float64
}

var busyRE = regexp.MustCompile(`soulpad-busy (\d+)`)

// runBusy runs the busy guest for window with a checkpoint every every
// (0: none) and counts the rounds it did in the window.
func runBusy(b *testing.B, window, every time.Duration) busyRun {
	b.Helper()
	e := testcli.QEMUEnv(b, "console=ttyS0 quiet panic=-1 soulpad.dirty_mib=64 soulpad.busy=1", "crypt-luks")
	b.Setenv("SOULPAD_MACHINE_MEMORY_MIB", "256")
	b.Setenv("SOULPAD_PAD_VAULT_SIZE_MIB", "2048")
	b.Setenv("SOULPAD_SESSION_CHECKPOINT_MINUTES", fmt.Sprint(every.Minutes()))
	if out, errOut, code := e.Run(b, "init"); code != 0 {
		b.Fatalf("init: %s %s", out, errOut)
	}
	cmd, buf, done := e.StartRunArgs(b)
	testcli.WaitFor(b, buf, done, "the machine is running", 2*time.Minute)
	rounds := func() int {
		out, _, _ := e.Run(b, "console", "--dump")
		m := busyRE.FindAllStringSubmatch(out, -1)
		if len(m) == 0 {
			return -1
		}
		n, _ := strconv.Atoi(m[len(m)-1][1])
		return n
	}
	for deadline := time.Now().Add(5 * time.Minute); rounds() < 1; time.Sleep(time.Second) {
		if time.Now().After(deadline) {
			b.Fatalf("the guest never said soulpad-busy:\n%s", buf.String())
		}
	}
	taken := func() int { return strings.Count(buf.String(), "  checkpoint ") }
	cpu0, r0, c0, t0 := proccpu.Tree(cmd.Process.Pid), rounds(), taken(), time.Now()
	time.Sleep(window)
	r1, c1, wall := rounds(), taken(), time.Since(t0).Seconds()
	cpu := proccpu.Tree(cmd.Process.Pid) - cpu0
	checkpoints := c1 - c0
	if out, errOut, code := e.Run(b, "suspend"); code != 0 {
		b.Fatalf("suspend: %s %s", out, errOut)
	}
	if code := testcli.Ended(b, done, buf); code != 0 {
		b.Fatalf("the run: exit %d\n%s", code, buf.String())
	}
	if every > 0 && checkpoints < int(window/every)-1 {
		b.Fatalf("%d checkpoints in %s, one every %s was asked for:\n%s", checkpoints, window, every, buf.String())
	}
	_ = os.RemoveAll(e.Pad)
	return busyRun{rounds: r1 - r0, checkpoints: checkpoints, wall: wall, cpu: cpu}
}
