package pad

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/soulpad/soulpad/internal/testguest"
	"github.com/soulpad/soulpad/sdk/vmm"
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

// While held (the session suspends), the check waits between chunks;
// once let go, it goes on and passes.
func TestTheCheckWaitsWhileHeld(t *testing.T) {
	root := t.TempDir()
	m := MachineIn(root, "soul")
	if err := m.Create(vmm.Spec{Name: "soul"}); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 4*MappedChunkBytes)
	rand.Read(data)
	pt := sealedRAM(t, m, data)
	running := filepath.Join(root, "ram")
	if err := os.WriteFile(running, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var hold atomic.Bool
	hold.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := pt.VerifyMappedHeld(t.Context(), map[string]string{"memory.ram": running}, hold.Load)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the check ended while held: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	hold.Store(false)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the check did not go on once let go")
	}
}

// sealedRAM is a point of m whose mapped file memory.ram holds data.
func sealedRAM(t *testing.T, m *Machine, data []byte) Point {
	t.Helper()
	pend, err := m.NewPending()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pend.Dir(), "memory.ram"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	pt, err := pend.Seal([]string{"memory.ram"}, Manifest{}, FileSum{Name: "memory.ram", Mapped: true})
	if err != nil {
		t.Fatal(err)
	}
	return pt
}
