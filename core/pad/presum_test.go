package pad

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// A running RAM file hashed ahead (Presum) leaves the suspend only the
// chunks written since; a chunk written between the clone and the read
// that hashed it is hashed again at the seal, so every sum sealed is the
// sealed bytes' own.
func TestPresumLeavesTheSuspendOnlyWhatChangedSince(t *testing.T) {
	root, m := xfsMachine(t)
	const chunks = 16
	running := filepath.Join(root, "ram")
	if err := sizeFile(running, chunks*MappedChunkBytes); err != nil {
		t.Fatal(err)
	}
	// The guest maps the file, as QEMU does, and touches 6 chunks.
	data := make([]byte, chunks*MappedChunkBytes)
	mem := mapFile(t, running, len(data))
	write := func(off int64, n int) {
		b := make([]byte, n)
		rand.Read(b)
		copy(mem[off:], b)
		copy(data[off:], b)
	}
	write(0, 6*MappedChunkBytes)

	shadows := filepath.Join(root, "presum")
	if err := os.Mkdir(shadows, 0o700); err != nil {
		t.Fatal(err)
	}
	ref1, hashed, err := Presum(t.Context(), running, filepath.Join(shadows, "1"), nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	if hashed != 6*MappedChunkBytes {
		t.Fatalf("the first round hashed %d bytes; want the 6 touched chunks (%d)", hashed, 6*MappedChunkBytes)
	}
	checkSums(t, ref1.Sum, data)

	// Chunk 2 changes; the next round hashes it alone.
	write(2*MappedChunkBytes+4096, 4096)
	ref2, hashed, err := Presum(t.Context(), running, filepath.Join(shadows, "2"), []Ref{ref1}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if hashed != MappedChunkBytes {
		t.Fatalf("the second round hashed %d bytes; want the one changed chunk", hashed)
	}
	checkSums(t, ref2.Sum, data)

	// A round whose read comes after the guest wrote to a chunk: the sum
	// is of the new bytes, while the shadow holds the old ones.
	shadow3 := filepath.Join(shadows, "3")
	reflink(t, shadow3, running)
	write(4*MappedChunkBytes, 100)
	sh, err := os.Open(shadow3)
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(running)
	if err != nil {
		t.Fatal(err)
	}
	sum3, _, err := sumChunksOf(t.Context(), sh, in, running, []Ref{ref2}, 1)
	sh.Close()
	in.Close()
	if err != nil {
		t.Fatal(err)
	}
	ref3 := Ref{Path: shadow3, Sum: sum3}

	// One more write after all rounds, in chunk 9, untouched so far.
	write(9*MappedChunkBytes+512, 512)
	// The suspend: the file moves into the point.
	pend, err := m.NewPending()
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Munmap(mem); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(running, filepath.Join(pend.Dir(), "memory.ram")); err != nil {
		t.Fatal(err)
	}
	pend.Beside("memory.ram", ref2, ref3)
	pt, err := pend.Seal([]string{"memory.ram"}, Manifest{}, FileSum{Name: "memory.ram", Mapped: true})
	if err != nil {
		t.Fatal(err)
	}
	// Chunk 4 (written after the third clone) and chunk 9.
	if pend.Hashed() != 2*MappedChunkBytes {
		t.Fatalf("the seal hashed %d bytes; want 2 chunks (%d)", pend.Hashed(), 2*MappedChunkBytes)
	}
	checkSums(t, pt.Manifest.Files[0], data)
	if err := pt.VerifyMapped(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// On a file system that cannot clone, Presum says so and leaves nothing.
func TestPresumNeedsClones(t *testing.T) {
	dir := t.TempDir() // tmpfs or ext4 here: no reflink
	running := filepath.Join(dir, "ram")
	if err := sizeFile(running, 4*MappedChunkBytes); err != nil {
		t.Fatal(err)
	}
	probe := filepath.Join(dir, "probe")
	if err := cloneProbe(running, probe); err == nil {
		t.Skip("this temporary directory's file system clones files")
	}
	_, _, err := Presum(t.Context(), running, filepath.Join(dir, "shadow"), nil, 1)
	if !errors.Is(err, ErrNoClone) {
		t.Fatalf("Presum without reflink: %v; want ErrNoClone", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "shadow")); !os.IsNotExist(err) {
		t.Fatalf("the shadow was left behind: %v", err)
	}
}

func sizeFile(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Truncate(size)
}

func cloneProbe(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer os.Remove(dst)
	defer out.Close()
	return unix.IoctlFileClone(int(out.Fd()), int(in.Fd()))
}

func mapFile(t *testing.T, path string, n int) []byte {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	return mem
}
