// Package testbin builds the project's binaries (plugins, soulpad) for
// tests, once per test process, into a shared temporary directory.
package testbin

import (
	"github.com/soulpad/soulpad/sdk"
	_ "github.com/soulpad/soulpad/sdk/backup" // the kinds register themselves
	_ "github.com/soulpad/soulpad/sdk/crypt"
	_ "github.com/soulpad/soulpad/sdk/detect"
	_ "github.com/soulpad/soulpad/sdk/store"
	_ "github.com/soulpad/soulpad/sdk/vmm"

	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	mu    sync.Mutex
	dir   string
	built = map[string]string{}
)

// Root returns the module's root directory.
func Root(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// Build builds the main package at pkg (relative to the module root, e.g.
// "plugins/crypt-plain") and returns the binary's path; the binary is named
// after the package's last element. Plugins (named after their kind:
// crypt-…, vmm-…, for every kind sdk.Kinds knows) go to one directory per
// test process (Dir), so it can serve as a plugin directory; other
// programs to a sibling bin/.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "soulpad-testbin-")
		if err != nil {
			t.Fatal(err)
		}
		dir = d
	}
	// Plugins are named after their kind; anything else (commands, test
	// stand-ins for outside tools) goes beside them, not among them.
	sub := "bin"
	for _, k := range sdk.Kinds() {
		if strings.HasPrefix(filepath.Base(pkg), string(k)+"-") {
			sub = "plugins"
		}
	}
	out := filepath.Join(dir, sub, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, "./"+pkg)
	cmd.Dir = Root(t)
	cmd.Env = append(os.Environ(), "GOEXPERIMENT="+Experiments())
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	built[pkg] = out
	return out
}

// Dir is the directory Build puts plugins in ("" before the first
// Build); other programs go to a sibling bin/.
func Dir() string {
	mu.Lock()
	defer mu.Unlock()
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, "plugins")
}

// Cleanup removes the build directory; call it from TestMain after m.Run.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
}

// Experiments is GOEXPERIMENT as the Makefile builds the binaries that
// ship: this environment's, with runtimesecret (crypt-luks erases its key
// work with runtime/secret).
func Experiments() string {
	e := os.Getenv("GOEXPERIMENT")
	for _, x := range strings.Split(e, ",") {
		if x == "runtimesecret" {
			return e
		}
	}
	if e == "" {
		return "runtimesecret"
	}
	return e + ",runtimesecret"
}
