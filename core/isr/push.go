package isr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/store"
)

// PushResult says what a copy-out did.
type PushResult struct {
	// Seq is the version made (0: nothing to copy out).
	Seq uint64
	// Uploaded counts the bytes sent; PadBytes is the pad's size.
	Uploaded, PadBytes int64
	Hashed             int64
}

// Push copies the pad out as a new version of name: only the chunks the
// store lacks, then the manifest, last, so that a cut-short copy-out
// never becomes a version (its chunks are reused by the next). The pad
// must hold the lease. key, the vault's seal key (SealKey), seals the
// version; nil leaves it unsealed (a vault that has sealed one refuses it).
func Push(ctx context.Context, st store.Store, padDir, name string, key []byte, progress Progress) (PushResult, error) {
	state, err := LoadState(padDir)
	if err != nil {
		return PushResult{}, err
	}
	if state.Incomplete {
		return PushResult{}, fmt.Errorf("the pad's last copy-in was cut short, so it is a mix of versions and is not copied out; copy in again: %w", ErrConflict)
	}
	vs, err := st.Versions(ctx, store.VersionsRequest{Name: name})
	if err != nil {
		return PushResult{}, err
	}
	var newest uint64
	if n := len(vs.Versions); n > 0 {
		newest = vs.Versions[n-1].Seq
	}
	if newest != state.head() {
		return PushResult{}, fmt.Errorf("the store has version %d of %s, newer than this pad's %d: %w (copy in first; the pad's changes would be lost)", newest, name, state.head(), ErrConflict)
	}
	local, dirs, hashed, err := Scan(ctx, padDir, DefaultChunkBytes, state.Files)
	if err != nil {
		return PushResult{}, err
	}
	res := PushResult{Hashed: hashed}
	for _, l := range local {
		res.PadBytes += l.Size
	}
	// Nothing to copy out, unless the pad was rolled back: then the old
	// version becomes the newest.
	if newest != 0 && state.Seq == newest && sameFiles(local, filesOf(state.Files)) {
		return res, nil
	}
	pieces, err := missing(ctx, st, padDir, name, local)
	if err != nil {
		return res, err
	}
	out, err := st.Push(ctx, store.TransferRequest{Name: name, Pieces: pieces, OnProgress: func(p store.Progress) {
		if progress != nil {
			progress("copy-out", p)
		}
	}})
	if err != nil {
		return res, fmt.Errorf("copy-out: %w (the chunks sent stay on the store; the next copy-out sends the rest)", err)
	}
	res.Uploaded = int64(out.BytesDone)
	// No host name: the store learns which PC holds the lease, not which
	// made each version.
	man := Manifest{Format: ManifestFormat, Name: name, Seq: newest + 1, Parent: newest, Created: time.Now().UTC(), ChunkBytes: DefaultChunkBytes, Dirs: dirs, Files: filesOf(local)}
	if key != nil {
		man.Sign(key)
	}
	b, err := json.Marshal(man)
	if err != nil {
		return res, err
	}
	if _, err := st.PutVersion(ctx, store.PutVersionRequest{Name: name, Seq: man.Seq, Manifest: b, Holder: state.LeaseHolder()}); err != nil {
		if errors.Is(err, sdk.ErrAlreadyExists) {
			return res, fmt.Errorf("another PC made version %d of %s meanwhile: %w", man.Seq, name, ErrConflict)
		}
		return res, err
	}
	state.Name, state.Seq, state.Head, state.Files = name, man.Seq, 0, local
	res.Seq = man.Seq
	return res, state.Save(padDir)
}

// missing is the pieces of the pad's files whose chunks the store lacks,
// each chunk once.
func missing(ctx context.Context, st store.Store, padDir, name string, local []LocalFile) ([]store.Piece, error) {
	var sums []string
	first := map[string]store.Piece{}
	for _, l := range local {
		for i, c := range l.Chunks {
			if _, ok := first[c]; ok {
				continue
			}
			off := int64(i) * DefaultChunkBytes
			first[c] = store.Piece{Sum: c, Path: filepath.Join(padDir, filepath.FromSlash(l.Path)), Offset: off, Length: min(DefaultChunkBytes, l.Size-off)}
			sums = append(sums, c)
		}
	}
	miss, err := st.Missing(ctx, store.MissingRequest{Name: name, Sums: sums})
	if err != nil {
		return nil, err
	}
	pieces := make([]store.Piece, 0, len(miss.Sums))
	for _, s := range miss.Sums {
		pieces = append(pieces, first[s])
	}
	return pieces, nil
}
