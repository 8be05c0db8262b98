package pluginhost

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A plugin that someone else could have replaced is refused before it
// starts: it would run with soulpad's rights and see the passphrase.
func TestFindRefusesWritablePlugins(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plugins")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "crypt-x")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := New(nil, []string{dir}, nil)
	if _, err := h.Find("crypt-x"); err != nil {
		t.Fatalf("a plugin only its owner can write: %v", err)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{bin, 0o777}, {dir, 0o777}, {dir, 0o775}} {
		if err := os.Chmod(c.path, c.mode); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Find("crypt-x"); !errors.Is(err, ErrUntrusted) {
			t.Errorf("%s mode %v: %v; want ErrUntrusted", c.path, c.mode, err)
		}
		_ = os.Chmod(c.path, 0o755)
	}
	if os.Getuid() == 0 {
		if err := os.Chown(bin, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Find("crypt-x"); !errors.Is(err, ErrUntrusted) {
			t.Errorf("a plugin of nobody's: %v; want ErrUntrusted", err)
		}
	}
}

func TestPluginEnvKeepsOnlyWhatPluginsNeed(t *testing.T) {
	got := PluginEnv([]string{"PATH=/usr/bin", "SOULPAD_UNLOCK_PASSPHRASE_FILE=/x", "AWS_SECRET_ACCESS_KEY=s", "DISPLAY=:0", "HOME=/root", "PATHX=1"})
	want := []string{"PATH=/usr/bin", "DISPLAY=:0", "HOME=/root"}
	if len(got) != len(want) {
		t.Fatalf("env %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("env %v; want %v", got, want)
		}
	}
}

// A plugin the pad carries runs only when the host pins it or allows the
// pad's plugins; the host's own copy always wins; a name that is a path
// never reaches the file system.
func TestPadCarriedPluginsRunOnlyWhenPinnedOrAllowed(t *testing.T) {
	padDir := filepath.Join(t.TempDir(), "pad-plugins")
	hostDir := filepath.Join(t.TempDir(), "host-plugins")
	for _, d := range []string{padDir, hostDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(padDir, "crypt-x"), []byte("#!/bin/sh\n# the pad's\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := New(nil, []string{hostDir}, nil)
	h.Carried = padDir
	if _, err := h.Find("crypt-x"); !errors.Is(err, ErrCarried) {
		t.Fatalf("a plugin only on the pad: %v; want ErrCarried", err)
	}
	h.AllowCarried = true
	if b, err := h.Find("crypt-x"); err != nil || !b.Carried {
		t.Fatalf("with the pad's plugins allowed: %+v, %v", b, err)
	}
	h.AllowCarried = false
	sum, err := fileSHA256(filepath.Join(padDir, "crypt-x"))
	if err != nil {
		t.Fatal(err)
	}
	h.pins = map[string]string{"crypt-x": sum}
	if b, err := h.Find("crypt-x"); err != nil || !b.Pinned {
		t.Fatalf("a pinned plugin on the pad: %+v, %v", b, err)
	}
	h.pins = nil
	if err := os.WriteFile(filepath.Join(hostDir, "crypt-x"), []byte("#!/bin/sh\n# the host's\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := h.Find("crypt-x"); err != nil || b.Carried || b.Path != filepath.Join(hostDir, "crypt-x") {
		t.Fatalf("the host's own copy: %+v, %v", b, err)
	}
	for _, name := range []string{"../pad-plugins/crypt-x", "crypt/x", "Crypt-X", ".hidden", "-x", ""} {
		if _, err := h.Find(name); !errors.Is(err, ErrNotFound) {
			t.Errorf("Find(%q) = %v; want ErrNotFound", name, err)
		}
	}
	bins, err := h.List()
	if err != nil || len(bins) != 1 || bins[0].Carried {
		t.Fatalf("List: %+v, %v; want the host's crypt-x only", bins, err)
	}
}
