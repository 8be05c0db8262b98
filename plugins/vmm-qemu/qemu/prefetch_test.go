package qemu

import (
	"os"
	"path/filepath"
	"testing"
)

// The read-ahead of the RAM file holds back while the guest faults
// (each piece waits for a quiet moment, up to prefetchYield), reads on
// when it is quiet, and ends either way.
func TestPrefetchYieldsToTheGuestsFaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ram")
	if err := os.WriteFile(path, make([]byte, 4*prefetchPiece), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(busy bool) (calls int) {
		var n uint64
		prefetch(t.Context(), path, func() uint64 {
			calls++
			if busy {
				n++ // the guest faults all the time
			}
			return n
		})
		return calls
	}
	quiet := run(false)
	if quiet != 1+4+1 { // once at the start, once before each piece and the end
		t.Fatalf("a quiet guest: %d looks at its faults; want one before each piece (6)", quiet)
	}
	perPiece := int(prefetchYield / prefetchQuiet)
	if busy := run(true); busy < 4*perPiece {
		t.Fatalf("a guest that faults all the time: %d looks at its faults; want the prefetch to wait %d times before each of 4 pieces", busy, perPiece)
	}
	if majorFaults(-1) != 0 {
		t.Fatal("a process that does not exist has faults")
	}
}

// The fault count is field 12 of /proc/pid/stat, after a name that may
// hold spaces and parentheses.
func TestStatMajorFaults(t *testing.T) {
	for line, want := range map[string]uint64{
		"4242 (qemu-system-x86) S 1 4242 4242 0 -1 4194560 91234 0 777 0 12 3 0 0 20 0 5 0 100 0 0": 777,
		"7 (a (b) c) R 1 7 7 0 -1 0 1 2 3 4": 3,
		"7 (short) R 1 2":                    0,
		"no parenthesis 1 2":                 0,
		"":                                   0,
	} {
		if got := statMajorFaults([]byte(line)); got != want {
			t.Errorf("%q: %d; want %d", line, got, want)
		}
	}
}

func FuzzStatMajorFaults(f *testing.F) {
	f.Add([]byte("4242 (qemu) S 1 4242 4242 0 -1 4194560 91234 0 777 0"))
	f.Add([]byte(")))"))
	f.Fuzz(func(t *testing.T, b []byte) { _ = statMajorFaults(b) })
}
