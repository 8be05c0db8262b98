package walkup

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/proccpu"
	"github.com/soulpad/soulpad/internal/testcli"
	"github.com/soulpad/soulpad/internal/testguest"
)

// checkpointRun is what one run of BenchmarkCheckpointPause measured.
type checkpointRun struct {
	pauses  []float64 // the guest's pause per checkpoint (stop → cont), s
	hashed  []int64   // bytes of the RAM clone read to seal each (from memory)
	suspend float64   // the suspend's stage time (the guest stopped throughout), s
	// dirtied and padWrites: between one checkpoint and the next, the
	// bytes QEMU dirtied (its RAM file's pages and its disks' writes,
	// /proc/<pid>/io write_bytes) and the bytes crypt-luks wrote to the
	// pad (its container file), for checkpoints 2 and 3.
	dirtied, padWrites []int64
	cpu                float64 // CPU-seconds of soulpad, its plugins and QEMU over the run
	wall               float64 // the run's wall time, s
}

// BenchmarkCheckpointPause measures checkpoints as a session takes them:
// a 256 MiB and a 1 GiB guest on crypt-luks with mapped memory, three
// checkpoints asked for with `soulpad checkpoint` (after the guest filled
// half its RAM; after it rewrote a quarter, at most 64 MiB; idle), then a suspend. It
// prints, per size, the median over SOULPAD_BENCH_REPS runs (default 3)
// of the guest's pause per checkpoint beside the suspend's (the baseline
// in the same run: the time the guest is stopped by a suspend), their
// ratio, the bytes read to seal the checkpoint after the rewrite against
// what the guest rewrote, and CPU-seconds beside wall time.
//
//	go test -run '^$' -bench CheckpointPause -benchtime 1x -timeout 60m ./cmd/soulpad/walkup
func BenchmarkCheckpointPause(b *testing.B) {
	testguest.RequireQEMU(b)
	_, reps, sizes := benchSettings(b, 256, 1024)
	for _, mib := range sizes {
		var runs []checkpointRun
		for r := 0; r < reps; r++ {
			runs = append(runs, runCheckpoints(b, mib))
		}
		med := func(f func(checkpointRun) float64) float64 {
			var v []float64
			for _, r := range runs {
				v = append(v, f(r))
			}
			sort.Float64s(v)
			return v[len(v)/2]
		}
		maxPause := med(func(r checkpointRun) float64 { return maxOf(r.pauses) })
		medPause := med(func(r checkpointRun) float64 { return median(r.pauses) })
		susp := med(func(r checkpointRun) float64 { return r.suspend })
		ratio := func(i int) func(r checkpointRun) float64 {
			return func(r checkpointRun) float64 { return float64(r.padWrites[i]) / float64(max(r.dirtied[i], 1)) }
		}
		b.Logf("%4d MiB: checkpoint pause median %.3f s, worst %.3f s (goal ≤ 0.3 s); suspend %.2f s (guest stopped): pause/suspend %.3f×; "+
			"pad writes / bytes dirtied: %.2f× after the rewrite of %d MiB, %.2f× idle (goal ≤ 1.2×); run %.0f s wall, %.0f CPU-s; %d runs",
			mib, medPause, maxPause, susp, medPause/susp, med(ratio(0)), rewriteMiB(mib), med(ratio(1)),
			med(func(r checkpointRun) float64 { return r.wall }), med(func(r checkpointRun) float64 { return r.cpu }), len(runs))
		for i, r := range runs {
			b.Logf("      run %d: pauses %s s; dirtied %s MiB, pad writes %s MiB (checkpoints 2, 3); read to seal %s MiB; suspend %.2f s", i+1,
				fmtFloats(r.pauses), mibs(r.dirtied), mibs(r.padWrites), mibs(r.hashed), r.suspend)
		}
	}
}

// rewriteMiB is how much of a mib MiB guest's RAM it rewrites between
// the first two checkpoints: a quarter, at most 64 MiB (the guest writes
// under TCG at about 1 MiB/s).
func rewriteMiB(mib uint64) uint64 { return min(mib/4, 64) }

