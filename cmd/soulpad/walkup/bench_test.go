package walkup

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testcli"
	"github.com/soulpad/soulpad/internal/testguest"
	"github.com/soulpad/soulpad/internal/vmmbench"
	"github.com/soulpad/soulpad/plugins/crypt-gocryptfs/gocryptfs"
	"github.com/soulpad/soulpad/plugins/crypt-luks/luks"
	"github.com/soulpad/soulpad/plugins/crypt-plain/plain"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/crypt"
	"github.com/soulpad/soulpad/sdk/sdktest"
)

// padCycle is what one walk-up cycle measured: a cold boot suspended,
// resumed from a cold pad, re-dirtied and suspended again, then dd and
// QEMU driven by hand in the same vault.
type padCycle struct {
	suspend1, suspend2   float64 // `soulpad suspend` until the pad can be unplugged, s
	bytes1, bytes2       int64   // bytes the pad's device wrote meanwhile
	resumeRunning        float64 // `soulpad run` until the machine runs, s
	resumeTick           float64 // … until the guest's next counter tick, s
	cpuSuspend1          float64 // CPU-seconds of soulpad, its plugins and QEMU
	stages               map[string]float64
	resumePhases         map[string]float64  // the VMM's, from the journal
	suspendPhases        map[string]float64  // the second suspend's, with the core's
	phaseOrder           map[string][]string // stage → its phases' names in the order they ran
	ddWrite, ddRead      float64             // dd of bytes1 into the vault with fsync; back, cold
	ddBytes              int64               // what dd's write put on the pad
	bare                 bareCycle
	load                 float64
	memory               string // the memory mode the vault got
	padMiB, vaultFileMiB float64
}

