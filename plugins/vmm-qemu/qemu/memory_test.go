package qemu_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testguest"
	"github.com/soulpad/soulpad/internal/vmmbench"
	"github.com/soulpad/soulpad/plugins/vmm-qemu/qemu"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/sdktest"
	"github.com/soulpad/soulpad/sdk/vmm"
	"github.com/soulpad/soulpad/sdk/vmm/vmmtest"
)

// xfsOpts runs the suite's machines and points on one XFS file system
// (as inside a crypt-luks vault), where vmm-qemu maps guest memory.
func xfsOpts(t *testing.T) vmmtest.Options {
	root := testguest.XFSDir(t, 4<<30)
	o := opts
	o.Config = []byte(`{"memory": "mapped"}`)
	o.TempDir = func(t *testing.T) string {
		d, err := os.MkdirTemp(root, "t")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	return o
}

// The whole suite with mapped memory: suspend, resume, the state's
// files, refusals, disk history.
func TestConformanceMappedMemory(t *testing.T) {
	testguest.RequireQEMU(t)
	vmmtest.Run(t, sdktest.InProcess(t, qemu.New(sdktest.Logger(t, "vmm-qemu"))).(vmm.VMM), xfsOpts(t))
}

// usedBytes is how much of the file system at dir is in use.
func usedBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

// waitPast waits until the guest's counter passes n and returns it.
func waitPast(t *testing.T, v vmm.VMM, m vmmtest.Machine, n uint64) uint64 {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		if got, ok := testguest.Progress(context.Background(), v, m); ok && got > n {
			return got
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("the guest's counter did not pass %d", n)
	return 0
}

// With mapped memory a point holds the device state and a clone of the
// RAM file: the state file is small, the second suspend adds to the file
// system only what the guest changed, and a session killed outright
// (QEMU and all) loses nothing of the sealed point, which resumes again
// from its own clone.
func TestMappedMemorySuspendsWhatChanged(t *testing.T) {
	testguest.RequireQEMU(t)
	ctx := context.Background()
	root := testguest.XFSDir(t, 4<<30)
	v := sdktest.InProcess(t, qemu.New(sdktest.Logger(t, "vmm-qemu"))).(vmm.VMM)
	if _, err := v.Configure(ctx, sdk.ConfigureRequest{}); err != nil { // memory = "auto"
		t.Fatal(err)
	}
	mdir := filepath.Join(root, "machine")
	os.Mkdir(mdir, 0o700)
	spec := guestSpec(t, mdir)
	spec.MemoryMiB = 256
	st, err := v.Start(ctx, vmm.StartRequest{Spec: spec, MachineDir: mdir})
	if err != nil {
		t.Fatal(err)
	}
	m := vmmtest.Machine{Spec: spec, Dir: mdir, Console: st.Console}
	n := waitPast(t, v, m, 2)
	suspend := func(name string) (string, vmm.SuspendResponse, int64) {
		t.Helper()
		dir := filepath.Join(root, name)
		os.Mkdir(dir, 0o700)
		before := usedBytes(t, root)
		su, err := v.Suspend(ctx, vmm.SuspendRequest{Name: spec.Name, StateDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return dir, su, usedBytes(t, root) - before
	}
	p1, su1, added1 := suspend("p1")
	ram, err := os.Stat(filepath.Join(p1, qemu.RAMFile))
	if err != nil || ram.Size() != 256<<20 {
		t.Fatalf("the point's RAM file: %v", err)
	}
	state, _ := os.Stat(filepath.Join(p1, qemu.StateFile))
	if state.Size() > 8<<20 {
		t.Fatalf("the device state is %d bytes: RAM went into the stream", state.Size())
	}
	if left, _ := filepath.Glob(filepath.Join(mdir, "memory", "ram-*")); len(left) != 0 {
		t.Fatalf("running RAM files left after suspend: %v", left)
	}
	re, err := v.Resume(ctx, vmm.ResumeRequest{Spec: spec, MachineDir: mdir, StateDir: p1, Description: su1.Description})
	if err != nil {
		t.Fatal(err)
	}
	m.Console = re.Console
	waitPast(t, v, m, n)
	_, _, added2 := suspend("p2")
	t.Logf("first suspend added %.1f MiB, the second %.1f MiB (RAM %d MiB); device state %.2f MiB",
		float64(added1)/(1<<20), float64(added2)/(1<<20), spec.MemoryMiB, float64(state.Size())/(1<<20))
	if added2 > int64(spec.MemoryMiB<<20)/4 {
		t.Errorf("the second suspend added %d MiB for a guest that idled: more than a quarter of its RAM", added2>>20)
	}

	// Resume p1 again, let the guest run (its RAM file moves ahead of
	// p1), then kill QEMU outright: p1 still resumes, from where it was.
	re, err = v.Resume(ctx, vmm.ResumeRequest{Spec: spec, MachineDir: mdir, StateDir: p1, Description: su1.Description})
	if err != nil {
		t.Fatal(err)
	}
	m.Console = re.Console
	waitPast(t, v, m, n)
	killQEMU(t, re.Console)
	time.Sleep(time.Second)
	re, err = v.Resume(ctx, vmm.ResumeRequest{Spec: spec, MachineDir: mdir, StateDir: p1, Description: su1.Description})
	if err != nil {
		t.Fatalf("the sealed point does not resume after a kill: %v", err)
	}
	defer v.PowerOff(ctx, vmm.PowerOffRequest{Force: true})
	m.Console = re.Console
	if got := waitPast(t, v, m, 0); got > n+5 {
		t.Fatalf("counter %d after resuming p1 (suspended near %d)", got, n)
	}
	if left, _ := filepath.Glob(filepath.Join(mdir, "memory", "ram-*")); len(left) != 1 {
		t.Fatalf("running RAM files: %v, want just the live one", left)
	}
}

// killQEMU kills -9 the QEMU serving the console socket.
func killQEMU(t *testing.T, con vmm.Console) {
	t.Helper()
	pid := vmmbench.PidServing(con.Socket)
	if pid == 0 {
		t.Fatalf("no QEMU serves %s", con.Socket)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
}

var counterRE = regexp.MustCompile(`soulpad-counter (\d+)`)

func countersIn(b []byte) []int {
	var out []int
	for _, m := range counterRE.FindAllSubmatch(b, -1) {
		n, _ := strconv.Atoi(string(m[1]))
		out = append(out, n)
	}
	return out
}

// In both memory modes a resumed guest goes on exactly where it stopped:
// the first counter it prints is the one after the last it printed
// before the suspend, cycle after cycle.
func TestResumeGoesOnWhereSuspendStopped(t *testing.T) {
	testguest.RequireQEMU(t)
	for _, mode := range []string{"mapped", "stream"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			root := testguest.XFSDir(t, 2<<30)
			v := sdktest.InProcess(t, qemu.New(sdktest.Logger(t, "vmm-qemu"))).(vmm.VMM)
			if _, err := v.Configure(ctx, sdk.ConfigureRequest{Config: []byte(`{"memory": "` + mode + `"}`)}); err != nil {
				t.Fatal(err)
			}
			mdir := filepath.Join(root, "m")
			os.Mkdir(mdir, 0o700)
			spec := guestSpec(t, mdir)
			st, err := v.Start(ctx, vmm.StartRequest{Spec: spec, MachineDir: mdir})
			if err != nil {
				t.Fatal(err)
			}
			defer v.PowerOff(ctx, vmm.PowerOffRequest{Force: true})
			con, n := st.Console, uint64(0)
			for i := 0; i < 3; i++ {
				n = waitPast(t, v, vmmtest.Machine{Spec: spec, Dir: mdir, Console: con}, n)
				log, err := os.Open(con.Log) // the run directory goes with QEMU
				if err != nil {
					t.Fatal(err)
				}
				dir := filepath.Join(root, fmt.Sprintf("p%d", i))
				os.Mkdir(dir, 0o700)
				su, err := v.Suspend(ctx, vmm.SuspendRequest{Name: spec.Name, StateDir: dir})
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(log)
				log.Close()
				before := countersIn(b)
				re, err := v.Resume(ctx, vmm.ResumeRequest{Spec: spec, MachineDir: mdir, StateDir: dir, Description: su.Description, Sums: su.Sums})
				if err != nil {
					t.Fatal(err)
				}
				// The resume's progress, asked after it returned, is whole:
				// a resume shorter than the host's poll is reported too.
				if p, err := v.(vmm.ProgressReporter).Progress(ctx, vmm.ProgressRequest{Name: spec.Name}); err != nil || p.Step != "resume" || p.Total == 0 || p.Done != p.Total {
					t.Errorf("cycle %d: progress after the resume is %+v (%v), want the resume's whole state", i, p, err)
				}
				con = re.Console
				n = waitPast(t, v, vmmtest.Machine{Spec: spec, Dir: mdir, Console: con}, 0)
				after, _ := os.ReadFile(con.Log)
				last, first := before[len(before)-1], countersIn(after)[0]
				if first != last+1 {
					t.Fatalf("cycle %d: the guest printed %d last before the suspend and %d first after the resume", i, last, first)
				}
			}
		})
	}
}

// A suspend whose state cannot be written (the vault is full, or its file
// system gave up) fails promptly, and the guest goes on running; it used
// to wait forever on QEMU, which waited on a full pipe.
func TestSuspendIntoAFullVaultFailsAndTheGuestRuns(t *testing.T) {
	testguest.RequireQEMU(t)
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	ctx := context.Background()
	v := sdktest.InProcess(t, qemu.New(sdktest.Logger(t, "vmm-qemu"))).(vmm.VMM)
	if _, err := v.Configure(ctx, sdk.ConfigureRequest{Config: []byte(`{"memory": "stream"}`)}); err != nil {
		t.Fatal(err)
	}
	mdir := t.TempDir()
	spec := guestSpec(t, mdir)
	st, err := v.Start(ctx, vmm.StartRequest{Spec: spec, MachineDir: mdir})
	if err != nil {
		t.Fatal(err)
	}
	defer v.PowerOff(ctx, vmm.PowerOffRequest{Force: true})
	m := vmmtest.Machine{Spec: spec, Dir: mdir, Console: st.Console}
	n := waitPast(t, v, m, 1)
	full := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", full).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	defer exec.Command("umount", full).Run()
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	start := time.Now()
	if _, err := v.Suspend(sctx, vmm.SuspendRequest{Name: spec.Name, StateDir: full}); err == nil || sctx.Err() != nil {
		t.Fatalf("suspend into a full file system: %v after %v; want a prompt error", err, time.Since(start).Round(time.Millisecond))
	}
	waitPast(t, v, m, n+1)
}

// memory = "stream" set after mapped points were made: those still
// resume (from their RAM file), and the next suspend puts all RAM in the
// stream again, which resumes without a RAM file.
func TestStreamConfigAfterMappedPoints(t *testing.T) {
	testguest.RequireQEMU(t)
	ctx := context.Background()
	root := testguest.XFSDir(t, 2<<30)
	v := sdktest.InProcess(t, qemu.New(sdktest.Logger(t, "vmm-qemu"))).(vmm.VMM)
	configure := func(mode string) {
		t.Helper()
		if _, err := v.Configure(ctx, sdk.ConfigureRequest{Config: []byte(`{"memory": "` + mode + `"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	configure("mapped")
	mdir := filepath.Join(root, "m")
	os.Mkdir(mdir, 0o700)
	spec := guestSpec(t, mdir)
	st, err := v.Start(ctx, vmm.StartRequest{Spec: spec, MachineDir: mdir})
	if err != nil {
		t.Fatal(err)
	}
	defer v.PowerOff(ctx, vmm.PowerOffRequest{Force: true})
	n := waitPast(t, v, vmmtest.Machine{Spec: spec, Dir: mdir, Console: st.Console}, 1)
	point := func(name string) (string, vmm.SuspendResponse) {
		t.Helper()
		dir := filepath.Join(root, name)
		os.Mkdir(dir, 0o700)
		su, err := v.Suspend(ctx, vmm.SuspendRequest{Name: spec.Name, StateDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return dir, su
	}
	p1, su1 := point("p1")
	configure("stream")
	re, err := v.Resume(ctx, vmm.ResumeRequest{Spec: spec, MachineDir: mdir, StateDir: p1, Description: su1.Description})
	if err != nil {
		t.Fatalf("a mapped point under memory = stream: %v", err)
	}
	n = waitPast(t, v, vmmtest.Machine{Spec: spec, Dir: mdir, Console: re.Console}, n)
	p2, su2 := point("p2")
	if _, err := os.Stat(filepath.Join(p2, qemu.RAMFile)); err == nil || strings.Contains(su2.Description, "mapped") {
		t.Fatalf("under memory = stream the point has a RAM file or says mapped: %s", su2.Description)
	}
	// RAM in the stream: several MiB of the guest's pages (zero pages
	// are a flag each), against about 0.7 MiB of device state alone.
	s1, _ := os.Stat(filepath.Join(p1, qemu.StateFile))
	s2, _ := os.Stat(filepath.Join(p2, qemu.StateFile))
	if s1 == nil || s2 == nil || s2.Size() < 2*s1.Size() {
		t.Fatalf("the stream point's state is not larger than the mapped point's device state: %v, %v", s1, s2)
	}
	t.Logf("device state alone %d KiB; with RAM %d KiB", s1.Size()>>10, s2.Size()>>10)
	re, err = v.Resume(ctx, vmm.ResumeRequest{Spec: spec, MachineDir: mdir, StateDir: p2, Description: su2.Description})
	if err != nil {
		t.Fatal(err)
	}
	waitPast(t, v, vmmtest.Machine{Spec: spec, Dir: mdir, Console: re.Console}, n)
}
