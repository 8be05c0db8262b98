// Package testos gives tests a real operating system to put on a pad: the
// Debian 12 disk that scripts/debian-image.sh builds from Debian's
// packages and caches in .cache/debian.
package testos

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
	image            string
	buildErr, output string
)

// Debian returns the raw disk of the test Debian system (BIOS and UEFI
// boot), building it on first use (3 to 5 minutes, then cached). It skips
// the test where it cannot be built (not root, or no mmdebstrap), except
// in CI, where that is a failure.
func Debian(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "building the Debian test system needs root (mmdebstrap)")
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		skipOrFail(t, "mmdebstrap is not installed (make deps installs it)")
	}
	once.Do(func() {
		root := testbin.Root(t)
		out := filepath.Join(root, ".cache", "debian")
		b, err := exec.Command(filepath.Join(root, "scripts", "debian-image.sh"), out).CombinedOutput()
		if err != nil {
			buildErr, output = err.Error(), string(b)
			return
		}
		image = filepath.Join(out, "debian.raw")
	})
	if buildErr != "" {
		t.Fatalf("scripts/debian-image.sh: %s\n%s", buildErr, output)
	}
	return image
}

func skipOrFail(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(why)
	}
	t.Skip(why)
}