// BenchmarkWalkUpThroughVaults measures the walk-up loop as a user runs
// it — `soulpad run` and `soulpad suspend` on a pad — for 256 MiB and
// 1 GiB guests (5/8 of RAM filled) in vaults of crypt-plain,
// crypt-gocryptfs and crypt-luks. The pad is its own XFS file system on a
// loop device, so the bytes that reached it are counted, and its caches
// (and the image's under it) are dropped before each resume, so the
// resume reads the pad. Beside each, in the same vault and run: dd
// writing the first suspend's bytes with fsync and reading them back
// cold, and QEMU driven by hand through the same suspend and resume
// (the framework's overhead). Cells are the median of SOULPAD_BENCH_REPS
// runs (default 3); every run goes to SOULPAD_BENCH_CSV.
//
//	make bench   (or: go test -run '^$' -bench WalkUpThroughVaults -benchtime 1x -timeout 120m ./cmd/soulpad/walkup)
//
// SOULPAD_BENCH_SIZES ("256,1024") and SOULPAD_BENCH_CRYPTS pick cells.
func BenchmarkWalkUpThroughVaults(b *testing.B) {
	testguest.RequireQEMU(b)
	env, reps, sizes := benchSettings(b, 256, 1024)
	crypts := []string{"crypt-plain", "crypt-gocryptfs", "crypt-luks"}
	if s := env["SOULPAD_BENCH_CRYPTS"]; s != "" {
		crypts = strings.Split(s, ",")
	}
	type cell struct {
		mib   uint64
		crypt string
	}
	results := map[cell][]padCycle{}
	load0 := vmmbench.LoadAverage()
	started := time.Now()
	for r := 0; r < reps; r++ {
		for _, mib := range sizes {
			for _, c := range crypts {
				fmt.Printf("run %d/%d: %d MiB guest in %s (%s so far)\n", r+1, reps, mib, c, time.Since(started).Round(time.Second))
				results[cell{mib, c}] = append(results[cell{mib, c}], runPadCycle(b, mib, c))
			}
		}
	}
	med := func(c cell, f func(padCycle) float64) float64 { return vmmbench.MedianOf(results[c], f) }
	mibOf := func(n int64) float64 { return float64(n) / (1 << 20) }
	fmt.Printf("\nThe walk-up loop through each vault (median of %d; load average %.1f → %.1f%s)\n", reps, load0, vmmbench.LoadAverage(), vmmbench.Noisy(load0))
	fmt.Printf("suspend: `soulpad suspend` until the pad can be unplugged; resume: `soulpad run` from a cold pad until the machine runs / the guest ticks\n")
	fmt.Printf("%-5s %-15s %-6s %9s %8s %7s %9s %8s %9s %9s %8s %8s %9s %9s\n",
		"RAM", "vault", "memory", "suspend1", "MiB", "vs dd", "suspend2", "MiB", "resume", "to tick", "vs dd", "dd w s", "dd r s", "cpu s1")
	for _, mib := range sizes {
		for _, c := range crypts {
			k := cell{mib, c}
			s1 := med(k, func(r padCycle) float64 { return r.suspend1 })
			dw := med(k, func(r padCycle) float64 { return r.ddWrite })
			dr := med(k, func(r padCycle) float64 { return r.ddRead })
			tick := med(k, func(r padCycle) float64 { return r.resumeTick })
			fmt.Printf("%-5s %-15s %-6s %9.2f %8.0f %6.2fx %9.2f %8.1f %9.2f %9.2f %7.2fx %8.2f %9.2f %9.2f\n",
				fmt.Sprintf("%dM", mib), c, results[k][0].memory, s1, med(k, func(r padCycle) float64 { return mibOf(r.bytes1) }), s1/dw,
				med(k, func(r padCycle) float64 { return r.suspend2 }), med(k, func(r padCycle) float64 { return mibOf(r.bytes2) }),
				med(k, func(r padCycle) float64 { return r.resumeRunning }), tick, tick/dr, dw, dr,
				med(k, func(r padCycle) float64 { return r.cpuSuspend1 }))
		}
	}
	fmt.Printf("\nWhere the time went (journal stages; the VMM's phases of the resume and the second suspend), s\n")
	for _, mib := range sizes {
		for _, c := range crypts {
			k := cell{mib, c}
			fmt.Printf("%-5s %-15s", fmt.Sprintf("%dM", mib), c)
			for _, st := range []string{"boot", "detect", "unlock", "resume", "suspend", "shutdown"} {
				fmt.Printf(" %s %.2f", st, med(k, func(r padCycle) float64 { return r.stages[st] }))
			}
			fmt.Printf("\n%-21s resume:", "")
			for _, ph := range phaseNames(results[k], "resume") {
				fmt.Printf(" %s %.2f", ph, med(k, func(r padCycle) float64 { return r.resumePhases[ph] }))
			}
			fmt.Printf(" | first tick after cont %.2f\n%-21s suspend2:", med(k, func(r padCycle) float64 { return r.resumeTick - r.resumeRunning }), "")
			for _, ph := range phaseNames(results[k], "suspend") {
				fmt.Printf(" %s %.2f", ph, med(k, func(r padCycle) float64 { return r.suspendPhases[ph] }))
			}
			fmt.Println()
		}
	}
	fmt.Printf("\nThe framework against QEMU driven by hand in the same vault (same guest, same memory mode), s\n")
	fmt.Printf("%-5s %-15s %10s %10s %7s %10s %10s %7s\n", "RAM", "vault", "suspend", "by hand", "ratio", "to tick", "by hand", "ratio")
	for _, mib := range sizes {
		for _, c := range crypts {
			k := cell{mib, c}
			s1 := med(k, func(r padCycle) float64 { return r.suspend1 })
			bs := med(k, func(r padCycle) float64 { return r.bare.suspend })
			tick := med(k, func(r padCycle) float64 { return r.resumeTick })
			bt := med(k, func(r padCycle) float64 { return r.bare.resumeTick })
			fmt.Printf("%-5s %-15s %10.2f %10.2f %6.2fx %10.2f %10.2f %6.2fx\n", fmt.Sprintf("%dM", mib), c, s1, bs, s1/bs, tick, bt, tick/bt)
		}
	}
	csvPath := env["SOULPAD_BENCH_CSV"]
	if csvPath == "" {
		csvPath = filepath.Join(os.TempDir(), "soulpad-bench-walkup.csv")
	}
	if err := writePadCSV(csvPath, sizes, crypts, func(mib uint64, c string) []padCycle { return results[cell{mib, c}] }); err != nil {
		b.Fatal(err)
	}
	fmt.Printf("every run: %s (SOULPAD_BENCH_CSV sets the path)\n", csvPath)
}

