package pad

import "github.com/soulpad/soulpad/sdk/vmm"

// FileSum is one file of a suspend point.
type FileSum struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// ChunkBytes and ChunkSHA256, when the VMM plugin computed them, are
	// the checksums of the file's chunks in order.
	ChunkBytes  int64    `json:"chunk_bytes,omitempty"`
	ChunkSHA256 []string `json:"chunk_sha256,omitempty"`
	// Mapped: the VMM plugin maps the file (guest RAM) rather than reading
	// it whole at resume; it is checked beside the running machine
	// (VerifyMapped), not before it (VerifyEager).
	Mapped bool `json:"mapped,omitempty"`
	// SumOfChunks: SHA256 is the SHA-256 of the chunks' SHA-256 sums
	// (as bytes, in order), not of the file's bytes. The core seals
	// mapped files so, hashing only the chunks that changed.
	SumOfChunks bool `json:"sum_of_chunks,omitempty"`
	// OnLoad: the VMM plugin checks the file against its sum as it loads
	// it at resume, before the machine runs; VerifyEager leaves it to it.
	OnLoad bool `json:"on_load,omitempty"`
}

// FileSumFrom is the manifest's record of a file the VMM plugin summed
// (vmm.FileSum, the same fields with the SDK's types).
func FileSumFrom(f vmm.FileSum) FileSum {
	return FileSum{Name: f.Name, Size: int64(f.Size), SHA256: f.SHA256, ChunkBytes: int64(f.ChunkBytes), ChunkSHA256: f.ChunkSHA256,
		Mapped: f.Mapped, SumOfChunks: f.SumOfChunks, OnLoad: f.OnLoad}
}

// VMM is the file's sum as the VMM plugin takes it (ResumeRequest.Sums).
func (f FileSum) VMM() vmm.FileSum {
	return vmm.FileSum{Name: f.Name, Size: uint64(f.Size), SHA256: f.SHA256, ChunkBytes: uint64(f.ChunkBytes), ChunkSHA256: f.ChunkSHA256,
		Mapped: f.Mapped, SumOfChunks: f.SumOfChunks, OnLoad: f.OnLoad}
}
