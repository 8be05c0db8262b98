package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// stateCheck sums a saved state while QEMU loads it, reading ahead of
// QEMU through the same open file: QEMU's reads find the pages the check
// brought in (one page cache: the state is read from the pad once), the
// check hashes on CPUs QEMU does not use (no pipe to copy the state
// through a third time), and the guest does not run until it matched. A
// nil *stateCheck does nothing.
type stateCheck struct {
	want  vmm.FileSum
	f     *os.File
	sum   *vmm.SumWriter // sum of chunk sums (SumOfChunks)
	whole hash.Hash      // or the whole file's
	n     int64
	done  chan error
}

func findSum(sums []vmm.FileSum, name string) (vmm.FileSum, bool) {
	for _, s := range sums {
		if s.Name == name && s.OnLoad && len(s.SHA256) == 64 {
			return s, true
		}
	}
	return vmm.FileSum{}, false
}

// checkWhileLoading starts summing f (whose descriptor QEMU gets) as want
// was summed, up to a byte past want's size. It reads with pread, so f's
// offset stays at the start for QEMU.
func checkWhileLoading(f *os.File, want vmm.FileSum, count func(io.Writer) io.Writer) *stateCheck {
	c := &stateCheck{want: want, f: f, done: make(chan error, 1)}
	var w io.Writer
	if want.SumOfChunks && want.ChunkBytes > 0 {
		c.sum = vmm.NewSumWriter(want.Name, io.Discard, want.ChunkBytes)
		w = c.sum
	} else {
		c.whole = sha256.New()
		w = c.whole
	}
	go func() {
		// (struct{io.Reader} hides the section's WriteTo, if any: the
		// buffer sets the reads' size.)
		n, err := io.CopyBuffer(count(w), struct{ io.Reader }{io.NewSectionReader(f, 0, int64(want.Size)+1)}, make([]byte, 1<<20))
		c.n = n
		c.done <- err
	}()
	return c
}

// verify waits for the sum to end and compares it with the point's:
// the saved state on the pad changed unless they match.
func (c *stateCheck) verify(ctx context.Context) error {
	if c == nil {
		return nil
	}
	var err error
	select {
	case err = <-c.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	got := vmm.FileSum{Size: uint64(c.n)}
	if c.sum != nil {
		got = c.sum.Sum()
	} else {
		got.SHA256 = hex.EncodeToString(c.whole.Sum(nil))
	}
	if err != nil || got.Size != c.want.Size || got.SHA256 != c.want.SHA256 {
		return fmt.Errorf("%s does not match its checksum (its data on the pad changed since it was sealed): %w", c.want.Name, sdk.ErrCorrupt)
	}
	return nil
}