// benchSettings reads the benchmarks' SOULPAD_BENCH_* variables and
// hides them from the soulpad runs until b ends (soulpad refuses SOULPAD_
// variables that are not config keys): all of them, the repetitions
// (default 3) and the guest sizes (default sizes).
func benchSettings(b *testing.B, sizes ...uint64) (map[string]string, int, []uint64) {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "SOULPAD_BENCH_") {
			env[k] = v
			os.Unsetenv(k)
			b.Cleanup(func() { os.Setenv(k, v) })
		}
	}
	reps := 3
	if n, err := strconv.Atoi(env["SOULPAD_BENCH_REPS"]); err == nil && n > 0 {
		reps = n
	}
	if s := env["SOULPAD_BENCH_SIZES"]; s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
			if err != nil {
				b.Fatalf("SOULPAD_BENCH_SIZES: %v", err)
			}
			sizes = append(sizes, n)
		}
	}
	return env, reps, sizes
}

// phaseNames are the phase names the runs reported, in the order they
// ran.
func phaseNames(rs []padCycle, stage string) []string {
	var names []string
	seen := map[string]bool{}
	for _, r := range rs {
		for _, n := range r.phaseOrder[stage] {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	return names
}

func writePadCSV(path string, sizes []uint64, crypts []string, runs func(uint64, string) []padCycle) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"ram_mib", "vault", "memory", "run", "suspend1_s", "bytes1", "cpu_suspend1_s", "suspend2_s", "bytes2", "resume_running_s", "resume_tick_s",
		"dd_write_s", "dd_read_s", "dd_bytes", "bare_suspend_s", "bare_resume_cont_s", "bare_resume_tick_s", "stages", "resume_phases", "suspend2_phases", "load_avg"})
	g := func(x float64) string { return strconv.FormatFloat(x, 'f', 3, 64) }
	js := func(m map[string]float64) string { b, _ := json.Marshal(m); return string(b) }
	for _, mib := range sizes {
		for _, c := range crypts {
			for i, r := range runs(mib, c) {
				w.Write([]string{strconv.FormatUint(mib, 10), c, r.memory, strconv.Itoa(i + 1), g(r.suspend1), strconv.FormatInt(r.bytes1, 10), g(r.cpuSuspend1),
					g(r.suspend2), strconv.FormatInt(r.bytes2, 10), g(r.resumeRunning), g(r.resumeTick), g(r.ddWrite), g(r.ddRead), strconv.FormatInt(r.ddBytes, 10),
					g(r.bare.suspend), g(r.bare.resumeCont), g(r.bare.resumeTick), js(r.stages), js(r.resumePhases), js(r.suspendPhases), g(r.load)})
			}
		}
	}
	w.Flush()
	return errors.Join(w.Error(), f.Close())
}

const benchPassphrase = "a long walk-up test passphrase"

