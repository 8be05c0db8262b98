package qemu_test

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testguest"
	"github.com/soulpad/soulpad/internal/vmmbench"
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
				b.StopTimer()
				r := vmmbench.Cycle(b, sdktest.InProcess(b, qemu.New(sdktest.Logger(b, "vmm-qemu"))).(vmm.VMM), nil, qemu.StateFile, mib)
				ddWrite, ddRead := vmmbench.DD(b, r.StateBytes)
				b.ReportMetric(r.Suspend.Seconds(), "suspend-s")
				b.ReportMetric(r.Resume.Seconds(), "resume-s")
				b.ReportMetric(float64(r.StateBytes)/(1<<20), "state-MiB")
				b.ReportMetric(ddWrite.Seconds(), "dd-write-s")
				b.ReportMetric(r.Suspend.Seconds()/ddWrite.Seconds(), "suspend/dd-write")
				b.ReportMetric(r.Resume.Seconds()/ddRead.Seconds(), "resume/dd-read")
				fmt.Printf("vmm-qemu %4d MiB guest (%d MiB dirtied): state %.1f MiB; suspend %.3f s vs dd write %.3f s (%.2fx); resume %.3f s vs dd read %.3f s (%.2fx)\n",
					mib, r.DirtyMiB, float64(r.StateBytes)/(1<<20), r.Suspend.Seconds(), ddWrite.Seconds(), r.Suspend.Seconds()/ddWrite.Seconds(),
					r.Resume.Seconds(), ddRead.Seconds(), r.Resume.Seconds()/ddRead.Seconds())
			}
		})
	}
}

// memCycle is one boot → suspend → resume → re-dirty → suspend of the
// demo guest, measured.
type memCycle struct {
	suspend1, suspend2, resumeCont, resumeTick, dd float64 // seconds
	cpuSuspend2, cpuResume                         float64 // CPU-seconds (this process and QEMU)
	bytes1, bytes2                                 int64   // reached the device
	load                                           float64 // 1-minute load average after the run
}

