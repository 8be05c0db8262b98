package pad

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/soulpad/soulpad/internal/ctxio"
	"github.com/soulpad/soulpad/sdk"
)

// MappedChunkBytes is the chunk size of a mapped file's checksums: a
// suspend hashes only the chunks the guest changed since the point it
// resumed from.
const MappedChunkBytes = 1 << 20

// Ref is a file whose chunk sums are known and whose blocks nobody
// writes while it is used: a sealed point's mapped file, or a shadow a
// running session cloned and hashed (Presum). A chunk of another file on
// the same file system that lies in the same device blocks as the ref's
// holds the same bytes (blocks shared by copy-on-write), so its sum is
// the ref's and it is not read.
type Ref struct {
	Path string
	Sum  FileSum
}

// fits says whether r's sums can stand for chunks of a file of size bytes.
func (r Ref) fits(size int64) bool {
	s := r.Sum
	if r.Path == "" || !s.SumOfChunks || s.ChunkBytes != MappedChunkBytes || s.Size != size {
		return false
	}
	for _, c := range s.ChunkSHA256 {
		if b, err := hex.DecodeString(c); err != nil || len(b) != sha256.Size {
			return false // a damaged manifest: hash everything
		}
	}
	return true
}

// sumChunks checksums the file at path in chunks of MappedChunkBytes; its
// SHA256 is the checksum of the chunks' checksums (SumOfChunks). A chunk
// that shares all its blocks with the same chunk of a ref (a reflinked
// copy on the same file system) is not read. hashed counts the bytes
// read.
func sumChunks(ctx context.Context, path string, refs []Ref) (FileSum, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return FileSum{}, 0, err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return FileSum{}, 0, fmt.Errorf("sync %s: %w", path, err)
	}
	return sumChunksOf(ctx, f, f, path, refs, runtime.GOMAXPROCS(0))
}

// sumChunksOf is sumChunks of the file whose blocks are mine's, reading
// what it must hash from read (mine itself, or the file mine was cloned
// from), on up to workers CPUs.
func sumChunksOf(ctx context.Context, mine, read *os.File, path string, refs []Ref, workers int) (FileSum, int64, error) {
	st, err := mine.Stat()
	if err != nil {
		return FileSum{}, 0, err
	}
	size := st.Size()
	// Where the file's blocks are: a chunk with none is a hole (guest
	// RAM never touched) and needs no reading either.
	exts, err := fileExtents(mine)
	mapped := err == nil
	type known struct {
		exts []extent
		sums []string
	}
	var theirs []known
	for _, r := range refs {
		if !mapped || !r.fits(size) {
			continue
		}
		if e, err := pathExtents(r.Path); err == nil {
			theirs = append(theirs, known{e, r.Sum.ChunkSHA256})
		}
	}
	n := (size + MappedChunkBytes - 1) / MappedChunkBytes
	out := FileSum{Size: size, ChunkBytes: MappedChunkBytes, SumOfChunks: true, ChunkSHA256: make([]string, n)}
	// The chunks to read.
	var todo []int64
	for i := int64(0); i < n; i++ {
		start, end := i*MappedChunkBytes, min((i+1)*MappedChunkBytes, size)
		if mapped && len(clip(exts, uint64(start), uint64(end))) == 0 {
			out.ChunkSHA256[i] = zeroSum(end - start)
			continue
		}
		for _, k := range theirs {
			if i < int64(len(k.sums)) && sameBlocks(exts, k.exts, start, end) {
				out.ChunkSHA256[i] = k.sums[i]
				break
			}
		}
		if out.ChunkSHA256[i] == "" {
			todo = append(todo, i)
		}
	}
	hashed, err := hashChunks(ctx, read, path, size, todo, out.ChunkSHA256, workers)
	if err != nil {
		return FileSum{}, hashed, err
	}
	root := sha256.New()
	for _, c := range out.ChunkSHA256 {
		b, _ := hex.DecodeString(c)
		root.Write(b)
	}
	out.SHA256 = hex.EncodeToString(root.Sum(nil))
	return out, hashed, nil
}

// hashChunks reads the chunks todo of f (size bytes) and puts their
// SHA-256 in sums, on up to workers CPUs (SHA-256 is the cost); it
// returns how many bytes it hashed.
func hashChunks(ctx context.Context, f *os.File, path string, size int64, todo []int64, sums []string, workers int) (int64, error) {
	var next atomic.Int64
	var hashed atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for w := 0; w < min(max(workers, 1), 8, len(todo)); w++ {
		g.Go(func() error {
			buf := make([]byte, MappedChunkBytes)
			for {
				k := next.Add(1) - 1
				if k >= int64(len(todo)) {
					return nil
				}
				if err := gctx.Err(); err != nil {
					return err
				}
				i := todo[k]
				start, end := i*MappedChunkBytes, min((i+1)*MappedChunkBytes, size)
				if _, err := f.ReadAt(buf[:end-start], start); err != nil && !errors.Is(err, io.EOF) {
					return fmt.Errorf("read %s: %w", path, err)
				}
				s := sha256.Sum256(buf[:end-start])
				sums[i] = hex.EncodeToString(s[:])
				hashed.Add(end - start)
			}
		})
	}
	err := g.Wait()
	return hashed.Load(), err
}

