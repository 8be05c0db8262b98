package vmm

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
)

// DefaultChunkBytes is the chunk size SumWriter uses by default (4 MiB).
const DefaultChunkBytes = 4 << 20

// SumWriter passes writes on to w and computes the FileSum of what went
// through: per chunk, and as the sum of those (SumOfChunks), so each byte
// is hashed once. A plugin that streams state into a file
// wraps the file with it and returns Sum in SuspendResponse.Sums, so that
// the core need not read the file again.
type SumWriter struct {
	w      io.Writer
	name   string
	chunk  uint64
	n      uint64
	part   hash.Hash
	inPart uint64
	chunks [][sha256.Size]byte
}

// NewSumWriter returns a SumWriter for the file name (relative to the
// state directory) written through w, with chunks of chunkBytes
// (DefaultChunkBytes when 0).
func NewSumWriter(name string, w io.Writer, chunkBytes uint64) *SumWriter {
	if chunkBytes == 0 {
		chunkBytes = DefaultChunkBytes
	}
	return &SumWriter{w: w, name: name, chunk: chunkBytes, part: sha256.New()}
}

// Write implements io.Writer; it hashes what w accepted.
func (s *SumWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	b := p[:n]
	for len(b) > 0 {
		take := min(uint64(len(b)), s.chunk-s.inPart)
		s.part.Write(b[:take])
		s.inPart += take
		b = b[take:]
		if s.inPart == s.chunk {
			s.chunks = append(s.chunks, [sha256.Size]byte(s.part.Sum(nil)))
			s.part.Reset()
			s.inPart = 0
		}
	}
	s.n += uint64(n)
	return n, err
}

// Sum is the FileSum of everything written so far.
func (s *SumWriter) Sum() FileSum {
	chunks := append([][sha256.Size]byte(nil), s.chunks...)
	if s.inPart > 0 {
		chunks = append(chunks, [sha256.Size]byte(s.part.Sum(nil)))
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
