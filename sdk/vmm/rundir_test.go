package vmm

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Run directories of QEMUs that are gone are removed; a live one and one
// being set up stay.
func TestSweepRunDirs(t *testing.T) {
	base := t.TempDir()
	old := time.Now().Add(-2 * time.Minute)
	mk := func(name string, age time.Time) string {
		d := filepath.Join(base, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "console.log"), []byte("the guest's output"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(d, age, age); err != nil {
			t.Fatal(err)
		}
		return d
	}
	dead := mk("qemu-dead", old)
	live := mk("qemu-live", old)
	ln, err := net.Listen("unix", filepath.Join(live, "qmp.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	young := mk("qemu-young", time.Now())
	other := mk("libvirt-dead", old)                   // another plugin's prefix
	if err := os.Chtimes(live, old, old); err != nil { // the socket made it new again
		t.Fatal(err)
	}
	SweepRunDirs(base, "qemu-", "qmp.sock")
	if _, err := os.Stat(dead); err == nil {
		t.Error("a dead QEMU's run directory (with the console log) is left")
	}
	for _, d := range []string{live, young, other} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed: %v", d, err)
		}
	}
}
