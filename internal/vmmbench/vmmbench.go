// Package vmmbench measures a VMM plugin's suspend and resume of the demo
// guest with most of its RAM dirtied, and the dd baseline of the same
// bytes, for the VMM plugins' benchmarks.
package vmmbench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/soulpad/soulpad/internal/proccpu"
	"github.com/soulpad/soulpad/internal/testguest"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// Result is one suspend/resume cycle.
type Result struct {
	Suspend, Resume time.Duration
	// StateBytes is the size of the memory and device state written.
	StateBytes int64
	DirtyMiB   uint64
	// The plugin's own account of where the time went.
	SuspendPhases, ResumePhases []vmm.Phase
}

// Cycle boots the guest with mib MiB on v (configured with config), lets
// it dirty 5/8 of its RAM, suspends it, resumes it and powers it off.
// stateFile is the plugin's state file name inside a suspend point.
func Cycle(b *testing.B, v vmm.VMM, config []byte, stateFile string, mib uint64) Result {
	b.Helper()
	ctx := context.Background()
	if _, err := v.Configure(ctx, sdk.ConfigureRequest{Config: config}); err != nil {
		b.Fatal(err)
	}
	mdir := b.TempDir()
	dirty := mib * 5 / 8 // more, and the 256 MiB guest runs out of memory
	spec := testguest.Spec(b, mdir)
	spec.Name, spec.MemoryMiB = "bench", mib
	spec.Cmdline += fmt.Sprintf(" soulpad.dirty_mib=%d", dirty)
	start, err := v.Start(ctx, vmm.StartRequest{Spec: spec, MachineDir: mdir})
	if err != nil {
		b.Fatal(err)
	}
	defer v.PowerOff(ctx, vmm.PowerOffRequest{Force: true})
	deadline := time.Now().Add(5 * time.Minute)
	for {
		log, _ := os.ReadFile(start.Console.Log)
		if strings.Contains(string(log), "soulpad-counter 2") {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the guest did not dirty its RAM in time:\n%s", log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	sdir := b.TempDir()
	t0 := time.Now()
	sus, err := v.Suspend(ctx, vmm.SuspendRequest{Name: spec.Name, StateDir: sdir})
	r := Result{Suspend: time.Since(t0), DirtyMiB: dirty}
	if err != nil {
		b.Fatal(err)
	}
	t0 = time.Now()
	res, err := v.Resume(ctx, vmm.ResumeRequest{Spec: spec, MachineDir: mdir, StateDir: sdir, Description: sus.Description})
	if err != nil {
		b.Fatal(err)
	}
	r.Resume = time.Since(t0)
	r.SuspendPhases, r.ResumePhases = sus.Phases, res.Phases
	st, err := os.Stat(filepath.Join(sdir, stateFile))
	if err != nil {
		b.Fatal(err)
	}
	r.StateBytes = st.Size()
	return r
}

// DD writes (with fsync) and reads back n bytes with dd on the test's
// temporary disk: the baseline a suspend and a resume are held against.
func DD(b *testing.B, n int64) (write, read time.Duration) {
	b.Helper()
	f := filepath.Join(b.TempDir(), "dd.bin")
	count := fmt.Sprint((n + (1<<20 - 1)) >> 20)
	t0 := time.Now()
	if out, err := exec.Command("dd", "if=/dev/zero", "of="+f, "bs=1M", "count="+count, "conv=fsync", "status=none").CombinedOutput(); err != nil {
		b.Fatalf("dd: %v %s", err, out)
	}
	write = time.Since(t0)
	t0 = time.Now()
	if out, err := exec.Command("dd", "if="+f, "of=/dev/null", "bs=1M", "status=none").CombinedOutput(); err != nil {
		b.Fatalf("dd: %v %s", err, out)
	}
	return write, time.Since(t0)
}

// DeviceWritten is how many bytes the block device holding the file
// system at dir has written since boot (its sysfs stat): the bytes that
// reached the "pad".
func DeviceWritten(b testing.TB, dir string) int64 {
	b.Helper()
	src := mountSource(b, dir)
	st, err := os.ReadFile(filepath.Join("/sys/class/block", filepath.Base(src), "stat"))
	if err != nil {
		b.Fatalf("the device under %s (%s): %v", dir, src, err)
	}
	f := strings.Fields(string(st))
	if len(f) < 7 {
		b.Fatalf("%s: short stat %q", src, st)
	}
	var sectors int64
	fmt.Sscan(f[6], &sectors)
	return sectors * 512
}

// mountSource is the device mounted at dir.
func mountSource(b testing.TB, dir string) string {
	b.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(mi), "\n") {
		f := strings.Fields(l)
		if len(f) < 10 || f[4] != dir {
			continue
		}
		for i, x := range f {
			if x == "-" && i+2 < len(f) {
				return f[i+2]
			}
		}
	}
	b.Fatalf("nothing is mounted at %s", dir)
	return ""
}

// CPUSeconds is the user and system CPU time this process has used so
// far, in seconds (not its children: add theirs with ProcCPUSeconds).
func CPUSeconds() float64 {
	var self syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(self.Utime) + tv(self.Stime)
}

// ChildrenCPUSeconds is the user and system CPU time of this process's
// children that have ended and been waited for, and of theirs.
func ChildrenCPUSeconds() float64 {
	var ch syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ch)
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ch.Utime) + tv(ch.Stime)
}

// ProcCPUSeconds is the CPU time process pid has used (0 once it is gone).
func ProcCPUSeconds(pid int) float64 { return proccpu.Seconds(pid, false) }

// ProcTreeCPUSeconds is the CPU time processes pids have used, with that
// of the children they have waited for: for a process tree, give every
// live process in it.
func ProcTreeCPUSeconds(pids ...int) float64 {
	var sum float64
	for _, p := range pids {
		sum += proccpu.Seconds(p, true)
	}
	return sum
}

// PidServing is the pid of the process whose argv names path (QEMU, by
// its console socket), or 0.
func PidServing(path string) int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, _ := os.ReadFile(p); strings.Contains(string(b), path) {
			var pid int
			fmt.Sscan(filepath.Base(filepath.Dir(p)), &pid)
			return pid
		}
	}
	return 0
}

// Median is the median of xs (0 for none).
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// LoadAverage is the 1-minute load average.
func LoadAverage() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	var l float64
	fmt.Sscan(string(b), &l)
	return l
}

// DropCaches writes back and drops the page cache of the files under
// each path (a directory or a file), so the next read comes from the
// device: fsync, then fadvise(DONTNEED).
func DropCaches(b testing.TB, paths ...string) {
	b.Helper()
	for _, root := range paths {
		err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err != nil || !fi.Mode().IsRegular() {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := f.Sync(); err != nil {
				return err
			}
			return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		})
		if err != nil {
			b.Fatalf("drop caches of %s: %v", root, err)
		}
	}
}

// MedianOf is the median of f over runs.
func MedianOf[T any](runs []T, f func(T) float64) float64 {
	var xs []float64
	for _, r := range runs {
		xs = append(xs, f(r))
	}
	return Median(xs)
}

// Noisy flags a run whose load average (at its start, load0, or now)
// was above the machine's two cores.
func Noisy(load0 float64) string {
	if l := LoadAverage(); l > 2.5 || load0 > 2.5 {
		return "; NOISY: the load average is above the 2 cores"
	}
	return ""
}

// WaitLog waits until the file at path (a console log) has want.
func WaitLog(b testing.TB, path, want string) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		out, _ := os.ReadFile(path)
		if strings.Contains(string(out), want) {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%q did not appear in %s:\n%s", want, path, out)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
