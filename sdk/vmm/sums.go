package vmm

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"runtime"
	"sync"
)

// DefaultChunkBytes is the chunk size SumWriter uses by default (4 MiB).
const DefaultChunkBytes = 4 << 20

// SumWriter passes writes on to w and computes the FileSum of what went
// through: per chunk, and as the sum of those (SumOfChunks), so each byte
// is hashed once. A plugin that streams state into a file
// wraps the file with it and returns Sum in SuspendResponse.Sums, so that
// the core need not read the file again. Full chunks are hashed on every
// CPU while the writes go on, so the stream does not wait for one
// goroutine's SHA-256.
type SumWriter struct {
	w      io.Writer
	name   string
	chunk  uint64
	n      uint64
	inPart uint64
	chunks []*[sha256.Size]byte
	// Serial hashing (one CPU, or chunks too large to hold): part.
	part hash.Hash
	// Parallel hashing: the chunk being filled, the hashes running (at
	// most cap(sem)), and the buffers they give back.
	buf  []byte
	sem  chan struct{}
	wg   sync.WaitGroup
	pool sync.Pool
}

// SumWriter hashes chunks of minParallelChunk to maxParallelChunk bytes
// on other CPUs: it holds the larger ones in memory, and a goroutine for
// each of the smaller ones would cost more than their hash (a manifest
// may name any chunk size).
const (
	minParallelChunk = 64 << 10
	maxParallelChunk = 16 << 20
)

// NewSumWriter returns a SumWriter for the file name (relative to the
// state directory) written through w, with chunks of chunkBytes
// (DefaultChunkBytes when 0).
func NewSumWriter(name string, w io.Writer, chunkBytes uint64) *SumWriter {
	if chunkBytes == 0 {
		chunkBytes = DefaultChunkBytes
	}
	s := &SumWriter{w: w, name: name, chunk: chunkBytes}
	if n := runtime.GOMAXPROCS(0); n > 1 && chunkBytes >= minParallelChunk && chunkBytes <= maxParallelChunk {
		s.hashOn(n)
	} else {
		s.part = sha256.New()
	}
	return s
}

// hashOn makes s hash its chunks on up to n goroutines.
func (s *SumWriter) hashOn(n int) {
	s.sem = make(chan struct{}, n)
	s.pool.New = func() any { b := make([]byte, 0, s.chunk); return &b }
	s.buf = *s.pool.Get().(*[]byte)
	s.part = nil
}

// Write implements io.Writer; it hashes what w accepted.
func (s *SumWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	b := p[:n]
	for len(b) > 0 {
		take := min(uint64(len(b)), s.chunk-s.inPart)
		if s.sem != nil {
			s.buf = append(s.buf, b[:take]...)
		} else {
			s.part.Write(b[:take])
		}
		s.inPart += take
		b = b[take:]
		if s.inPart == s.chunk {
			s.endChunk()
		}
	}
	s.n += uint64(n)
	return n, err
}

// endChunk hashes the chunk just filled: at once, or on another CPU.
func (s *SumWriter) endChunk() {
	sum := new([sha256.Size]byte)
	s.chunks = append(s.chunks, sum)
	s.inPart = 0
	if s.sem == nil {
		s.part.Sum(sum[:0])
		s.part.Reset()
		return
	}
	buf := s.buf
	s.buf = (*s.pool.Get().(*[]byte))[:0]
	s.sem <- struct{}{}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		*sum = sha256.Sum256(buf)
		s.pool.Put(&buf)
		<-s.sem
	}()
}

// Sum is the FileSum of everything written so far.
func (s *SumWriter) Sum() FileSum {
	s.wg.Wait()
	chunks := make([][sha256.Size]byte, 0, len(s.chunks)+1)
	for _, c := range s.chunks {
		chunks = append(chunks, *c)
	}
	if s.inPart > 0 {
		if s.sem != nil {
			chunks = append(chunks, sha256.Sum256(s.buf))
		} else {
			chunks = append(chunks, [sha256.Size]byte(s.part.Sum(nil)))
		}
	}
	return SumOfChunkSums(s.name, s.n, s.chunk, chunks)
}

// SumOfChunkSums is the FileSum of a file of size bytes whose chunks of
// chunkBytes have the sums chunks: SHA256 is the SHA-256 of the chunk
// sums, as bytes, in order.
func SumOfChunkSums(name string, size, chunkBytes uint64, chunks [][sha256.Size]byte) FileSum {
	root := sha256.New()
	hexes := make([]string, len(chunks))
	for i, c := range chunks {
		root.Write(c[:])
		hexes[i] = hex.EncodeToString(c[:])
	}
	return FileSum{Name: name, Size: size, SHA256: hex.EncodeToString(root.Sum(nil)), ChunkBytes: chunkBytes, ChunkSHA256: hexes, SumOfChunks: true}
}
