package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/internal/testcli"
)

// credEnv is a pad whose vault is made by crypt-luks.
func credEnv(t *testing.T) (testcli.Env, string) {
	t.Helper()
	for _, b := range []string{"cryptsetup", "mkfs.ext4"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s missing", b)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("crypt-luks mounts its vault: needs root")
	}
	bin := testbin.Build(t, "cmd/soulpad")
	testbin.Build(t, "plugins/crypt-luks")
	testbin.Build(t, "internal/testplugins/vmm-counter")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "site.hcl")
	hcl := fmt.Sprintf(`
pad {
  path           = "pad"
  vault_size_mib = 64
}
machine { memory_mib = 64 }
plugins {
  dirs  = [%q]
  crypt = "crypt-luks"
  vmm   = "vmm-counter"
}
plugin "crypt-luks" {
  argon2_memory_kib = 8192
  argon2_iterations = 4
}
`, testbin.Dir())
	if err := os.WriteFile(cfg, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	return testcli.Env{Bin: bin, Cfg: cfg, Pad: filepath.Join(dir, "pad")}, dir
}

// opens reports whether cryptsetup itself accepts the secret in file.
func opens(t *testing.T, vault, file string) bool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("cryptsetup", "open", "--test-passphrase", "--key-file", "-", vault)
	cmd.Stdin = strings.NewReader(strings.TrimRight(string(b), "\n"))
	return cmd.Run() == nil
}

func TestCredentialAddChangeRemove(t *testing.T) {
	e, dir := credEnv(t)
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pass := write("pass", "the first passphrase of this pad\n")
	key := write("usb.key", "bytes on the second USB key, any length")
	pass2 := write("pass2", "a second passphrase, changed later\n")
	vault := filepath.Join(e.Pad, "vault")
	must := func(args ...string) string {
		t.Helper()
		out, errOut, code := e.Run(t, args...)
		if code != 0 {
			t.Fatalf("soulpad %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	must("init", "--passphrase-file", pass)

	out := must("credential", "add", "--passphrase-file", pass, "--new-key-file", key)
	if !strings.Contains(out, "added a key file") || !opens(t, vault, key) || !opens(t, vault, pass) {
		t.Fatalf("after add: %q; key opens %v, passphrase opens %v", out, opens(t, vault, key), opens(t, vault, pass))
	}
	// The wrong current credential changes nothing.
	if _, errOut, code := e.Run(t, "credential", "add", "--passphrase-file", pass2, "--new-passphrase-file", pass2); code == 0 || !strings.Contains(errOut, "passphrase") {
		t.Fatalf("add with a wrong current passphrase: exit %d %s", code, errOut)
	}
	if opens(t, vault, pass2) {
		t.Fatal("a refused add added a key slot")
	}

	out = must("credential", "change", "--passphrase-file", pass, "--new-passphrase-file", pass2)
	if !opens(t, vault, pass2) || opens(t, vault, pass) {
		t.Fatalf("after change: %q; new opens %v, old opens %v", out, opens(t, vault, pass2), opens(t, vault, pass))
	}

	must("credential", "remove", "--key-file", key, "--remove-passphrase-file", pass2)
	if opens(t, vault, pass2) || !opens(t, vault, key) {
		t.Fatal("remove: the passphrase still opens the vault, or the key file no longer does")
	}
	_, errOut, code := e.Run(t, "credential", "remove", "--key-file", key, "--remove-key-file", key)
	if code == 0 || !strings.Contains(errOut, "last one") {
		t.Fatalf("removing the last credential: exit %d %s", code, errOut)
	}
	if !opens(t, vault, key) {
		t.Fatal("the refused removal of the last credential removed it")
	}
	if j := must("journal"); !strings.Contains(j, "removed a passphrase") {
		t.Fatalf("journal lacks the credential changes:\n%s", j)
	}
}

// Ctrl-C while init fills a big crypt-luks vault stops it and leaves
// nothing behind: no pad directory, no plugin process, no FUSE mount.
func TestInitInterruptedLeavesNothing(t *testing.T) {
	e, dir := credEnv(t)
	hcl, err := os.ReadFile(e.Cfg)
	if err != nil {
		t.Fatal(err)
	}
	// 16 GiB: the fill alone takes far longer than the test waits.
	if err := os.WriteFile(e.Cfg, []byte(strings.Replace(string(hcl), "vault_size_mib = 64", "vault_size_mib = 16384", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	pass := filepath.Join(dir, "pass")
	if err := os.WriteFile(pass, []byte("the first passphrase of this pad\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp") // where the plugin mounts its payload
	os.Mkdir(tmp, 0o700)
	cmd := exec.Command(e.Bin, "init", "--passphrase-file", pass)
	cmd.Env = append(os.Environ(), "SOULPAD_CONFIG="+e.Cfg, "TMPDIR="+tmp)
	var out testcli.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Interrupt once init shows the container being filled.
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "writing the container end to end: ") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("init showed no progress of the vault's fill in 60 s:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("init did not stop within 30 s of Ctrl-C:\n%s", out.String())
	}
	t.Logf("init after Ctrl-C: %v\n%s", err, out.String())
	if err == nil {
		t.Fatal("init exited 0 after Ctrl-C")
	}
	if !strings.Contains(out.String(), "interrupted: the pad was not created") {
		t.Errorf("init did not say it was interrupted:\n%s", out.String())
	}
	if _, err := os.Stat(e.Pad); !os.IsNotExist(err) {
		ents, _ := os.ReadDir(e.Pad)
		t.Errorf("the pad directory is still there (%v): %v", err, ents)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), tmp) {
		t.Errorf("the plugin's FUSE mount is still there:\n%s", b)
	}
	if ps, _ := exec.Command("pgrep", "-f", filepath.Join(testbin.Dir(), "plugins", "crypt-luks")).Output(); len(ps) > 0 {
		t.Errorf("crypt-luks still running: %s", ps)
	}
}
