package qemu_test

import (
	"fmt"
	"testing"

	"github.com/soulpad/soulpad/internal/testguest"
	"github.com/soulpad/soulpad/internal/vmmbench"
	"github.com/soulpad/soulpad/plugins/vmm-qemu/qemu"
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
