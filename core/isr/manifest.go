// Package isr is Internet Suspend/Resume on a store plugin: the locked pad
// is cut into content-addressed chunks (vault cipher text with its sealed
// points, pad.json — never plaintext, the journal or plugins), a version
// is a manifest of the pad's files and their chunks, sealed with a key
// only the vault holds, and a copy moves only the chunks one side lacks.
// The local pad is the chunk cache ("hoard"): .store/state.json in it
// records which version it holds and what each file's chunks were.
package isr

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/soulpad/soulpad/sdk/store"
)

// ManifestFormat is the version manifest layout this code writes.
const ManifestFormat = 1

// DefaultChunkBytes is the chunk size of new versions.
const DefaultChunkBytes = 1 << 20

// Manifest is one version of a pad.
type Manifest struct {
	Format     int       `json:"format"`
	Name       string    `json:"name"`
	Seq        uint64    `json:"seq"`
	Parent     uint64    `json:"parent,omitempty"`
	Created    time.Time `json:"created"`
	Host       string    `json:"host"`
	ChunkBytes int64     `json:"chunk_bytes"`
	Dirs       []string  `json:"dirs,omitempty"`
	Files      []File    `json:"files"`
	// Seal is the HMAC-SHA256 of the manifest (this field empty) under
	// the vault's seal key (SealKey): the vault vouches for the version.
	Seal string `json:"seal,omitempty"`
}

// File is one file of the locked pad.
type File struct {
	// Path is relative to the pad, slash-separated.
	Path   string   `json:"path"`
	Size   int64    `json:"size"`
	Mode   uint32   `json:"mode"`
	Chunks []string `json:"chunks"`
}

// Bytes is the pad's size.
func (m *Manifest) Bytes() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// limits of a manifest read from a store.
const (
	maxFiles      = 1 << 20
	maxChunkBytes = 64 << 20
	maxFileBytes  = 1 << 44
)

// ParseManifest reads and checks a manifest from a store: anything a
// damaged or hostile store could use to write outside the pad, or to make
// the copy-in allocate without bound, is refused.
func ParseManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("version manifest: %w", err)
	}
	if m.Format != ManifestFormat {
		return nil, fmt.Errorf("version manifest: format %d; this soulpad reads %d (upgrade soulpad)", m.Format, ManifestFormat)
	}
	if !store.ValidName(m.Name) {
		return nil, fmt.Errorf("version manifest: bad pad name %q", m.Name)
	}
	if m.ChunkBytes <= 0 || m.ChunkBytes > maxChunkBytes {
		return nil, fmt.Errorf("version manifest: chunk size %d out of range", m.ChunkBytes)
	}
	if len(m.Files) > maxFiles {
		return nil, fmt.Errorf("version manifest: %d files", len(m.Files))
	}
	seen := map[string]bool{}
	for _, d := range m.Dirs {
		if err := checkPath(d); err != nil {
			return nil, err
		}
	}
	for _, f := range m.Files {
		if err := checkPath(f.Path); err != nil {
			return nil, err
		}
		if seen[f.Path] {
			return nil, fmt.Errorf("version manifest: %s listed twice", f.Path)
		}
		seen[f.Path] = true
		if f.Size < 0 || f.Size > maxFileBytes {
			return nil, fmt.Errorf("version manifest: %s: size %d out of range", f.Path, f.Size)
		}
		if want := (f.Size + m.ChunkBytes - 1) / m.ChunkBytes; int64(len(f.Chunks)) != want {
			return nil, fmt.Errorf("version manifest: %s: %d chunks for %d bytes (want %d)", f.Path, len(f.Chunks), f.Size, want)
		}
		for _, c := range f.Chunks {
			if !store.ValidSum(c) {
				return nil, fmt.Errorf("version manifest: %s: bad chunk name %q", f.Path, c)
			}
		}
		if f.Mode&^0o777 != 0 {
			return nil, fmt.Errorf("version manifest: %s: mode %o", f.Path, f.Mode)
		}
	}
	return &m, nil
}

// local paths that are never copied: the lock, the sync state, the
// plugins the pad carries (binaries that this host decides about: a
// store never plants one), and the journal (host names, fingerprints,
// times and the config's path, in clear text: the store sees none of it;
// each pad keeps its own).
func skipped(p string) bool {
	for _, d := range []string{stateDir, pluginDir, journalDir} {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return p == lockFile
}

// pluginDir and journalDir are the pad's plugins/ and journal/
// (pad.Pad.PluginDir, pad.Pad.JournalDir).
const (
	pluginDir  = "plugins"
	journalDir = "journal"
)

func checkPath(p string) error {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == "." || strings.HasPrefix(p, "../") || p == ".." || strings.Contains(p, "\\") || strings.ContainsRune(p, 0) {
		return fmt.Errorf("version manifest: path %q is not inside the pad", p)
	}
	if skipped(p) {
		return fmt.Errorf("version manifest: path %q is local to each pad", p)
	}
	return nil
}
