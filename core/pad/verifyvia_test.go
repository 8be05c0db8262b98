package pad

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// A resumed point's mapped file is checked through its running copy (the
// clone the guest runs on): an intact copy reads nothing of the point's
// own file; a chunk the guest changed reads that chunk of it, which
// decides; damage there is refused by chunk. Without a usable copy the
// point's file is read whole, as before.
func TestMappedFileCheckedThroughItsRunningCopy(t *testing.T) {
	root := t.TempDir()
	m := MachineIn(root, "soul")
	if err := m.Create(vmm.Spec{Name: "soul"}); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 8*MappedChunkBytes-4096)
	rand.Read(data)
	pt := sealedRAM(t, m, data)
	running := filepath.Join(root, "ram")
	if err := os.WriteFile(running, data, 0o600); err != nil {
		t.Fatal(err)
	}
	writeAt := func(path string, off int64, b []byte) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	copies := map[string]string{"memory.ram": running}
	if n, err := pt.VerifyMappedVia(ctx, copies); err != nil || n != 0 {
		t.Fatalf("an intact copy: read %d bytes of the point, %v; want 0, nil", n, err)
	}
	// The guest changes a page of chunk 3.
	writeAt(running, 3*MappedChunkBytes+8192, []byte("the guest wrote here"))
	if n, err := pt.VerifyMappedVia(ctx, copies); err != nil || n != MappedChunkBytes {
		t.Fatalf("a chunk the guest changed: read %d bytes of the point, %v; want %d, nil", n, err, MappedChunkBytes)
	}
	// The point's own chunk 3 is damaged too.
	point := filepath.Join(pt.Dir, "memory.ram")
	writeAt(point, 3*MappedChunkBytes+5, []byte{^data[3*MappedChunkBytes+5]})
	_, err := pt.VerifyMappedVia(ctx, copies)
	if !errors.Is(err, sdk.ErrCorrupt) || !strings.Contains(err.Error(), "chunk 3") || !strings.Contains(err.Error(), pt.Manifest.ID) {
		t.Fatalf("a damaged chunk the guest changed: %v; want the point refused, naming chunk 3", err)
	}
	// No copy, or one of another size: the point's file is read whole.
	short := filepath.Join(root, "short")
	if err := os.WriteFile(short, data[:MappedChunkBytes], 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []map[string]string{nil, {"memory.ram": short}} {
		n, err := pt.VerifyMappedVia(ctx, c)
		if !errors.Is(err, sdk.ErrCorrupt) || n < 3*MappedChunkBytes {
			t.Fatalf("copies %v: read %d bytes of the point, %v; want the damage found in the point's own file", c, n, err)
		}
	}
	writeAt(point, 3*MappedChunkBytes+5, data[3*MappedChunkBytes+5:3*MappedChunkBytes+6])
	if n, err := pt.VerifyMappedVia(ctx, nil); err != nil || n != int64(len(data)) {
		t.Fatalf("no copy, an intact point: read %d bytes, %v; want %d, nil", n, err, len(data))
	}
}
