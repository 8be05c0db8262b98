package pad

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/soulpad/soulpad/internal/testguest"
)

// The check of a running copy takes its chunks as the guest or the
// read-ahead bring them into memory, without reading the pad before
// them; once none has come for a while, it takes the rest in order.
func TestTheCheckTakesChunksAsTheyComeIntoMemory(t *testing.T) {
	dir := testguest.XFSDir(t, 512<<20)
	path := filepath.Join(dir, "copy")
	data := make([]byte, 6*MappedChunkBytes)
	rand.Read(data)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Out of memory, as a copy fresh from the pad is.
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	// The "guest" touches chunk 3, then chunk 1.
	go func() {
		g, err := os.Open(path)
		if err != nil {
			return
		}
		defer g.Close()
		buf := make([]byte, MappedChunkBytes)
		time.Sleep(200 * time.Millisecond)
		g.ReadAt(buf, 3*MappedChunkBytes)
		time.Sleep(200 * time.Millisecond)
		g.ReadAt(buf, 1*MappedChunkBytes)
	}()
	var got []int64
	for i := range asTheyCome(f, MappedChunkBytes, int64(len(data)))(t.Context()) {
		got = append(got, i)
	}
	if want := []int64{3, 1, 0, 2, 4, 5}; !slices.Equal(got, want) {
		t.Fatalf("chunks checked in the order %v; want %v (the two the guest brought in first, the rest in order)", got, want)
	}
}