// runCheckpoints runs one session of a mib MiB guest through three
// checkpoints asked for with `soulpad checkpoint` (automatic ones off):
// once the guest has filled half its RAM, after it rewrote rewriteMiB, and
// idle; then a suspend.
func runCheckpoints(b *testing.B, mib uint64) checkpointRun {
	b.Helper()
	start := time.Now()
	e := testcli.QEMUEnv(b, fmt.Sprintf("console=ttyS0 quiet panic=-1 soulpad.dirty_mib=%d soulpad.redirty_at=12 soulpad.redirty_mib=%d", mib/2, rewriteMiB(mib)), "crypt-luks")
	b.Setenv("SOULPAD_MACHINE_MEMORY_MIB", fmt.Sprint(mib))
	b.Setenv("SOULPAD_PAD_VAULT_SIZE_MIB", fmt.Sprint(mib*6+512))
	b.Setenv("SOULPAD_SESSION_CHECKPOINT_MINUTES", "0")
	if out, errOut, code := e.Run(b, "init"); code != 0 {
		b.Fatalf("init: %s %s", out, errOut)
	}
	cmd, buf, done := e.StartRunArgs(b)
	testcli.WaitFor(b, buf, done, "the machine is running", 2*time.Minute)
	checkpoint := func(n int) {
		b.Helper()
		if out, errOut, code := e.Run(b, "checkpoint"); code != 0 {
			b.Fatalf("soulpad checkpoint: %s %s\n%s", out, errOut, buf.String())
		}
		for deadline := time.Now().Add(5 * time.Minute); strings.Count(buf.String(), "  checkpoint ") < n; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatalf("checkpoint %d was not sealed:\n%s", n, buf.String())
			}
		}
	}
	var qemu, luks int
	for pid, name := range testcli.Descendants(cmd.Process.Pid) {
		switch {
		case strings.HasPrefix(name, "qemu-system"):
			qemu = pid
		case name == "crypt-luks":
			luks = pid
		}
	}
	if qemu == 0 || luks == 0 {
		b.Fatalf("QEMU (%d) or crypt-luks (%d) not found under soulpad", qemu, luks)
	}
	var dirtied, padWrites []int64
	mark := func() func() {
		q, l := ioWrites(b, qemu), ioWrites(b, luks)
		return func() {
			dirtied = append(dirtied, ioWrites(b, qemu)-q)
			padWrites = append(padWrites, ioWrites(b, luks)-l)
		}
	}
	guestSays(b, e, "soulpad-guest: ready", 5*time.Minute)
	checkpoint(1)
	since := mark()
	guestSays(b, e, "soulpad-guest: redirtied", 3*time.Minute)
	checkpoint(2)
	since()
	since = mark()
	time.Sleep(3 * time.Second)
	checkpoint(3)
	since()
	cpu := proccpu.Tree(cmd.Process.Pid)
	if out, errOut, code := e.Run(b, "suspend"); code != 0 {
		b.Fatalf("suspend: %s %s", out, errOut)
	}
	if code := testcli.Ended(b, done, buf); code != 0 {
		b.Fatalf("the run: exit %d\n%s", code, buf.String())
	}
	r := checkpointJournal(b, e.Pad)
	if len(r.pauses) != 3 || r.suspend == 0 {
		b.Fatalf("the journal has %d checkpoints and a suspend of %.2f s:\n%s", len(r.pauses), r.suspend, buf.String())
	}
	r.cpu, r.wall = cpu, time.Since(start).Seconds()
	r.dirtied, r.padWrites = dirtied, padWrites
	return r
}

// guestSays waits for the guest's console to show want.
func guestSays(b *testing.B, e testcli.Env, want string, d time.Duration) {
	b.Helper()
	out := ""
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if out, _, _ = e.Run(b, "console", "--dump"); strings.Contains(out, want) {
			return
		}
	}
	b.Fatalf("%q did not appear on the console in %s; it ends:\n%s", want, d, out[max(0, len(out)-1500):])
}

// ioWrites is a process's write_bytes in /proc/<pid>/io: what it caused
// to be written to storage (for QEMU, pages dirtied in its shared RAM
// file too).
func ioWrites(b *testing.B, pid int) int64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			var n int64
			fmt.Sscan(v, &n)
			return n
		}
	}
	b.Fatalf("no write_bytes in /proc/%d/io", pid)
	return 0
}

func maxOf(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func fmtFloats(v []float64) string {
	var out []string
	for _, x := range v {
		out = append(out, fmt.Sprintf("%.3f", x))
	}
	return strings.Join(out, ", ")
}

func mibs(v []int64) string {
	var out []string
	for _, x := range v {
		out = append(out, fmt.Sprintf("%.1f", float64(x)/(1<<20)))
	}
	return strings.Join(out, ", ")
}

// checkpointJournal reads the checkpoints and the suspend's time from the
// pad's newest session journal.
func checkpointJournal(b *testing.B, padDir string) (r checkpointRun) {
	b.Helper()
	f := newestJournal(b, padDir)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e struct {
			Stage      string  `json:"stage"`
			Event      string  `json:"event"`
			Message    string  `json:"message"`
			DurationMS float64 `json:"duration_ms"`
			Fields     struct {
				Pause  float64 `json:"pause_seconds"`
				Hashed int64   `json:"hashed_bytes"`
			} `json:"fields"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		switch {
		case e.Message == "checkpoint sealed":
			r.pauses = append(r.pauses, e.Fields.Pause)
			r.hashed = append(r.hashed, e.Fields.Hashed)
		case e.Stage == "suspend" && e.Event == "end":
			r.suspend = e.DurationMS / 1000
		}
	}
	return r
}
