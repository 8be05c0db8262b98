package qemu_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/internal/testguest"
	"github.com/soulpad/soulpad/plugins/vmm-qemu/qemu"
	"github.com/soulpad/soulpad/sdk/sdktest"
	"github.com/soulpad/soulpad/sdk/vmm"
	"github.com/soulpad/soulpad/sdk/vmm/vmmtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// guestSpec puts the demo guest in dir and describes it.
func guestSpec(t *testing.T, dir string) vmm.Spec {
	k, i := testguest.Build(t)
	copyFile(t, k, filepath.Join(dir, "kernel"))
	copyFile(t, i, filepath.Join(dir, "initrd"))
	return vmm.Spec{Name: "conformance", MemoryMiB: 128, VCPUs: 1, CPUModel: "portable", Accelerator: "tcg",
		Disks:   []vmm.Disk{{Name: "root", Path: "disk.qcow2", Format: "qcow2", SizeMiB: 16}},
		Network: "user", Display: "none", Kernel: "kernel", Initrd: "initrd", Cmdline: "console=ttyS0 quiet panic=-1"}
}

var opts = vmmtest.Options{Spec: guestSpec, Settle: 2 * time.Second}

func TestConformanceInProcess(t *testing.T) {
	testguest.RequireQEMU(t)
	vmmtest.Run(t, sdktest.InProcess(t, qemu.New()).(vmm.VMM), opts)
}

func TestConformanceBinary(t *testing.T) {
	testguest.RequireQEMU(t)
	vmmtest.Run(t, sdktest.Binary(t, testbin.Build(t, "plugins/vmm-qemu")).(vmm.VMM), opts)
}
