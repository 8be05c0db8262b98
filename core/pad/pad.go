// Package pad is the layout of a SoulPad pad and of the machines inside its
// unlocked vault: pad.json, the journal, suspend points and their sealed
// manifests.
//
//	pad/
//	  pad.json    identity, format version, plugins that made it
//	  vault…      the crypt plugin's cipher text
//	  plugins/    plugin binaries carried on the pad
//	  journal/    stage timings and events, JSON lines, no secrets
//	  lock        who works on the pad now (see LockPad)
package pad

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// FormatVersion is the pad layout version this code writes and reads.
const FormatVersion = 1

// StoreStateDir holds what a pad knows of its last sync with a store
// (core/isr); it is local to each pad and never copied.
const StoreStateDir = ".store"

// MetaFile is the pad's identity file.
const MetaFile = "pad.json"

// ErrNotAPad: there is no pad where one was looked for.
var ErrNotAPad = errors.New("no pad")

// PluginRef names the plugin (and its version) that made part of a pad.
type PluginRef struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Meta is pad.json.
type Meta struct {
	Format  int       `json:"format"`
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	// Vault is the vault's path relative to the pad.
	Vault string `json:"vault"`
	// Machine is the name of the machine in the vault.
	Machine string `json:"machine"`
	// Crypt is the crypt plugin that made the vault; only it can open it.
	Crypt PluginRef `json:"crypt"`
	// VMM is the VMM plugin the machine was made for.
	VMM PluginRef `json:"vmm"`
}

// Pad is an opened pad.
type Pad struct {
	Dir  string
	Meta Meta
}

// ValidID reports whether id is a pad ID: 16 lower-case hex digits.
func ValidID(id string) bool {
	if len(id) != 16 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// NewID returns a random identifier (16 hex digits).
func NewID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Create lays out a new pad in dir, which must be absent or empty (but
// for a lock file and a store's sync state, which a run that found no pad
// there leaves). The vault itself is made by the crypt plugin afterwards,
// at VaultPath.
func Create(dir string, meta Meta) (*Pad, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	ents = slices.DeleteFunc(ents, func(e fs.DirEntry) bool { return e.Name() == LockFile || e.Name() == StoreStateDir })
	if err == nil && len(ents) > 0 {
		if _, err := os.Stat(filepath.Join(dir, MetaFile)); err == nil {
			return nil, fmt.Errorf("create pad %s: a pad already exists there", dir)
		}
		return nil, fmt.Errorf("create pad %s: directory is not empty; choose an empty or new directory", dir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("create pad %s: %w", dir, err)
	}
	for _, d := range []string{dir, filepath.Join(dir, "journal"), filepath.Join(dir, "plugins")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create pad %s: %w", dir, err)
		}
	}
	meta.Format = FormatVersion
	if meta.ID == "" {
		meta.ID = NewID()
	}
	if meta.Created.IsZero() {
		meta.Created = time.Now().UTC()
	}
	if meta.Vault == "" {
		meta.Vault = "vault"
	}
	p := &Pad{Dir: dir, Meta: meta}
	if err := os.WriteFile(filepath.Join(dir, LockFile), nil, 0o600); err != nil {
		return nil, fmt.Errorf("create pad %s: %w", dir, err)
	}
	if err := p.writeMeta(); err != nil {
		return nil, err
	}
	return p, nil
}

// Open opens the pad in dir.
func Open(dir string) (*Pad, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, MetaFile))
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(dir); errors.Is(serr, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w at %s: that directory does not exist. Is the USB disk plugged in and mounted there? pad.path in the config (or SOULPAD_PAD_PATH) says where to look; `soulpad init` makes a new pad", ErrNotAPad, dir)
		}
		return nil, fmt.Errorf("%w at %s: the directory has no pad.json, so it is not a SoulPad pad; `soulpad init` makes one there if it is empty", ErrNotAPad, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("open pad %s: %w", dir, err)
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("open pad %s: pad.json is damaged: %w", dir, err)
	}
	if m.Format != FormatVersion {
		return nil, fmt.Errorf("open pad %s: format version %d; this soulpad reads version %d", dir, m.Format, FormatVersion)
	}
	if !ValidID(m.ID) {
		return nil, fmt.Errorf("open pad %s: pad.json is damaged: id %q is not 16 hex digits", dir, m.ID)
	}
	if m.Vault == "" || !filepath.IsLocal(m.Vault) {
		return nil, fmt.Errorf("open pad %s: pad.json is damaged: vault %q is not a path inside the pad", dir, m.Vault)
	}
	return &Pad{Dir: dir, Meta: m}, nil
}

func (p *Pad) writeMeta() error {
	b, err := json.MarshalIndent(p.Meta, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(p.Dir, MetaFile), append(b, '\n'), 0o600)
}

// VaultPath is where the crypt plugin keeps the cipher text.
func (p *Pad) VaultPath() string { return filepath.Join(p.Dir, p.Meta.Vault) }

// PluginDir is where plugins carried on the pad live.
func (p *Pad) PluginDir() string { return filepath.Join(p.Dir, "plugins") }

// JournalDir is where session journals live.
func (p *Pad) JournalDir() string { return filepath.Join(p.Dir, "journal") }
