package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/soulpad/soulpad/internal/testbin"
)

// The systemd unit in examples/ passes systemd-analyze verify (with
// ExecStart pointing at the soulpad under test), and the udev rule starts
// that unit for a SOULPAD-PAD partition.
func TestSystemdUnitAndUdevRule(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	bin := testbin.Build(t, "cmd/soulpad")
	root := testbin.Root(t)
	unit, err := os.ReadFile(filepath.Join(root, "examples", "systemd", "soulpad@.service"))
	if err != nil {
		t.Fatal(err)
	}
	verify := func(text string) (string, error) {
		p := filepath.Join(t.TempDir(), "soulpad@sdb4.service")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("systemd-analyze", "verify", p).CombinedOutput()
		return string(out), err
	}
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/soulpad", bin)
	if out, err := verify(text); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The check can fail: a misspelt key and a missing binary are caught.
	if out, err := verify(strings.Replace(text, "KillSignal=", "KilSignal=", 1)); err == nil && !strings.Contains(out, "Unknown key") {
		t.Fatalf("a misspelt key passed systemd-analyze verify: %s", out)
	}
	// Only the pad's path comes from the stick: the host's config, and a
	// mount that runs nothing.
	for _, want := range []string{"KillSignal=SIGTERM", "/usr/local/bin/soulpad run --config /etc/soulpad/site.hcl", "SOULPAD_PAD_PATH=${RUNTIME_DIRECTORY}/pad", "-o noexec,nosuid,nodev"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", want)
		}
	}

	rule, err := os.ReadFile(filepath.Join(root, "examples", "systemd", "90-soulpad.rules"))
	if err != nil {
		t.Fatal(err)
	}
	var active []string
	for _, l := range strings.Split(string(rule), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			active = append(active, l)
		}
	}
	if len(active) != 1 {
		t.Fatalf("the rule file has %d rules, want 1", len(active))
	}
	for _, want := range []string{`ACTION=="add"`, `SUBSYSTEM=="block"`, `ENV{ID_FS_LABEL}=="SOULPAD-PAD"`, `TAG+="systemd"`, `ENV{SYSTEMD_WANTS}+="soulpad@%k.service"`} {
		if !strings.Contains(active[0], want) {
			t.Errorf("the rule lacks %s: %s", want, active[0])
		}
	}
}
