package pad

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// A suspend that was asked for is not lost when soulpad dies before it
// could seal the point: the core writes the point's manifest, all but its
// files, into the pending point before the VMM plugin starts (Draft), the
// plugin leaves its response beside the state once it is complete
// (vmm.ResultFile), and the next run seals a pending point that has both
// (Recover). A pending point without them is incomplete and is removed.

// draftFile holds a pending point's draft manifest.
const draftFile = ".draft.json"

// maxDraft bounds the draft read back (a manifest without files).
const maxDraft = 4 << 20

// Draft records the manifest the point will be sealed with (its files
// aside), for a recovery if the suspend outlives the session. It is
// written whole or not at all, but not yet durable: the suspend must
// reach the VMM plugin at once, not wait behind the pad's write-back (a
// kill in between would lose it). SyncDraft makes it durable.
func (p *Pending) Draft(man Manifest) error {
	man.Files = nil
	b, err := json.Marshal(man)
	if err != nil {
		return err
	}
	tmp := filepath.Join(p.dir, draftFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(p.dir, draftFile))
}

// SyncDraft makes the draft and the pending point's directory durable,
// so that a power cut after the VMM plugin finished still leaves a
// suspend the next run recovers.
func (p *Pending) SyncDraft() error {
	f, err := os.Open(filepath.Join(p.dir, draftFile))
	if err != nil {
		return err
	}
	err = f.Sync()
	f.Close()
	return errors.Join(err, SyncDir(p.dir), SyncDir(p.m.PointsDir()))
}

// Pendings are the pending points of m: suspends that were never sealed.
func (m *Machine) Pendings() []*Pending {
	ents, _ := os.ReadDir(m.PointsDir())
	var out []*Pending
	for _, e := range ents {
		if id, ok := strings.CutPrefix(e.Name(), pendingPrefix); ok && e.IsDir() {
			out = append(out, &Pending{m: m, id: id, dir: filepath.Join(m.PointsDir(), e.Name())})
		}
	}
	return out
}

// Drafted reads the pending point's draft manifest (ok false: none, or
// unreadable: the suspend cannot be recovered).
func (p *Pending) Drafted() (Manifest, bool) {
	var man Manifest
	f, err := os.Open(filepath.Join(p.dir, draftFile))
	if err != nil {
		return man, false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxDraft+1))
	if err != nil || len(b) > maxDraft || json.Unmarshal(b, &man) != nil {
		return man, false
	}
	return man, true
}

// dropDraft removes the draft before the point is sealed.
func (p *Pending) dropDraft() error {
	err := os.Remove(filepath.Join(p.dir, draftFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
