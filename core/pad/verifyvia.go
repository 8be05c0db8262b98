package pad

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/soulpad/soulpad/sdk"
)

// A resumed point's mapped file (guest RAM) has a running copy: the clone
// the VMM maps, which shares the point's blocks on the pad but not its
// page cache. Checking the point's own file would read RAM from the pad
// a second time, beside the guest's reads and the VMM's read-ahead of the
// copy. VerifyMappedVia reads the copy instead, through the cache the
// guest uses: a chunk that matches its sum is the sealed one. A chunk
// that does not was changed by the guest since the resume, or is
// damaged; only then is the point's own chunk read, and it decides.

// VerifyMappedVia is VerifyMapped reading each mapped file through its
// running copy (copies: the file's name → the copy's path) where there is
// one. It returns how many bytes it read from the point's own files.
func (p Point) VerifyMappedVia(ctx context.Context, copies map[string]string) (int64, error) {
	return p.VerifyMappedHeld(ctx, copies, nil)
}

// VerifyMappedHeld is VerifyMappedVia that waits between chunks while
// held says so (nil: never), e.g. while the session suspends: the check
// then takes neither the pad nor a CPU from the suspend.
func (p Point) VerifyMappedHeld(ctx context.Context, copies map[string]string, held func() bool) (int64, error) {
	var fromPoint int64
	for _, f := range p.Manifest.Files {
		if !f.Mapped {
			continue
		}
		path := filepath.Join(p.Dir, f.Name)
		cp, ok := copies[f.Name]
		if !ok || !chunkList(f) {
			fromPoint += f.Size
			if err := p.verify(ctx, func(g FileSum) bool { return g.Name == f.Name }); err != nil {
				return fromPoint, err
			}
			continue
		}
		n, err := verifyChunksVia(ctx, path, cp, f, held)
		fromPoint += n
		if err != nil {
			return fromPoint, p.fileErr(f, err)
		}
	}
	return fromPoint, nil
}

// chunkList says whether f's manifest entry lists its chunks' sums, and
// they make its sum.
func chunkList(f FileSum) bool {
	if !f.SumOfChunks || f.ChunkBytes <= 0 || f.ChunkBytes > maxChunkBytes || int64(len(f.ChunkSHA256)) != (f.Size+f.ChunkBytes-1)/f.ChunkBytes {
		return false
	}
	root := sha256.New()
	for _, c := range f.ChunkSHA256 {
		b, err := hex.DecodeString(c)
		if err != nil || len(b) != sha256.Size {
			return false
		}
		root.Write(b)
	}
	return hex.EncodeToString(root.Sum(nil)) == f.SHA256
}

// errChunk is a chunk of a point's file that does not match its sum.
type errChunk struct{ chunk int64 }

func (e errChunk) Error() string { return fmt.Sprintf("chunk %d does not match its checksum", e.chunk) }

// verifyChunksVia checks the file at path against want (a chunk list,
// chunkList) reading the running copy cp first; it reads a chunk of path
// only where cp's differs. A copy that cannot be read, or is not the
// file's size, is no help: path is read whole.
func verifyChunksVia(ctx context.Context, path, cp string, want FileSum, held func() bool) (fromPoint int64, err error) {
	pf, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer pf.Close()
	if st, err := pf.Stat(); err != nil || st.Size() != want.Size {
		if err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("%d bytes, the manifest says %d (truncated?): %w", st.Size(), want.Size, sdk.ErrCorrupt)
	}
	var rf *os.File
	if c, err := os.Open(cp); err == nil {
		defer c.Close()
		if st, err := c.Stat(); err == nil && st.Size() == want.Size && st.Mode().IsRegular() {
			rf = c
		}
	}
	buf := make([]byte, want.ChunkBytes)
	sumOf := func(f *os.File, i int64) (string, error) {
		start, end := i*want.ChunkBytes, min((i+1)*want.ChunkBytes, want.Size)
		if _, err := f.ReadAt(buf[:end-start], start); err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		s := sha256.Sum256(buf[:end-start])
		return hex.EncodeToString(s[:]), nil
	}
	check := func(i int64) error {
		sum := want.ChunkSHA256[i]
		if rf != nil {
			if got, err := sumOf(rf, i); err == nil && got == sum {
				return nil
			}
		}
		got, err := sumOf(pf, i)
		fromPoint += min(want.ChunkBytes, want.Size-i*want.ChunkBytes)
		if err != nil {
			return err
		}
		if got != sum {
			return errChunk{i}
		}
		return nil
	}
	order := inOrder(int64(len(want.ChunkSHA256)))
	if rf != nil {
		order = asTheyCome(rf, want.ChunkBytes, want.Size)
	}
	for i := range order(ctx) {
		for held != nil && held() && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		if err := check(i); err != nil {
			return fromPoint, err
		}
	}
	return fromPoint, ctx.Err()
}

