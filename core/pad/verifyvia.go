package pad

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

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
		n, err := verifyChunksVia(ctx, path, cp, f)
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
func verifyChunksVia(ctx context.Context, path, cp string, want FileSum) (fromPoint int64, err error) {
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
	for i, sum := range want.ChunkSHA256 {
		if err := ctx.Err(); err != nil {
			return fromPoint, err
		}
		if rf != nil {
			if got, err := sumOf(rf, int64(i)); err == nil && got == sum {
				continue
			}
		}
		got, err := sumOf(pf, int64(i))
		fromPoint += min(want.ChunkBytes, want.Size-int64(i)*want.ChunkBytes)
		if err != nil {
			return fromPoint, err
		}
		if got != sum {
			return fromPoint, errChunk{int64(i)}
		}
	}
	return fromPoint, nil
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
