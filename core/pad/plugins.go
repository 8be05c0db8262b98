package pad

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// PluginsRecordFile, inside the unlocked vault, holds the SHA-256 of each
// plugin binary carried on the pad as it was when the vault was last
// locked. The vault is encrypted and authenticated (or at least keyed), so
// someone who holds the pad can replace a binary in plugins/ but cannot
// update this record to match.
const PluginsRecordFile = "pad-plugins.json"

// PluginSums hashes every plugin binary in the pad's plugins/ directory.
func (p *Pad) PluginSums() (map[string]string, error) {
	out := map[string]string{}
	ents, err := os.ReadDir(p.PluginDir())
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pad %s: plugins: %w", p.Dir, err)
	}
	for _, e := range ents {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		sum, err := sumFile(filepath.Join(p.PluginDir(), e.Name()), false)
		if err != nil {
			return nil, fmt.Errorf("pad %s: plugins: %w", p.Dir, err)
		}
		out[e.Name()] = sum.SHA256
	}
	return out, nil
}

// RecordPlugins writes the pad's plugin checksums into the vault. Plugins
// the record has and the pad no longer carries stay recorded: the vault
// travels (through a store) to copies of the pad that carry other
// plugins, or none, and each must match what it saw of each name.
func (p *Pad) RecordPlugins(plaintextDir string) error {
	now, err := p.PluginSums()
	if err != nil {
		return err
	}
	sums := map[string]string{}
	if b, err := os.ReadFile(filepath.Join(plaintextDir, PluginsRecordFile)); err == nil {
		_ = json.Unmarshal(b, &sums) // a damaged record is replaced
	}
	maps.Copy(sums, now)
	b, err := json.MarshalIndent(sums, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(plaintextDir, PluginsRecordFile), append(b, '\n'), 0o600)
}

// ErrPluginsChanged: a plugin binary on the pad is not the one the vault
// recorded when it was last locked.
var ErrPluginsChanged = errors.New("plugins on the pad changed while the vault was locked")

// CheckPlugins compares the pad's plugin binaries with the vault's record.
// A vault without a record (made before records were kept) passes, and
// the caller records one at lock. Changed or added binaries are named in
// an error wrapping ErrPluginsChanged; a removed one is not (nothing runs
// that is not there: a pad copied in from a store, or from a host that
// carries its own, has none).
func (p *Pad) CheckPlugins(plaintextDir string) error {
	b, err := os.ReadFile(filepath.Join(plaintextDir, PluginsRecordFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pad %s: plugin record: %w", p.Dir, err)
	}
	var rec map[string]string
	if err := json.Unmarshal(b, &rec); err != nil {
		return fmt.Errorf("pad %s: the vault's plugin record is damaged: %v: %w", p.Dir, err, ErrPluginsChanged)
	}
	now, err := p.PluginSums()
	if err != nil {
		return err
	}
	var diffs []string
	for name, sum := range now {
		switch was, ok := rec[name]; {
		case !ok:
			diffs = append(diffs, name+" is new")
		case was != sum:
			diffs = append(diffs, fmt.Sprintf("%s changed (SHA-256 %s…, was %s…)", name, sum[:12], was[:min(12, len(was))]))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	sort.Strings(diffs)
	return fmt.Errorf("%w: %s, in %s. Someone who held the pad may have replaced a plugin to read your passphrase: stop here, change the passphrase (`soulpad credential change`) on a host you trust, and put known-good plugins on the pad; if you replaced them yourself, run with --accept-pad-plugins",
		ErrPluginsChanged, strings.Join(diffs, "; "), p.PluginDir())
}
