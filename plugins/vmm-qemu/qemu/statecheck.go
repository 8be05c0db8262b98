package qemu

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// stateCheck feeds a saved state to QEMU through a pipe and sums it on
// the way, so that the state is read once and checked before the guest
// runs. A nil *stateCheck does nothing (QEMU reads the file itself).
type stateCheck struct {
	want   vmm.FileSum
	pr, pw *os.File
	sum    *vmm.SumWriter // sum of chunk sums (SumOfChunks)
	whole  hash.Hash      // or the whole file's
	n      int64
	done   chan error
}

func findSum(sums []vmm.FileSum, name string) (vmm.FileSum, bool) {
	for _, s := range sums {
		if s.Name == name && s.OnLoad && len(s.SHA256) == 64 {
			return s, true
		}
	}
	return vmm.FileSum{}, false
}

// checkWhileLoading starts copying f into a pipe whose read end QEMU gets
// (fd), summing what goes through as want was summed.
func checkWhileLoading(f *os.File, want vmm.FileSum, count func(io.Writer) io.Writer) (*stateCheck, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	_, _ = unix.FcntlInt(pw.Fd(), unix.F_SETPIPE_SZ, 1<<20)
	c := &stateCheck{want: want, pr: pr, pw: pw, done: make(chan error, 1)}
	var w io.Writer
	if want.SumOfChunks && want.ChunkBytes > 0 {
		c.sum = vmm.NewSumWriter(want.Name, pw, want.ChunkBytes)
		w = c.sum
	} else {
		c.whole = sha256.New()
		w = io.MultiWriter(pw, c.whole)
	}
	go func() {
		// (struct{io.Reader} hides f's WriteTo, which would copy in
		// 32 KiB pieces.)
		n, err := io.CopyBuffer(count(w), struct{ io.Reader }{f}, make([]byte, 1<<20))
		c.n = n
		pw.Close() // EOF for QEMU; a pipe QEMU closed early fails the copy
		c.done <- err
	}()
	return c, nil
}

func (c *stateCheck) fd() int { return int(c.pr.Fd()) }

// sent: QEMU has its own copy of the read end.
func (c *stateCheck) sent() {
	if c != nil {
		c.pr.Close()
	}
}

// verify waits for the copy to end and compares what went through with
// the point's sum: the saved state on the pad changed (or QEMU stopped
// reading before its end) unless they match.
func (c *stateCheck) verify() error {
	if c == nil {
		return nil
	}
	var err error
	select {
	case err = <-c.done:
	case <-time.After(10 * time.Second):
		// QEMU loaded the machine without reading the whole file.
		return fmt.Errorf("the saved state has more than QEMU read: %w", sdk.ErrCorrupt)
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

// close stops the copy if it still runs.
func (c *stateCheck) close() {
	if c == nil {
		return
	}
	c.pr.Close()
	c.pw.Close()
}
