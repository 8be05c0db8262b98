package lifecycle

import (
	"context"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// TestRoomToRunNeedsTheMachinesRAM: on a vault (here a tmpfs of 100 MiB)
// with less free than the machine's RAM and a margin, roomToRun says so,
// with the figures and what to do; with room, it says nothing.
func TestRoomToRunNeedsTheMachinesRAM(t *testing.T) {
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=100m"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	m := &pad.Machine{Dir: dir, Name: "soul"}
	if err := os.MkdirAll(m.PointsDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	var said []string
	s := &Session{Vault: &Vault{machine: m, r: &runner{progress: func(f string, a ...any) { said = append(said, f) }}}}
	s.spec = vmm.Spec{MemoryMiB: 128}
	why := s.roomToRun(context.Background())
	if !strings.Contains(why, "the vault has") || !strings.Contains(why, "128.0 MiB of RAM") || !strings.Contains(why, "soulpad points") {
		t.Fatalf("128 MiB of RAM in 100 MiB of vault: %q", why)
	}
	s.spec = vmm.Spec{MemoryMiB: 16}
	if why := s.roomToRun(context.Background()); why != "" {
		t.Fatalf("16 MiB of RAM in 100 MiB of vault: %q", why)
	}
}