// BenchmarkMappedMemory compares vmm-qemu's memory modes on XFS with
// reflink (the file system crypt-luks puts in a vault of 400 MiB or
// more), for 256 MiB and 1 GiB guests that fill 5/8 of their RAM: the
// first suspend, the resume (to cont, and to the guest's next counter
// tick), and a second suspend after the guest re-dirtied 5% of its RAM —
// wall time, CPU-seconds and the bytes that reached the device, beside
// dd writing the first suspend's bytes with fsync into the same file
// system. Each cell is the median of SOULPAD_BENCH_REPS runs (default
// 3).
//
//	go test -run '^$' -bench MappedMemory -benchtime 1x -timeout 60m ./plugins/vmm-qemu/qemu
//
// Goals: the second suspend writes ≤ 10% of RAM (mapped); resume to the
// first tick at 1 GiB ≤ 1.2× that at 256 MiB (mapped); the first suspend
// ≤ 1.5× dd.
func BenchmarkMappedMemory(b *testing.B) {
	testguest.RequireQEMU(b)
	reps := 3
	if n, err := strconv.Atoi(os.Getenv("SOULPAD_BENCH_REPS")); err == nil && n > 0 {
		reps = n
	}
	type cell struct {
		mib  uint64
		mode string
	}
	results := map[cell][]memCycle{}
	load0 := vmmbench.LoadAverage()
	for _, mib := range []uint64{256, 1024} {
		for _, mode := range []string{"stream", "mapped"} {
			for r := 0; r < reps; r++ {
				results[cell{mib, mode}] = append(results[cell{mib, mode}], runMemCycle(b, mib, mode))
			}
		}
	}
	med := func(c cell, f func(memCycle) float64) float64 { return vmmbench.MedianOf(results[c], f) }
	fmt.Printf("\nvmm-qemu memory modes on XFS with reflink (median of %d; load average %.1f → %.1f%s)\n", reps, load0, vmmbench.LoadAverage(), vmmbench.Noisy(load0))
	fmt.Printf("%-6s %-7s %10s %9s %10s %10s %12s %12s %12s %10s\n", "RAM", "mode", "suspend1 s", "vs dd", "resume s", "to tick s", "suspend2 s", "suspend2 cpu", "written2 %RAM", "resume cpu")
	for _, mib := range []uint64{256, 1024} {
		for _, mode := range []string{"stream", "mapped"} {
			c := cell{mib, mode}
			s1 := med(c, func(r memCycle) float64 { return r.suspend1 })
			dd := med(c, func(r memCycle) float64 { return r.dd })
			w2 := med(c, func(r memCycle) float64 { return float64(r.bytes2) / float64(mib<<20) * 100 })
			fmt.Printf("%-6s %-7s %10.2f %8.2fx %10.2f %10.2f %12.2f %12.2f %12.1f %10.2f\n", fmt.Sprintf("%dM", mib), mode, s1, s1/dd,
				med(c, func(r memCycle) float64 { return r.resumeCont }), med(c, func(r memCycle) float64 { return r.resumeTick }),
				med(c, func(r memCycle) float64 { return r.suspend2 }), med(c, func(r memCycle) float64 { return r.cpuSuspend2 }), w2,
				med(c, func(r memCycle) float64 { return r.cpuResume }))
		}
	}
	tick := func(mib uint64, mode string) float64 {
		return med(cell{mib, mode}, func(r memCycle) float64 { return r.resumeTick })
	}
	w2 := med(cell{1024, "mapped"}, func(r memCycle) float64 { return float64(r.bytes2) / float64(1<<30) })
	fmt.Printf("goals (mapped): second suspend wrote %.1f%% of RAM (goal ≤ 10%%); resume to tick 1 GiB/256 MiB %.2fx (goal ≤ 1.2x; stream %.2fx); 1 GiB resume to tick mapped/stream %.2fx\n",
		w2*100, tick(1024, "mapped")/tick(256, "mapped"), tick(1024, "stream")/tick(256, "stream"), tick(1024, "mapped")/tick(1024, "stream"))
	// Every run, for plotting or a spreadsheet.
	csvPath := os.Getenv("SOULPAD_BENCH_CSV")
	if csvPath == "" {
		csvPath = filepath.Join(os.TempDir(), "soulpad-bench-memory.csv")
	}
	f, err := os.Create(csvPath)
	if err != nil {
		b.Fatal(err)
	}
	w := csv.NewWriter(f)
	w.Write([]string{"ram_mib", "mode", "run", "suspend1_s", "bytes1", "dd_s", "resume_cont_s", "resume_tick_s", "resume_cpu_s", "suspend2_s", "suspend2_cpu_s", "bytes2", "load_avg"})
	for _, mib := range []uint64{256, 1024} {
		for _, mode := range []string{"stream", "mapped"} {
			for i, r := range results[cell{mib, mode}] {
				g := func(x float64) string { return strconv.FormatFloat(x, 'f', 3, 64) }
				w.Write([]string{strconv.FormatUint(mib, 10), mode, strconv.Itoa(i + 1), g(r.suspend1), strconv.FormatInt(r.bytes1, 10), g(r.dd),
					g(r.resumeCont), g(r.resumeTick), g(r.cpuResume), g(r.suspend2), g(r.cpuSuspend2), strconv.FormatInt(r.bytes2, 10), g(r.load)})
			}
		}
	}
	w.Flush()
	if err := errors.Join(w.Error(), f.Close()); err != nil {
		b.Fatal(err)
	}
	fmt.Printf("every run: %s (SOULPAD_BENCH_CSV sets the path)\n", csvPath)
	b.ReportMetric(w2*100, "mapped-written2-%RAM")
	b.ReportMetric(tick(1024, "mapped")/tick(256, "mapped"), "mapped-tick-1G/256M")
}

