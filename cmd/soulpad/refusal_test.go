package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/internal/testcli"
)

// A point made by one VMM plugin is refused by another before it starts,
// naming the VMM that made it and the way out (exit status 6); a lock
// left by another host is refused until break-lock.
func TestRefusalsNameTheWayOut(t *testing.T) {
	e := testcli.Setup(t) // vmm-counter
	testbin.Build(t, "plugins/vmm-qemu")
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	_, buf, done := e.StartRun(t)
	e.Run(t, "suspend")
	testcli.Wait(t, done, buf)
	t.Setenv("SOULPAD_PLUGINS_VMM", "vmm-qemu")
	_, errOut, code := e.Run(t, "run")
	for _, want := range []string{"made by vmm-counter", "machine a counter that ticks", `plugins.vmm = "vmm-counter"`, "--cold-boot", "nothing was changed"} {
		if code != 6 || !strings.Contains(errOut, want) {
			t.Errorf("resume with another VMM: exit %d; want 6 and %q:\n%s", code, want, errOut)
		}
	}
	t.Setenv("SOULPAD_PLUGINS_VMM", "vmm-counter")

	rec := `{"command":"run","pid":4242,"host":"walkup-pc-7","host_id":"0123","since":"2026-11-27T14:02:00Z"}`
	if err := os.WriteFile(filepath.Join(e.Pad, "lock"), []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := e.Run(t, "run"); code != 3 || !strings.Contains(errOut, "walkup-pc-7") || !strings.Contains(errOut, "soulpad break-lock") {
		t.Fatalf("a lock left by another host: exit %d %s", code, errOut)
	}
	if st, _, _ := e.Run(t, "status"); !strings.Contains(st, "walkup-pc-7") || !strings.Contains(st, "break-lock") {
		t.Fatalf("status:\n%s", st)
	}
	if out, errOut, code := e.Run(t, "break-lock"); code == 0 || !strings.Contains(errOut, "not confirmed") {
		t.Fatalf("break-lock without confirmation: %d %s %s", code, out, errOut)
	}
	if out, errOut, code := e.Run(t, "break-lock", "--yes"); code != 0 {
		t.Fatalf("break-lock --yes: %d %s %s", code, out, errOut)
	}
	_, buf, done = e.StartRun(t)
	e.Run(t, "suspend")
	testcli.Wait(t, done, buf)
	if !strings.Contains(buf.String(), "resumed ") {
		t.Fatalf("after break-lock:\n%s", buf.String())
	}
}

// A passphrase under 20 characters is refused by both encrypting crypt
// plugins with exit status 2, in words that end without the error's
// kind, and no pad is left behind.
func TestShortPassphraseIsRefusedByEveryCrypt(t *testing.T) {
	for _, crypt := range []string{"crypt-luks", "crypt-gocryptfs"} {
		t.Run(crypt, func(t *testing.T) {
			e := testcli.Setup(t)
			testbin.Build(t, "plugins/"+crypt)
			t.Setenv("SOULPAD_PLUGINS_CRYPT", crypt)
			pw := filepath.Join(t.TempDir(), "pw")
			if err := os.WriteFile(pw, []byte("short one\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, errOut, code := e.Run(t, "init", "--passphrase-file", pw)
			if code != 2 || !strings.Contains(errOut, "at least 20 characters (or use a key file)\n") {
				t.Fatalf("init with a 9-character passphrase: exit %d; want 2 and the rule, ending there:\n%s", code, errOut)
			}
			if _, err := os.Stat(filepath.Join(e.Pad, "pad.json")); err == nil {
				t.Fatal("a refused init left a pad behind")
			}
		})
	}
}
