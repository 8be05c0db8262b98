// Package testguest gives tests the small demo guest (examples/guest) and
// checks that QEMU is there to run it.
package testguest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"

	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/sdk/vmm"
	"github.com/soulpad/soulpad/sdk/vmm/vmmtest"
)

var (
	once             sync.Once
	kernel, initrd   string
	buildErr, output string
)

// RequireQEMU skips the test when QEMU is not installed, except in CI
// (CI=true), where `make test` installs it and its absence is a failure.
func RequireQEMU(t testing.TB) {
	t.Helper()
	for _, b := range []string{"qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(b); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed; `make test` installs it (scripts/deps.sh)", b)
			}
			t.Skipf("%s is not installed (run scripts/deps.sh)", b)
		}
	}
}

// Build builds (or reuses) the guest and returns its kernel and initrd.
func Build(t testing.TB) (string, string) {
	t.Helper()
	RequireQEMU(t)
	once.Do(func() {
		root := testbin.Root(t)
		out := filepath.Join(root, ".cache", "guest")
		b, err := exec.Command(filepath.Join(root, "examples", "guest", "build.sh"), out).CombinedOutput()
		if err != nil {
			buildErr, output = err.Error(), string(b)
			return
		}
		kernel, initrd = filepath.Join(out, "vmlinuz"), filepath.Join(out, "initrd.img")
	})
	if buildErr != "" {
		t.Fatalf("examples/guest/build.sh: %s\n%s", buildErr, output)
	}
	return kernel, initrd
}

// Spec puts the guest's kernel and initrd in machineDir and describes the
// machine the VMM plugins' tests run: 128 MiB, the portable CPU under TCG,
// a 16 MiB qcow2 root disk, user networking, the console on ttyS0.
func Spec(t testing.TB, machineDir string) vmm.Spec {
	t.Helper()
	k, i := Build(t)
	for src, dst := range map[string]string{k: "kernel", i: "initrd"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(machineDir, dst), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return vmm.Spec{Name: "conformance", MemoryMiB: 128, VCPUs: 1, CPUModel: "portable", Accelerator: "tcg",
		Disks:   []vmm.Disk{{Name: "root", Path: "disk.qcow2", Format: "qcow2", SizeMiB: 16}},
		Network: "user", Display: "none", Kernel: "kernel", Initrd: "initrd", Cmdline: "console=ttyS0 quiet panic=-1"}
}

var counterRE = regexp.MustCompile(`soulpad-counter (\d+)`)

// Progress reads the guest's counter from the console log of a running
// machine (vmmtest.Options.Progress for the demo guest).
func Progress(_ context.Context, _ vmm.VMM, m vmmtest.Machine) (uint64, bool) {
	b, err := os.ReadFile(m.Console.Log)
	if err != nil {
		return 0, false
	}
	all := counterRE.FindAllSubmatch(b, -1)
	if len(all) == 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(all[len(all)-1][1]), 10, 64)
	return n, err == nil
}

// PowerOffSpec is Spec with a guest that powers itself off after three
// ticks (vmmtest.Options.PowerOffSpec).
func PowerOffSpec(t *testing.T, machineDir string) vmm.Spec {
	s := Spec(t, machineDir)
	s.Cmdline += " soulpad.poweroff_after=3"
	return s
}
