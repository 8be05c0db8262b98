// Package testlibvirt gives tests a real libvirtd: scripts/libvirtd.sh
// starts one (unless one answers already) and Stop, called from TestMain,
// stops it when this process was its last user.
package testlibvirt

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/soulpad/soulpad/internal/testbin"
)

var (
	once     sync.Once
	uri, msg string
	started  bool
	root     string
)

func script() *exec.Cmd {
	cmd := exec.Command(filepath.Join(root, "scripts", "libvirtd.sh"))
	cmd.Env = append(os.Environ(), "LIBVIRTD_SH_USER="+strconv.Itoa(os.Getpid()))
	return cmd
}

// Require returns the URI of a running libvirtd, starting one if needed.
// Without libvirtd installed the test is skipped, except in CI (CI set),
// where `make test` installs it and its absence is a failure.
func Require(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("libvirtd"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("libvirtd is not installed; `make test` installs it (scripts/deps.sh)")
		}
		t.Skip("libvirtd is not installed (scripts/deps.sh installs it)")
	}
	once.Do(func() {
		root = testbin.Root(t)
		cmd := script()
		cmd.Args = append(cmd.Args, "start")
		out, err := cmd.Output()
		if err != nil {
			msg = err.Error()
			if ee, ok := err.(*exec.ExitError); ok {
				msg += ": " + string(ee.Stderr)
			}
			return
		}
		started = true
		uri = strings.TrimSpace(string(out))
	})
	if uri == "" {
		t.Fatalf("scripts/libvirtd.sh start: %s", msg)
	}
	return uri
}

// Stop tells scripts/libvirtd.sh this process is done with the daemon.
func Stop() {
	if !started {
		return
	}
	cmd := script()
	cmd.Args = append(cmd.Args, "stop")
	_ = cmd.Run()
}