// maxChunkBytes bounds the chunk size a manifest may ask a reader to
// hold.
const maxChunkBytes = 64 << 20

var zeroSums sync.Map // length → hex SHA-256 of that many zero bytes

func zeroSum(n int64) string {
	if s, ok := zeroSums.Load(n); ok {
		return s.(string)
	}
	s := sha256.Sum256(make([]byte, n))
	h := hex.EncodeToString(s[:])
	zeroSums.Store(n, h)
	return h
}

// verifyChunks re-reads a file sealed by sumChunks.
func verifyChunks(ctx context.Context, path string, want FileSum) (FileSum, error) {
	if want.ChunkBytes <= 0 || want.ChunkBytes > maxChunkBytes {
		return FileSum{}, fmt.Errorf("%s: the manifest's chunk size %d is not one SoulPad writes: %w", path, want.ChunkBytes, sdk.ErrCorrupt)
	}
	f, err := os.Open(path)
	if err != nil {
		return FileSum{}, err
	}
	defer f.Close()
	root := sha256.New()
	var size int64
	r := ctxio.Reader{Ctx: ctx, R: f}
	buf := make([]byte, want.ChunkBytes)
	for {
		k, err := io.ReadFull(r, buf)
		if k > 0 {
			s := sha256.Sum256(buf[:k])
			root.Write(s[:])
			size += int64(k)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return FileSum{}, fmt.Errorf("read %s: %w", path, err)
		}
	}
	return FileSum{Size: size, SHA256: hex.EncodeToString(root.Sum(nil))}, nil
}

// extent is one mapping of a file's bytes to the device.
type extent struct {
	logical, physical, length uint64
}

// FIEMAP, from linux/fiemap.h.
const (
	fsIocFiemap        = 0xC020660B
	fiemapFlagSync     = 0x1
	fiemapExtentLast   = 0x1
	fiemapExtentUnsure = 0x2 | 0x4 | 0x8 | 0x80 | 0x100 | 0x200 | 0x400 // unknown, delalloc, encoded, encrypted, not aligned, inline, tail
	fiemapBatch        = 256
)

type fiemapExtent struct {
	Logical, Physical, Length uint64
	_                         [2]uint64
	Flags                     uint32
	_                         [3]uint32
}

type fiemapHeader struct {
	Start, Length                uint64
	Flags, Mapped, Count, Unused uint32
}

var errNoExtents = errors.New("the file system does not report where this file's blocks are")

func pathExtents(path string) ([]extent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return fileExtents(f)
}

// fileExtents lists where f's data lives (FIEMAP, after a sync). An
// extent whose place is not known for sure fails it.
func fileExtents(f *os.File) ([]extent, error) {
	var out []extent
	buf := make([]byte, int(unsafe.Sizeof(fiemapHeader{}))+fiemapBatch*int(unsafe.Sizeof(fiemapExtent{})))
	hdr := (*fiemapHeader)(unsafe.Pointer(&buf[0]))
	exts := unsafe.Slice((*fiemapExtent)(unsafe.Pointer(&buf[unsafe.Sizeof(fiemapHeader{})])), fiemapBatch)
	var start uint64
	for {
		clear(buf)
		*hdr = fiemapHeader{Start: start, Length: ^uint64(0) - start, Flags: fiemapFlagSync, Count: fiemapBatch}
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(&buf[0]))); e != 0 {
			return nil, fmt.Errorf("%w: %v", errNoExtents, e)
		}
		if hdr.Mapped == 0 {
			return out, nil
		}
		for _, x := range exts[:hdr.Mapped] {
			if x.Flags&fiemapExtentUnsure != 0 {
				return nil, errNoExtents
			}
			out = append(out, extent{logical: x.Logical, physical: x.Physical, length: x.Length})
			if x.Flags&fiemapExtentLast != 0 {
				return out, nil
			}
		}
		last := exts[hdr.Mapped-1]
		start = last.Logical + last.Length
	}
}

// sameBlocks says whether bytes [start, end) of two files live in the
// same device blocks (holes in both count as the same).
func sameBlocks(a, b []extent, start, end int64) bool {
	return slices.Equal(clip(a, uint64(start), uint64(end)), clip(b, uint64(start), uint64(end)))
}

// clip is the part of exts in [start, end), adjacent pieces merged.
func clip(exts []extent, start, end uint64) []extent {
	var out []extent
	i, _ := slices.BinarySearchFunc(exts, start, func(x extent, off uint64) int {
		switch {
		case x.logical+x.length <= off:
			return -1
		case x.logical > off:
			return 1
		}
		return 0
	})
	for ; i < len(exts) && exts[i].logical < end; i++ {
		x := exts[i]
		lo, hi := max(x.logical, start), min(x.logical+x.length, end)
		if lo >= hi {
			continue
		}
		e := extent{logical: lo, physical: x.physical + (lo - x.logical), length: hi - lo}
		if n := len(out); n > 0 && out[n-1].logical+out[n-1].length == e.logical && out[n-1].physical+out[n-1].length == e.physical {
			out[n-1].length += e.length
			continue
		}
		out = append(out, e)
	}
	return out
}
