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
	"strings"
	"testing"
	"time"

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
	if _, err := v.Resume(ctx, vmm.ResumeRequest{Spec: spec, MachineDir: mdir, StateDir: sdir, Description: sus.Description}); err != nil {
		b.Fatal(err)
	}
	r.Resume = time.Since(t0)
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
