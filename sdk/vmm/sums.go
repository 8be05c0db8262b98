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
// through: whole and per chunk. A plugin that streams state into a file
// wraps the file with it and returns Sum in SuspendResponse.Sums, so that
// the core need not read the file again.
type SumWriter struct {
	w      io.Writer
	name   string
	chunk  uint64
	n      uint64
	whole  hash.Hash
	part   hash.Hash
	inPart uint64
	chunks []string
}

// NewSumWriter returns a SumWriter for the file name (relative to the
// state directory) written through w, with chunks of chunkBytes
// (DefaultChunkBytes when 0).
func NewSumWriter(name string, w io.Writer, chunkBytes uint64) *SumWriter {
	if chunkBytes == 0 {
		chunkBytes = DefaultChunkBytes
	}
	return &SumWriter{w: w, name: name, chunk: chunkBytes, whole: sha256.New(), part: sha256.New()}
}

// Write implements io.Writer; it hashes what w accepted.
func (s *SumWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	b := p[:n]
	s.whole.Write(b)
	for len(b) > 0 {
		take := min(uint64(len(b)), s.chunk-s.inPart)
		s.part.Write(b[:take])
		s.inPart += take
		b = b[take:]
		if s.inPart == s.chunk {
			s.chunks = append(s.chunks, hex.EncodeToString(s.part.Sum(nil)))
			s.part.Reset()
			s.inPart = 0
		}
	}
	s.n += uint64(n)
	return n, err
}

// Sum is the FileSum of everything written so far.
func (s *SumWriter) Sum() FileSum {
	chunks := append([]string(nil), s.chunks...)
	if s.inPart > 0 {
		chunks = append(chunks, hex.EncodeToString(s.part.Sum(nil)))
	}
	return FileSum{Name: s.name, Size: s.n, SHA256: hex.EncodeToString(s.whole.Sum(nil)), ChunkBytes: s.chunk, ChunkSHA256: chunks}
}
