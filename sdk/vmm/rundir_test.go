package vmm

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
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
	// Made a moment ago by a plugin that is gone (killed at once): no
	// need to wait a minute. One whose plugin lives stays.
	orphan := mk("qemu-orphan", time.Now())
	os.WriteFile(filepath.Join(orphan, runDirOwner), []byte("4194305"), 0o600) // above pid_max: no such process
	mine, err := RunDir("qemu-", "qmp.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(mine)
	if _, err := os.Stat(filepath.Join(mine, runDirOwner)); err != nil {
		t.Fatalf("RunDir did not mark its directory: %v", err)
	}
	mineHere := mk("qemu-mine", time.Now())
	os.WriteFile(filepath.Join(mineHere, runDirOwner), []byte(strconv.Itoa(os.Getpid())), 0o600)
	other := mk("libvirt-dead", old)                   // another plugin's prefix
	if err := os.Chtimes(live, old, old); err != nil { // the socket made it new again
		t.Fatal(err)
	}
	SweepRunDirs(base, "qemu-", "qmp.sock")
	for _, d := range []string{dead, orphan} {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("%s, a dead QEMU's run directory (with the console log), is left", d)
		}
	}
	for _, d := range []string{live, young, mineHere, other} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed: %v", d, err)
		}
	}
}