// A chunk order: the chunks' numbers, each once, until ctx ends.
type chunkOrder func(ctx context.Context) iter.Seq[int64]

// inOrder is 0, 1, … n-1.
func inOrder(n int64) chunkOrder {
	return func(ctx context.Context) iter.Seq[int64] {
		return func(yield func(int64) bool) {
			for i := int64(0); i < n && ctx.Err() == nil; i++ {
				if !yield(i) {
					return
				}
			}
		}
	}
}

// How long the check waits for chunks of a running copy to come into
// memory before it reads them itself, and how often it looks.
const (
	settleWait = 2 * time.Second
	settleLook = 50 * time.Millisecond
)

// asTheyCome orders the chunks of the running copy f (size bytes) as
// they come into the page cache, brought in by the guest's faults or the
// VMM's read-ahead: a chunk whole in memory is checked without reading
// the pad, and the check does not queue reads of its own in front of the
// guest's. Once nothing has come in for settleWait (no read-ahead, or it
// ended), the rest follow in order, read from the pad.
func asTheyCome(f *os.File, chunk, size int64) chunkOrder {
	n := (size + chunk - 1) / chunk
	return func(ctx context.Context) iter.Seq[int64] {
		return func(yield func(int64) bool) {
			mem, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
			if err != nil || size == 0 || chunk%int64(os.Getpagesize()) != 0 {
				inOrder(n)(ctx)(yield)
				return
			}
			defer unix.Munmap(mem)
			vec := make([]byte, (chunk+int64(os.Getpagesize())-1)/int64(os.Getpagesize()))
			resident := func(i int64) bool {
				b := mem[i*chunk : min((i+1)*chunk, size)]
				v := vec[:(int64(len(b))+int64(os.Getpagesize())-1)/int64(os.Getpagesize())]
				if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&v[0]))); e != 0 {
					return true // cannot tell: read it
				}
				for _, p := range v {
					if p&1 == 0 {
						return false
					}
				}
				return true
			}
			pending := make([]int64, n)
			for i := range pending {
				pending[i] = int64(i)
			}
			progress := time.Now()
			for len(pending) > 0 && ctx.Err() == nil {
				stalled := time.Since(progress) > settleWait
				rest := pending[:0]
				for _, i := range pending {
					switch {
					case ctx.Err() != nil:
						return
					case stalled || resident(i):
						if !yield(i) {
							return
						}
						progress = time.Now()
					default:
						rest = append(rest, i)
					}
				}
				if pending = rest; len(pending) > 0 && !stalled {
					select {
					case <-ctx.Done():
					case <-time.After(settleLook):
					}
				}
			}
		}
	}
}

// fileErr says what went wrong reading the point's file f to check it.
func (p Point) fileErr(f FileSum, err error) error {
	var ec errChunk
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("suspend point %s: %s is missing: %w", p.Manifest.ID, f.Name, sdk.ErrCorrupt)
	case errors.Is(err, syscall.EIO):
		// An encrypting file system answers EIO for cipher text that
		// fails authentication.
		return fmt.Errorf("suspend point %s: %s cannot be read back: its data on the pad is damaged (the vault's cipher text fails authentication, or the disk has a bad block): %w", p.Manifest.ID, f.Name, sdk.ErrCorrupt)
	case errors.As(err, &ec):
		return fmt.Errorf("suspend point %s: %s does not match its checksum (%v): %w", p.Manifest.ID, f.Name, ec, sdk.ErrCorrupt)
	case errors.Is(err, sdk.ErrCorrupt):
		return fmt.Errorf("suspend point %s: %s is %w", p.Manifest.ID, f.Name, err)
	}
	return fmt.Errorf("suspend point %s: %w", p.Manifest.ID, err)
}
