package ownerpid

import (
	"os"
	"path/filepath"
	"testing"
)

func TestOrphaned(t *testing.T) {
	dir := t.TempDir()
	mine := filepath.Join(dir, "mine")
	if err := Mark(mine); err != nil {
		t.Fatal(err)
	}
	gone := filepath.Join(dir, "gone")
	os.WriteFile(gone, []byte("4194305\n"), 0o600) // above pid_max: no such process
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("x"), 0o600)
	for path, want := range map[string]bool{mine: false, gone: true, bad: false, filepath.Join(dir, "missing"): false} {
		if got := Orphaned(path); got != want {
			t.Errorf("Orphaned(%s) = %v, want %v", filepath.Base(path), got, want)
		}
	}
}