func runMemCycle(b *testing.B, mib uint64, mode string) memCycle {
	b.Helper()
	ctx := context.Background()
	root := testguest.XFSDir(b, int64(mib)*6<<20+1<<30)
	v := sdktest.InProcess(b, qemu.New(sdktest.Logger(b, "vmm-qemu"))).(vmm.VMM)
	if _, err := v.Configure(ctx, sdk.ConfigureRequest{Config: []byte(`{"memory": "` + mode + `"}`)}); err != nil {
		b.Fatal(err)
	}
	mdir := filepath.Join(root, "machine")
	os.Mkdir(mdir, 0o700)
	spec := testguest.Spec(b, mdir)
	spec.Name, spec.MemoryMiB = "bench", mib
	spec.Cmdline += fmt.Sprintf(" soulpad.dirty_mib=%d soulpad.redirty_at=10 soulpad.redirty_mib=%d", mib*5/8, mib*5/100)
	st, err := v.Start(ctx, vmm.StartRequest{Spec: spec, MachineDir: mdir})
	if err != nil {
		b.Fatal(err)
	}
	defer v.PowerOff(ctx, vmm.PowerOffRequest{Force: true})
	vmmbench.WaitLog(b, st.Console.Log, "soulpad-counter 2")
	var r memCycle
	suspend := func(name string) (vmm.SuspendResponse, float64, float64) {
		dir := filepath.Join(root, name)
		os.Mkdir(dir, 0o700)
		cpu0 := vmmbench.CPUSeconds()
		qemuPid := vmmbench.PidServing(st.Console.Socket)
		qcpu0 := vmmbench.ProcCPUSeconds(qemuPid)
		var qcpu1 float64
		t0 := time.Now()
		done := make(chan struct{})
		go func() { // QEMU's CPU time just before it exits
			defer close(done)
			for {
				if c := vmmbench.ProcCPUSeconds(qemuPid); c > 0 {
					qcpu1 = c
				} else {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		su, err := v.Suspend(ctx, vmm.SuspendRequest{Name: spec.Name, StateDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		wall := time.Since(t0).Seconds()
		<-done
		return su, wall, vmmbench.CPUSeconds() - cpu0 + (qcpu1 - qcpu0)
	}
	w0 := vmmbench.DeviceWritten(b, root)
	su1, s1, _ := suspend("p1")
	r.suspend1 = s1
	r.bytes1 = vmmbench.DeviceWritten(b, root) - w0
	// Cold: the point's pages leave the page cache, inside the file system
	// and under it (the image file), so the resume reads the "pad".
	vmmbench.DropCaches(b, filepath.Join(root, "p1"), filepath.Join(filepath.Dir(root), "xfs.img"))
	cpu0 := vmmbench.CPUSeconds()
	t0 := time.Now()
	re, err := v.Resume(ctx, vmm.ResumeRequest{Spec: spec, MachineDir: mdir, StateDir: filepath.Join(root, "p1"), Description: su1.Description})
	if err != nil {
		b.Fatal(err)
	}
	r.resumeCont = time.Since(t0).Seconds()
	st.Console = re.Console
	vmmbench.WaitLog(b, re.Console.Log, "soulpad-counter ")
	r.resumeTick = time.Since(t0).Seconds()
	r.cpuResume = vmmbench.CPUSeconds() - cpu0 + vmmbench.ProcCPUSeconds(vmmbench.PidServing(re.Console.Socket))
	w1 := vmmbench.DeviceWritten(b, root)
	vmmbench.WaitLog(b, re.Console.Log, "redirtied")
	_, r.suspend2, r.cpuSuspend2 = suspend("p2")
	r.bytes2 = vmmbench.DeviceWritten(b, root) - w1
	// dd: the first suspend's bytes, with fsync, into the same file system.
	t0 = time.Now()
	if out, err := exec.Command("dd", "if=/dev/urandom", "of="+filepath.Join(root, "dd.bin"), "bs=1M", fmt.Sprint("count=", (r.bytes1+(1<<20-1))>>20), "conv=fsync", "status=none").CombinedOutput(); err != nil {
		b.Fatalf("dd: %v %s", err, out)
	}
	r.dd = time.Since(t0).Seconds()
	r.load = vmmbench.LoadAverage()
	fmt.Printf("  %4d MiB %-6s: suspend1 %.2f s (%.0f MiB written), resume %.2f s, tick %.2f s, suspend2 %.2f s (%.1f MiB written), dd %.2f s\n",
		mib, mode, r.suspend1, float64(r.bytes1)/(1<<20), r.resumeCont, r.resumeTick, r.suspend2, float64(r.bytes2)/(1<<20), r.dd)
	return r
}
