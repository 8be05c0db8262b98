// Package testguest gives tests the small demo guest (examples/guest) and
// checks that QEMU is there to run it.
package testguest

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/soulpad/soulpad/internal/testbin"
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