func runPadCycle(b *testing.B, mib uint64, cryptPlugin string) padCycle {
	b.Helper()
	// The pad's own file system: the running RAM file, two points that
	// share most of its blocks, dd's file and the hand-driven guest's.
	vaultMiB := mib*4 + 512
	root := testguest.XFSDir(b, int64(vaultMiB+1024)<<20)
	img := filepath.Join(filepath.Dir(root), "xfs.img")
	cmdline := fmt.Sprintf("console=ttyS0 quiet panic=-1 soulpad.dirty_mib=%d soulpad.redirty_at=14 soulpad.redirty_mib=%d", mib*5/8, mib*5/100)
	e := testcli.QEMUEnv(b, cmdline, cryptPlugin)
	e.Pad = filepath.Join(root, "pad")
	b.Setenv("SOULPAD_PAD_PATH", e.Pad)
	b.Setenv("SOULPAD_PAD_VAULT_SIZE_MIB", strconv.FormatUint(vaultMiB, 10))
	b.Setenv("SOULPAD_MACHINE_MEMORY_MIB", strconv.FormatUint(mib, 10))
	if out, errOut, code := e.Run(b, "init"); code != 0 {
		b.Fatalf("init: %s %s", out, errOut)
	}
	var r padCycle
	r.stages = map[string]float64{}

	// A cold boot, suspended once the guest has filled its RAM.
	cmd, buf, done := e.StartRun(b)
	ticks := e.WaitCounter(b, 2)
	r.suspend1, r.bytes1, r.cpuSuspend1 = timedSuspend(b, e, root, cmd.Process.Pid, buf, done)
	// The resume reads the pad, not the page cache.
	vmmbench.DropCaches(b, e.Pad, img)
	t0 := time.Now()
	cmd, buf, done = e.StartRun(b)
	r.resumeRunning = time.Since(t0).Seconds()
	last := ticks[len(ticks)-1]
	for {
		vs := e.Counters(b)
		if len(vs) > 0 && vs[len(vs)-1] > last {
			break
		}
		if time.Since(t0) > 10*time.Minute {
			b.Fatalf("the resumed guest did not tick:\n%s", buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.resumeTick = time.Since(t0).Seconds()
	waitConsole(b, e, "redirtied")
	r.suspend2, r.bytes2, _ = timedSuspend(b, e, root, cmd.Process.Pid, buf, done)
	j := lastJournal(b, e.Pad)
	r.stages, r.resumePhases, r.suspendPhases, r.phaseOrder = j.stages, j.phases["resume"], j.phases["suspend"], j.order
	// How the VMM plugin sealed guest RAM, as the point says: the
	// baseline runs in the same mode.
	if r.memory = testcli.LatestMemory(e.Points(b)); r.memory == "" {
		b.Fatalf("the pad has no memory point after the suspend")
	}

	// dd and QEMU by hand, in the same vault.
	c := openVault(b, cryptPlugin)
	mnt := b.TempDir()
	un, err := c.Unlock(context.Background(), crypt.UnlockRequest{VaultPath: filepath.Join(e.Pad, "vault"), Credential: crypt.Credential{Passphrase: []byte(benchPassphrase)}, MountDir: mnt})
	if err != nil {
		b.Fatalf("unlock %s: %v", cryptPlugin, err)
	}
	defer c.Lock(context.Background(), crypt.LockRequest{VaultPath: filepath.Join(e.Pad, "vault")})
	plainDir := un.PlaintextDir
	ddFile := filepath.Join(plainDir, "dd.bin")
	w0 := vmmbench.DeviceWritten(b, root)
	r.ddWrite = ddTimed(b, "if=/dev/urandom", "of="+ddFile, "bs=1M", fmt.Sprint("count=", (r.bytes1+(1<<20-1))>>20), "conv=fsync")
	r.ddBytes = vmmbench.DeviceWritten(b, root) - w0
	vmmbench.DropCaches(b, ddFile, e.Pad, img)
	r.ddRead = ddTimed(b, "if="+ddFile, "of=/dev/null", "bs=1M")
	os.Remove(ddFile)
	kernel, initrd := testguest.Build(b)
	r.bare = runBare(b, bareSpec{dir: filepath.Join(plainDir, "bare"), mib: mib, kernel: kernel, initrd: initrd, cmdline: cmdline, mapped: r.memory == "mapped",
		dropCaches: func(paths ...string) { vmmbench.DropCaches(b, append(paths, e.Pad, img)...) }})
	if r.bare.memory != r.memory {
		b.Fatalf("the framework's point holds %s memory but QEMU by hand ran with %s memory: their ratio would compare two different things", r.memory, r.bare.memory)
	}
	r.load = vmmbench.LoadAverage()
	fmt.Printf("  suspend1 %.2f s (%.0f MiB to the pad), resume %.2f s (tick %.2f s), suspend2 %.2f s (%.1f MiB); dd %.2f s / %.2f s; by hand: suspend %.2f s, resume to tick %.2f s; both sides ran with %s memory\n",
		r.suspend1, float64(r.bytes1)/(1<<20), r.resumeRunning, r.resumeTick, r.suspend2, float64(r.bytes2)/(1<<20), r.ddWrite, r.ddRead, r.bare.suspend, r.bare.resumeTick, r.memory)
	return r
}

// timedSuspend runs `soulpad suspend` and waits for the run to end: the
// wall time, the bytes the pad's device wrote, and the CPU-seconds of
// soulpad, its plugins and QEMU (all children of the run).
func timedSuspend(b *testing.B, e testcli.Env, root string, run int, buf *testcli.SyncBuffer, done chan error) (float64, int64, float64) {
	b.Helper()
	w0 := vmmbench.DeviceWritten(b, root)
	tree := []int{run}
	for p := range testcli.Descendants(run) {
		tree = append(tree, p)
	}
	cpu0 := vmmbench.ChildrenCPUSeconds() + vmmbench.ProcTreeCPUSeconds(tree...)
	t0 := time.Now()
	if out, errOut, code := e.Run(b, "suspend"); code != 0 {
		b.Fatalf("suspend: exit %d %s %s", code, out, errOut)
	}
	testcli.Wait(b, done, buf)
	wall := time.Since(t0).Seconds()
	if !strings.Contains(buf.String(), "suspended to point") {
		b.Fatalf("run did not end suspended:\n%s", buf.String())
	}
	return wall, vmmbench.DeviceWritten(b, root) - w0, vmmbench.ChildrenCPUSeconds() - cpu0
}

func waitConsole(b *testing.B, e testcli.Env, want string) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		if out, _, _ := e.Run(b, "console", "--dump"); strings.Contains(out, want) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.Fatalf("%q did not appear on the console", want)
}

func ddTimed(b *testing.B, args ...string) float64 {
	b.Helper()
	t0 := time.Now()
	if out, err := execOut("dd", append(args, "status=none")...); err != nil {
		b.Fatalf("dd %v: %v %s", args, err, out)
	}
	return time.Since(t0).Seconds()
}

// openVault is the crypt plugin, in this process, as the pad's config
// sets it up.
func openVault(b *testing.B, name string) crypt.Crypt {
	b.Helper()
	log := sdktest.Logger(b, name)
	var impl sdk.Plugin
	cfg := `{}`
	switch name {
	case "crypt-plain":
		impl, cfg = plain.New(log), `{"allow_no_encryption": true}`
	case "crypt-gocryptfs":
		impl = gocryptfs.New(log)
	case "crypt-luks":
		impl = luks.New(log)
	default:
		b.Fatalf("no crypt plugin %s", name)
	}
	c := sdktest.InProcess(b, impl).(crypt.Crypt)
	if _, err := c.Configure(context.Background(), sdk.ConfigureRequest{Config: []byte(cfg)}); err != nil {
		b.Fatal(err)
	}
	return c
}

// journalFacts are what the newest session journal says.
type journalFacts struct {
	stages map[string]float64            // stage → seconds
	phases map[string]map[string]float64 // stage → phase → seconds
	order  map[string][]string           // stage → phase names as they came
}

var journalName = regexp.MustCompile(`^\d{8}T\d{6}Z-.*\.jsonl$`)

func lastJournal(b *testing.B, padDir string) journalFacts {
	b.Helper()
	f := newestJournal(b, padDir)
	defer f.Close()
	j := journalFacts{stages: map[string]float64{}, phases: map[string]map[string]float64{}, order: map[string][]string{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e struct {
			Stage      string  `json:"stage"`
			Event      string  `json:"event"`
			DurationMS float64 `json:"duration_ms"`
			Fields     struct {
				Phases []struct {
					Name    string  `json:"name"`
					Seconds float64 `json:"seconds"`
				} `json:"phases"`
			} `json:"fields"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		if e.Event == "end" {
			j.stages[e.Stage] = e.DurationMS / 1000
		}
		if len(e.Fields.Phases) > 0 {
			m := map[string]float64{}
			j.order[e.Stage] = nil
			for _, p := range e.Fields.Phases {
				m[p.Name] += p.Seconds
				j.order[e.Stage] = append(j.order[e.Stage], p.Name)
			}
			j.phases[e.Stage] = m
		}
	}
	return j
}

// newestJournal opens the pad's newest session journal.
func newestJournal(b testing.TB, padDir string) *os.File {
	b.Helper()
	ents, err := os.ReadDir(filepath.Join(padDir, "journal"))
	if err != nil {
		b.Fatal(err)
	}
	var names []string
	for _, d := range ents {
		if journalName.MatchString(d.Name()) {
			names = append(names, d.Name())
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		b.Fatal("no session journal on the pad")
	}
	f, err := os.Open(filepath.Join(padDir, "journal", names[len(names)-1]))
	if err != nil {
		b.Fatal(err)
	}
	return f
}
