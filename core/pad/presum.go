package pad

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrNoClone: the file system cannot clone a file (reflink) or say where
// its blocks are, so nothing can be hashed ahead of a suspend.
var ErrNoClone = errors.New("the vault's file system cannot clone files")

// Presum hashes the mapped file a machine runs on (running) while it
// runs, so that the suspend or checkpoint that comes later hashes only
// the chunks changed since. It writes back what the guest changed,
// clones running into shadow (a reflink: running's blocks as they are
// now) and sums shadow's chunks: a chunk whose blocks a ref holds takes
// the ref's sum; the rest are read from running, whose page cache holds
// them, so the pad is not read for them.
//
// A sum read after the clone is the shadow's too wherever it is ever
// used: a chunk the guest writes after the clone moves to new blocks
// (copy-on-write, as the shadow shares the old ones), so a file whose
// chunk still lies in the shadow's blocks was not written since the
// clone, and holds what the shadow holds. The shadow is then a Ref for
// Seal (Pending.Beside) and for the next Presum; nothing writes it, and
// it must stay until they return. workers bounds the CPUs used.
func Presum(ctx context.Context, running, shadow string, refs []Ref, workers int) (Ref, int64, error) {
	in, err := os.Open(running)
	if err != nil {
		return Ref{}, 0, err
	}
	defer in.Close()
	// The write-back while nothing is locked: the clone's own is short.
	if err := unix.Fdatasync(int(in.Fd())); err != nil {
		return Ref{}, 0, fmt.Errorf("write back %s: %w", running, err)
	}
	out, err := os.OpenFile(shadow, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return Ref{}, 0, err
	}
	defer out.Close()
	fail := func(err error) (Ref, int64, error) {
		_ = os.Remove(shadow)
		return Ref{}, 0, err
	}
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err != nil {
		return fail(fmt.Errorf("%w: clone %s: %v", ErrNoClone, running, err))
	}
	if _, err := fileExtents(out); err != nil {
		return fail(fmt.Errorf("%w: %v", ErrNoClone, err))
	}
	sum, hashed, err := sumChunksOf(ctx, out, in, running, refs, workers)
	if err != nil {
		_ = os.Remove(shadow)
		return Ref{}, hashed, err
	}
	sum.Name = ""
	return Ref{Path: shadow, Sum: sum}, hashed, nil
}
