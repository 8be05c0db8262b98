//go:build linux

// Package secmem keeps key material out of the places a borrowed PC or
// another local user could find it: swap, core dumps, other processes'
// reach through ptrace and /proc, and forked children.
//
// A process that handles passphrases or keys calls Harden once at start.
// Buffers that hold a key for a while come from Alloc: locked in RAM,
// left out of core dumps, cleared in a forked child, and wiped by Free.
// Go's heap cannot be wiped after the fact, so code that must hold a key
// keeps it in such a buffer and copies it nowhere else.
package secmem

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Status says what Harden did.
type Status struct {
	// Undumpable: no core dump, and no ptrace or /proc/<pid>/mem by
	// other users (PR_SET_DUMPABLE 0).
	Undumpable bool
	// Locked: all the process's memory, now and later, stays in RAM
	// (mlockall), so nothing of it reaches swap.
	Locked bool
	// Why Locked is false, when it is.
	NotLocked string
}

// Harden makes the process undumpable and, when it may lock memory
// without limit (CAP_IPC_LOCK, as root has, or an unlimited
// RLIMIT_MEMLOCK), locks all of it in RAM. Under a finite lock limit it
// does not lock: Go's runtime maps its heap in large steps and would run
// out of memory at the limit. It never fails the process: Status says
// what it could do.
func Harden() Status {
	var s Status
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err == nil {
		s.Undumpable = true
	}
	if ok, why := mayLockAll(); !ok {
		s.NotLocked = why
		return s
	}
	// MCL_ONFAULT: pages are locked as they are first touched, so the
	// heap's reserved address space is not faulted in all at once.
	if err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE | unix.MCL_ONFAULT); err != nil {
		s.NotLocked = "mlockall: " + err.Error()
		return s
	}
	s.Locked = true
	return s
}

// mayLockAll says whether this process may lock any amount of memory.
func mayLockAll() (bool, string) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err == nil && lim.Cur == unix.RLIM_INFINITY {
		return true, ""
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, "capget: " + err.Error()
	}
	if data[unix.CAP_IPC_LOCK/32].Effective&(1<<(unix.CAP_IPC_LOCK%32)) != 0 {
		return true, ""
	}
	return false, fmt.Sprintf("no CAP_IPC_LOCK and a lock limit of %d bytes (ulimit -l)", lim.Cur)
}

// ErrTooLarge is returned by Alloc for a buffer over MaxAlloc.
var ErrTooLarge = errors.New("secmem: buffer too large")

// MaxAlloc is the largest buffer Alloc gives: keys and round keys, not
// data.
const MaxAlloc = 1 << 20

var (
	mu   sync.Mutex
	live = map[*byte]int{} // buffer start → mapped length
)

// Alloc returns n zero bytes in their own pages, locked in RAM when the
// lock limit allows, never in a core dump, and zeroed in a forked child.
// Free wipes and releases them; until then they are not moved or copied
// by Go's runtime.
func Alloc(n int) ([]byte, error) {
	if n <= 0 || n > MaxAlloc {
		return nil, fmt.Errorf("%w: %d bytes (1..%d)", ErrTooLarge, n, MaxAlloc)
	}
	page := os.Getpagesize()
	size := (n + page - 1) / page * page
	m, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("secmem: mmap %d bytes: %w", size, err)
	}
	// Best effort under a small lock limit; Harden's mlockall covers it
	// where it runs.
	_ = unix.Mlock(m)
	if err := unix.Madvise(m, unix.MADV_DONTDUMP); err != nil {
		_ = unix.Munmap(m)
		return nil, fmt.Errorf("secmem: madvise(MADV_DONTDUMP): %w", err)
	}
	_ = unix.Madvise(m, unix.MADV_WIPEONFORK) // Linux 4.14+
	mu.Lock()
	live[&m[0]] = size
	mu.Unlock()
	return m[:n:n], nil
}

// Free wipes b and releases its pages. b must come from Alloc; Free of
// nil, or twice, does nothing.
func Free(b []byte) {
	if cap(b) == 0 {
		return
	}
	b = b[:cap(b)]
	mu.Lock()
	size, ok := live[&b[0]]
	delete(live, &b[0])
	mu.Unlock()
	if !ok {
		clear(b)
		return
	}
	m := unsafeSlice(&b[0], size)
	clear(m)
	_ = unix.Munlock(m)
	_ = unix.Munmap(m)
}
