package luks

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/soulpad/soulpad/sdk"
)

// Limits on what a header may ask of the key derivation, as cryptsetup
// allows them. A header is data on the pad: someone who held it could
// write one whose argon2 takes hours or all the RAM.
const (
	maxArgon2MemoryKiB = 4 << 20 // 4 GiB, cryptsetup's maximum
	maxArgon2Time      = 1000
	maxArgon2CPUs      = 16
	maxPBKDF2Iter      = 100_000_000
	luks2BinaryHeader  = 4096
	maxLUKS2Header     = 4 << 20
)

// kdfOf is a key slot's key derivation as the LUKS2 JSON gives it.
type kdfOf struct {
	Type       string `json:"type"`
	Time       uint64 `json:"time"`
	Memory     uint64 `json:"memory"`
	CPUs       uint64 `json:"cpus"`
	Iterations uint64 `json:"iterations"`
}

// checkKDFLimits reads the LUKS2 header at path and refuses key slots
// whose derivation is beyond cryptsetup's limits, before any is tried.
func checkKDFLimits(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	hdr := make([]byte, luks2BinaryHeader)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return nil // too short to be LUKS: luks.go says so
	}
	size, ok := luks2HeaderSize(hdr)
	if !ok {
		return nil // not LUKS2: luks.go says so
	}
	js := make([]byte, size-luks2BinaryHeader)
	if _, err := io.ReadFull(f, js); err != nil {
		return fmt.Errorf("crypt-luks: %s: the LUKS2 header is cut short: %w", path, sdk.ErrCorrupt)
	}
	return kdfLimits(js)
}

// luks2HeaderSize returns the whole header's size (binary + JSON).
func luks2HeaderSize(hdr []byte) (uint64, bool) {
	if len(hdr) < 16 || !bytes.Equal(hdr[:6], []byte("LUKS\xba\xbe")) || binary.BigEndian.Uint16(hdr[6:8]) != 2 {
		return 0, false
	}
	size := binary.BigEndian.Uint64(hdr[8:16])
	if size <= luks2BinaryHeader || size > maxLUKS2Header {
		return 0, false
	}
	return size, true
}

// kdfLimits checks the key slots of a LUKS2 JSON area (NUL-padded).
func kdfLimits(js []byte) error {
	js = bytes.TrimRight(js, "\x00")
	var meta struct {
		Keyslots map[string]struct {
			KDF kdfOf `json:"kdf"`
		} `json:"keyslots"`
	}
	if err := json.Unmarshal(js, &meta); err != nil {
		return fmt.Errorf("crypt-luks: the LUKS2 metadata is not JSON (%v): %w", err, sdk.ErrCorrupt)
	}
	var ids []string
	for id := range meta.Keyslots {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var errs []error
	for _, id := range ids {
		k := meta.Keyslots[id].KDF
		var why string
		switch k.Type {
		case "argon2i", "argon2id":
			switch {
			case k.Memory > maxArgon2MemoryKiB:
				why = fmt.Sprintf("argon2 memory %d KiB (at most %d)", k.Memory, maxArgon2MemoryKiB)
			case k.Time > maxArgon2Time:
				why = fmt.Sprintf("argon2 time %d (at most %d)", k.Time, maxArgon2Time)
			case k.CPUs > maxArgon2CPUs:
				why = fmt.Sprintf("argon2 threads %d (at most %d)", k.CPUs, maxArgon2CPUs)
			}
		case "pbkdf2":
			if k.Iterations > maxPBKDF2Iter {
				why = fmt.Sprintf("pbkdf2 iterations %d (at most %d)", k.Iterations, maxPBKDF2Iter)
			}
		}
		if why != "" {
			errs = append(errs, fmt.Errorf("key slot %s asks for %s", id, why))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("crypt-luks: the vault's header asks more of the key derivation than cryptsetup allows (a damaged or crafted header?): %w: %w", errors.Join(errs...), sdk.ErrCorrupt)
	}
	return nil
}
