package lifecycle

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A suspend that failed in a full vault says so, with what was written,
// what is free and what a point needs; in a vault with room, the failure
// is left as the VMM said it.
func TestAFullVaultIsSaid(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	defer exec.Command("umount", dir).Run()
	if msg := vaultFull(dir, 256<<20); msg != "" {
		t.Fatalf("an empty vault said %q", msg)
	}
	// The state filled the vault until a write failed.
	f, err := os.Create(filepath.Join(dir, "memory"))
	if err != nil {
		t.Fatal(err)
	}
	for buf := make([]byte, 64<<10); ; {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	msg := vaultFull(dir, 256<<20)
	for _, want := range []string{"the vault is full", "4.0 MiB written", "free of 4.0 MiB", "needs up to 256.0 MiB", "soulpad points prune", "pad.vault_size_mib"} {
		if !strings.Contains(msg, want) {
			t.Errorf("a full vault: %q lacks %q", msg, want)
		}
	}
}
