package isr

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/soulpad/soulpad/sdk/atomicfile"
)

// ErrUnsealed: a version does not carry the seal of the vault it holds:
// the store (or whoever can write to it) forged or spliced it.
var ErrUnsealed = errors.New("the version does not carry the vault's seal")

// SealKeyFile, in the unlocked vault, holds the key that seals the pad's
// versions: only someone who can open the vault can make a version the
// vault vouches for.
const SealKeyFile = "isr-seal.key"

// SealRecordFile, in the unlocked vault, records that the vault's
// versions are sealed: a version without a seal is then refused, not
// taken for one from before seals.
const SealRecordFile = "isr-seal.json"

// SealRecord is SealRecordFile's content.
type SealRecord struct {
	Sealed bool `json:"sealed"`
}

// SealKey reads the vault's seal key from the plaintext directory,
// making one the first time.
func SealKey(plaintextDir string) ([]byte, error) {
	p := filepath.Join(plaintextDir, SealKeyFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		b = make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		return b, atomicfile.WriteFile(p, b, 0o600)
	}
	if err != nil {
		return nil, fmt.Errorf("the vault's seal key: %w", err)
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("the vault's seal key is %d bytes, not 32: %w", len(b), ErrUnsealed)
	}
	return b, nil
}

// LoadSealRecord reads the vault's seal record (none yet: zero).
func LoadSealRecord(plaintextDir string) (SealRecord, error) {
	var r SealRecord
	b, err := os.ReadFile(filepath.Join(plaintextDir, SealRecordFile))
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	return r, err
}

// Save writes the seal record into the vault.
func (r SealRecord) Save(plaintextDir string) error {
	b, _ := json.Marshal(r)
	return atomicfile.WriteFile(filepath.Join(plaintextDir, SealRecordFile), b, 0o600)
}

// seal is the MAC of m (its Seal field left out) under key.
func (m Manifest) seal(key []byte) string {
	m.Seal = ""
	b, _ := json.Marshal(m)
	h := hmac.New(sha256.New, key)
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// Sign seals m with key.
func (m *Manifest) Sign(key []byte) { m.Seal = m.seal(key) }

// Verify checks m's seal against key: its number, parent, every file and
// every chunk are as the vault's holder wrote them. A manifest without a
// seal passes only while the vault has never sealed one (rec).
func (m *Manifest) Verify(key []byte, rec SealRecord) error {
	if m.Seal == "" {
		if rec.Sealed {
			return fmt.Errorf("version %d of %s carries no seal, but this vault seals its versions: the store made or stripped it: %w", m.Seq, m.Name, ErrUnsealed)
		}
		return nil
	}
	want, err := hex.DecodeString(m.seal(key))
	got, gerr := hex.DecodeString(m.Seal)
	if err != nil || gerr != nil || !hmac.Equal(want, got) {
		return fmt.Errorf("version %d of %s does not carry this vault's seal: the store forged or spliced it (its files, its chunks or its number are not the ones the vault's holder wrote): %w", m.Seq, m.Name, ErrUnsealed)
	}
	return nil
}
