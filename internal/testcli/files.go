package testcli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/soulpad/soulpad/internal/fstree"
)

// DiskSector reads a 512-byte sector of the machine's current disk.
// For an encrypted vault, plainDir is where the test mounted it.
func DiskSector(t testing.TB, plainDir string, sector int) string {
	t.Helper()
	dir := filepath.Join(plainDir, "machines", "soul", "disks", "root")
	cur, err := os.ReadFile(filepath.Join(dir, "current"))
	if err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(t.TempDir(), "sector.raw")
	cmd := exec.Command("qemu-img", "dd", "-f", "qcow2", "-O", "raw", "bs=512", fmt.Sprintf("count=%d", sector+1), fmt.Sprintf("skip=%d", sector),
		"if="+strings.TrimSpace(string(cur)), "of="+raw)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("qemu-img dd: %v %s", err, b)
	}
	out, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) > 512 {
		out = out[len(out)-512:]
	}
	return strings.TrimRight(string(out), "\x00")
}

// TreeHash hashes every path and file under root.
func TreeHash(t testing.TB, root string) string {
	t.Helper()
	h, err := fstree.Hash(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func DuBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() {
			n += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
