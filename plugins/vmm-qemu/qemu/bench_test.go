package qemu_test

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
	"github.com/soulpad/soulpad/plugins/vmm-qemu/qemu"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/sdktest"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// BenchmarkSuspendResume measures the suspend and resume of the demo guest
// with most of its RAM dirtied, beside dd writing and reading the same
// number of bytes on the same disk in the same run:
//
//	make bench   (or: go test -run '^$' -bench SuspendResume -benchtime 1x ./plugins/vmm-qemu/qemu)
//
// Goal: suspend within 1.5× of dd's write.
func BenchmarkSuspendResume(b *testing.B) {
	testguest.RequireQEMU(b)
	for _, mib := range []uint64{256, 1024} {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				benchOnce(b, mib)
			}
		})
	}
}

func benchOnce(b *testing.B, mib uint64) {
	ctx := context.Background()
	p := sdktest.InProcess(b, qemu.New()).(vmm.VMM)
	if _, err := p.Configure(ctx, sdk.ConfigureRequest{}); err != nil {
		b.Fatal(err)
	}
	// The state goes where the test's temp dir is, as dd's file does.
	mdir := b.TempDir()
	k, i := testguest.Build(b)
	for src, dst := range map[string]string{k: "kernel", i: "initrd"} {
		data, err := os.ReadFile(src)
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mdir, dst), data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	dirty := mib * 5 / 8 // more, and the 256 MiB guest runs out of memory
	spec := vmm.Spec{Name: "bench", MemoryMiB: mib, VCPUs: 1, CPUModel: "portable", Accelerator: "tcg",
		Disks: []vmm.Disk{{Name: "root", Path: "disk.qcow2", SizeMiB: 16}}, Network: "user", Display: "none",
		Kernel: "kernel", Initrd: "initrd", Cmdline: fmt.Sprintf("console=ttyS0 quiet panic=-1 soulpad.dirty_mib=%d", dirty)}
	b.StopTimer()
	start, err := p.Start(ctx, vmm.StartRequest{Spec: spec, MachineDir: mdir})
	if err != nil {
		b.Fatal(err)
	}
	defer p.PowerOff(ctx, vmm.PowerOffRequest{Force: true})
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
	b.StartTimer()
	t0 := time.Now()
	sus, err := p.Suspend(ctx, vmm.SuspendRequest{Name: spec.Name, StateDir: sdir})
	suspend := time.Since(t0)
	if err != nil {
		b.Fatal(err)
	}
	t0 = time.Now()
	if _, err := p.Resume(ctx, vmm.ResumeRequest{Spec: spec, MachineDir: mdir, StateDir: sdir, Description: sus.Description}); err != nil {
		b.Fatal(err)
	}
	resume := time.Since(t0)
	b.StopTimer()
	st, err := os.Stat(filepath.Join(sdir, qemu.StateFile))
	if err != nil {
		b.Fatal(err)
	}
	size := st.Size()
	// Baseline: dd of the same number of bytes to and from the same disk.
	ddFile := filepath.Join(b.TempDir(), "dd.bin")
	count := fmt.Sprint((size + (1<<20 - 1)) >> 20)
	t0 = time.Now()
	if out, err := exec.Command("dd", "if=/dev/zero", "of="+ddFile, "bs=1M", "count="+count, "conv=fsync", "status=none").CombinedOutput(); err != nil {
		b.Fatalf("dd: %v %s", err, out)
	}
	ddWrite := time.Since(t0)
	t0 = time.Now()
	if out, err := exec.Command("dd", "if="+ddFile, "of=/dev/null", "bs=1M", "status=none").CombinedOutput(); err != nil {
		b.Fatalf("dd: %v %s", err, out)
	}
	ddRead := time.Since(t0)
	b.ReportMetric(suspend.Seconds(), "suspend-s")
	b.ReportMetric(resume.Seconds(), "resume-s")
	b.ReportMetric(float64(size)/(1<<20), "state-MiB")
	b.ReportMetric(ddWrite.Seconds(), "dd-write-s")
	b.ReportMetric(suspend.Seconds()/ddWrite.Seconds(), "suspend/dd-write")
	b.ReportMetric(resume.Seconds()/ddRead.Seconds(), "resume/dd-read")
	fmt.Printf("vmm-qemu %4d MiB guest (%d MiB dirtied): state %.1f MiB; suspend %.3f s vs dd write %.3f s (%.2fx); resume %.3f s vs dd read %.3f s (%.2fx)\n",
		mib, dirty, float64(size)/(1<<20), suspend.Seconds(), ddWrite.Seconds(), suspend.Seconds()/ddWrite.Seconds(),
		resume.Seconds(), ddRead.Seconds(), resume.Seconds()/ddRead.Seconds())
}
