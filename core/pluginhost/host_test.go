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
