package pad

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/soulpad/soulpad/internal/testguest"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// A mapped file is sealed in chunks; a second point made from a reflinked
// copy hashes only the chunks that changed, records the same sums a full
// read would, and its check still catches a changed chunk.
func TestSealHashesOnlyChangedChunksOfAMappedFile(t *testing.T) {
	root, m := xfsMachine(t)
	const chunks = 16
	running := filepath.Join(root, "ram")
	data := make([]byte, chunks*MappedChunkBytes-4096) // a short last chunk
	rand.Read(data)
	data = append(data[:5*MappedChunkBytes], make([]byte, len(data)-5*MappedChunkBytes)...) // zeros, as untouched RAM
	if err := os.WriteFile(running, data, 0o600); err != nil {
		t.Fatal(err)
	}
	seal := func(parent string) (Point, int64) {
		t.Helper()
		pend, err := m.NewPending()
		if err != nil {
			t.Fatal(err)
		}
		reflink(t, filepath.Join(pend.Dir(), "memory.ram"), running)
		pt, err := pend.Seal([]string{"memory.ram"}, Manifest{Parent: parent}, FileSum{Name: "memory.ram", Mapped: true})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // distinct point IDs
		return pt, pend.Hashed()
	}
	p1, hashed := seal("")
	if hashed != int64(len(data)) {
		t.Fatalf("the first point hashed %d bytes; want all %d (it has no parent)", hashed, len(data))
	}
	checkSums(t, p1.Manifest.Files[0], data)

	// The guest changes chunk 2 and a page in chunk 9 (a zero chunk).
	f, err := os.OpenFile(running, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{2*MappedChunkBytes + 100, 9*MappedChunkBytes + 8192} {
		b := make([]byte, 4096)
		rand.Read(b)
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
		copy(data[off:], b)
	}
	f.Close()
	p2, hashed := seal(p1.Manifest.ID)
	if hashed != 2*MappedChunkBytes {
		t.Fatalf("the second point hashed %d bytes; want the 2 changed chunks (%d)", hashed, 2*MappedChunkBytes)
	}
	checkSums(t, p2.Manifest.Files[0], data)
	if err := p2.Verify(); err != nil {
		t.Fatalf("verify: %v", err)
	}
	// A third point with no change reads nothing.
	if _, hashed := seal(p2.Manifest.ID); hashed != 0 {
		t.Fatalf("an unchanged file hashed %d bytes; want 0", hashed)
	}

	// A chunk changed behind the manifest's back (copy-on-write gives it
	// new blocks; its sum was reused) is caught.
	g, err := os.OpenFile(filepath.Join(p2.Dir, "memory.ram"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	g.WriteAt([]byte("bit rot"), 7*MappedChunkBytes)
	g.Close()
	if err := p2.Verify(); !errors.Is(err, sdk.ErrCorrupt) {
		t.Fatalf("verify after a change: %v; want ErrCorrupt", err)
	}
	if err := p1.VerifyMapped(t.Context()); err != nil {
		t.Fatalf("the parent was not touched, but: %v", err)
	}
}

// A parent whose manifest has damaged chunk sums, or another file size,
// is not trusted: everything is hashed.
func TestSealIgnoresABadParent(t *testing.T) {
	root, m := xfsMachine(t)
	running := filepath.Join(root, "ram")
	data := make([]byte, 4*MappedChunkBytes)
	rand.Read(data)
	os.WriteFile(running, data, 0o600)
	pend, _ := m.NewPending()
	reflink(t, filepath.Join(pend.Dir(), "memory.ram"), running)
	parent := FileSum{Name: "memory.ram", Size: int64(len(data)), ChunkBytes: MappedChunkBytes, SumOfChunks: true, ChunkSHA256: []string{"zz", "", "", ""}}
	man, _ := json.Marshal(Manifest{Format: FormatVersion, ID: "20260101T000000000Z-aaaaaa", Files: []FileSum{parent}})
	dir := filepath.Join(m.PointsDir(), "20260101T000000000Z-aaaaaa")
	os.MkdirAll(dir, 0o700)
	os.WriteFile(filepath.Join(dir, ManifestFile), man, 0o600)
	reflink(t, filepath.Join(dir, "memory.ram"), running)
	pt, err := pend.Seal([]string{"memory.ram"}, Manifest{Parent: "20260101T000000000Z-aaaaaa"}, FileSum{Name: "memory.ram", Mapped: true})
	if err != nil {
		t.Fatal(err)
	}
	if pend.Hashed() != int64(len(data)) {
		t.Fatalf("hashed %d bytes beside a damaged parent; want all %d", pend.Hashed(), len(data))
	}
	checkSums(t, pt.Manifest.Files[0], data)
}

func checkSums(t *testing.T, f FileSum, data []byte) {
	t.Helper()
	if !f.SumOfChunks || f.ChunkBytes != MappedChunkBytes || f.Size != int64(len(data)) {
		t.Fatalf("file sum %+v: want chunked, %d bytes", f, len(data))
	}
	root := sha256.New()
	for i := 0; i*MappedChunkBytes < len(data); i++ {
		s := sha256.Sum256(data[i*MappedChunkBytes : min((i+1)*MappedChunkBytes, len(data))])
		if got := f.ChunkSHA256[i]; got != hex.EncodeToString(s[:]) {
			t.Fatalf("chunk %d: sum %s; want %x", i, got, s)
		}
		root.Write(s[:])
	}
	if f.SHA256 != hex.EncodeToString(root.Sum(nil)) {
		t.Fatalf("whole sum %s is not the sum of the chunk sums", f.SHA256)
	}
}

// xfsMachine is a machine "soul" on a fresh XFS with reflink, and that
// file system's root.
func xfsMachine(t *testing.T) (string, *Machine) {
	t.Helper()
	root := testguest.XFSDir(t, 512<<20)
	m := MachineIn(root, "soul")
	if err := m.Create(vmm.Spec{Name: "soul"}); err != nil {
		t.Fatal(err)
	}
	return root, m
}

func reflink(t *testing.T, dst, src string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err != nil {
		t.Fatalf("FICLONE: %v", err)
	}
}

// clip keeps the part of a file's extents inside a range, merging pieces
// that continue each other on the device.
func TestClipExtents(t *testing.T) {
	exts := []extent{{0, 1000, 10}, {10, 1010, 10}, {30, 5000, 10}}
	got := clip(exts, 5, 35)
	want := []extent{{5, 1005, 15}, {30, 5000, 5}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("clip = %v; want %v", got, want)
	}
	if c := clip(exts, 20, 30); c != nil {
		t.Fatalf("a hole clips to %v; want nothing", c)
	}
	if !sameBlocks(exts, []extent{{0, 1000, 20}}, 0, 20) || sameBlocks(exts, []extent{{0, 1000, 20}}, 0, 40) {
		t.Fatal("sameBlocks disagrees with the extents")
	}
}

// RAM the guest never touched is a hole in the file: it is summed as
// zeros without being read.
func TestSealSkipsHoles(t *testing.T) {
	_, m := xfsMachine(t)
	pend, err := m.NewPending()
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 6*MappedChunkBytes)
	rand.Read(data[3*MappedChunkBytes+10 : 3*MappedChunkBytes+5000])
	f, err := os.Create(filepath.Join(pend.Dir(), "memory.ram"))
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(int64(len(data)))
	f.WriteAt(data[3*MappedChunkBytes:4*MappedChunkBytes], 3*MappedChunkBytes)
	f.Close()
	pt, err := pend.Seal([]string{"memory.ram"}, Manifest{}, FileSum{Name: "memory.ram", Mapped: true})
	if err != nil {
		t.Fatal(err)
	}
	if pend.Hashed() != MappedChunkBytes {
		t.Fatalf("hashed %d bytes of a file with one chunk of data; want %d", pend.Hashed(), MappedChunkBytes)
	}
	checkSums(t, pt.Manifest.Files[0], data)
	if err := pt.Verify(); err != nil {
		t.Fatal(err)
	}
}
