package vmm

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/soulpad/soulpad/sdk"
)

func TestResultIsLeftAndReadBack(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadResult(dir); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("no result: %v", err)
	}
	r := SuspendResponse{Files: []string{"state.bin", "memory.ram"}, Description: `{"m":1}`, Machine: "QEMU 7.2",
		Sums:   []FileSum{{Name: "state.bin", Size: 10, SHA256: "ab", OnLoad: true}, {Name: "memory.ram", Mapped: true}},
		Phases: []Phase{{Name: "stop", Seconds: 0.1}}}
	if err := WriteResult(dir, r); err != nil {
		t.Fatal(err)
	}
	got, err := ReadResult(dir)
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("read back %+v, %v; wrote %+v", got, err, r)
	}
}

func FuzzReadResult(f *testing.F) {
	f.Add([]byte(`{"Files":["state.bin"],"Description":"x"}`))
	f.Add([]byte(`{"Files":[]}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ResultFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := ReadResult(dir)
		if err == nil && len(r.Files) == 0 {
			t.Fatal("a result naming no files was taken")
		}
		if err != nil && !errors.Is(err, sdk.ErrCorrupt) {
			t.Fatalf("a bad result is not called corrupt: %v", err)
		}
	})
}
