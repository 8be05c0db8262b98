package lv_test

import (
	"fmt"
	"testing"

	"github.com/soulpad/soulpad/internal/testlibvirt"
	"github.com/soulpad/soulpad/internal/vmmbench"
	"github.com/soulpad/soulpad/plugins/vmm-libvirt/lv"
	"github.com/soulpad/soulpad/plugins/vmm-qemu/qemu"
	"github.com/soulpad/soulpad/sdk/sdktest"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// BenchmarkSuspendResumeBesideQEMU runs the same guest and sizes on the
// libvirt backend and on the QEMU backend in the same run, and prints
// libvirt's suspend and resume times as multiples of QEMU's:
//
//	make bench   (or: go test -run '^$' -bench BesideQEMU -benchtime 1x ./plugins/vmm-libvirt/lv)
func BenchmarkSuspendResumeBesideQEMU(b *testing.B) {
	uri := testlibvirt.Require(b)
	for _, mib := range []uint64{256, 1024} {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				q := vmmbench.Cycle(b, sdktest.InProcess(b, qemu.New(sdktest.Logger(b, "vmm-qemu"))).(vmm.VMM), nil, qemu.StateFile, mib)
				l := vmmbench.Cycle(b, sdktest.InProcess(b, lv.New()).(vmm.VMM), []byte(`{"uri": "`+uri+`"}`), lv.StateFile, mib)
				b.ReportMetric(l.Suspend.Seconds(), "libvirt-suspend-s")
				b.ReportMetric(l.Resume.Seconds(), "libvirt-resume-s")
				b.ReportMetric(q.Suspend.Seconds(), "qemu-suspend-s")
				b.ReportMetric(q.Resume.Seconds(), "qemu-resume-s")
				b.ReportMetric(l.Suspend.Seconds()/q.Suspend.Seconds(), "libvirt/qemu-suspend")
				b.ReportMetric(l.Resume.Seconds()/q.Resume.Seconds(), "libvirt/qemu-resume")
				fmt.Printf("%4d MiB guest (%d MiB dirtied): suspend libvirt %.3f s (state %.1f MiB) vs qemu %.3f s (%.1f MiB): %.2fx; resume libvirt %.3f s vs qemu %.3f s: %.2fx\n",
					mib, l.DirtyMiB, l.Suspend.Seconds(), float64(l.StateBytes)/(1<<20), q.Suspend.Seconds(), float64(q.StateBytes)/(1<<20),
					l.Suspend.Seconds()/q.Suspend.Seconds(), l.Resume.Seconds(), q.Resume.Seconds(), l.Resume.Seconds()/q.Resume.Seconds())
				fmt.Printf("  libvirt: suspend %s; resume %s\n  qemu:    suspend %s; resume %s\n", vmm.FormatPhases(l.SuspendPhases), vmm.FormatPhases(l.ResumePhases),
					vmm.FormatPhases(q.SuspendPhases), vmm.FormatPhases(q.ResumePhases))
			}
		})
	}
}
