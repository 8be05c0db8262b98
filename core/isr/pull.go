package isr

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/store"
)

// PullResult says what a copy-in did.
type PullResult struct {
	// Seq is the version the pad holds now.
	Seq uint64
	// Ahead: the pad has changes the store lacks (a session ran while
	// the store was out of reach, or a copy-out was cut short); nothing
	// was copied, and the next copy-out sends them.
	Ahead bool
	// Fetched counts the bytes copied in; PadBytes is the pad's size.
	Fetched, PadBytes int64
	// Hashed counts the local bytes read to compare.
	Hashed int64
	// Manifest is the version's manifest (nil when Ahead), for its seal
	// to be checked once the vault is open (Manifest.Verify).
	Manifest *Manifest
}

// Pull makes the pad at padDir hold version seq (0: the newest) of name
// on the store, fetching only the chunks it lacks. force discards local
// changes the store lacks (otherwise ErrConflict).
func Pull(ctx context.Context, st store.Store, padDir, name string, seq uint64, force bool, progress Progress) (PullResult, error) {
	if err := os.MkdirAll(padDir, 0o700); err != nil {
		return PullResult{}, err
	}
	state, err := LoadState(padDir)
	if err != nil {
		return PullResult{}, err
	}
	man, newest, err := versionManifest(ctx, st, name, seq)
	if seq == 0 && state.head() > 0 && (errors.Is(err, sdk.ErrNotFound) || err == nil && newest < state.head()) {
		// This pad has been (or followed) a newer version than the store
		// now shows: the store hid or lost it. Nothing of the pad's is
		// replaced on the store's word.
		return PullResult{}, fmt.Errorf("the store's newest version of %s is %d, but this pad has held version %d: the store went backwards (a newer version was hidden or deleted); nothing was changed. To go back on purpose, copy in a version by its number (--store-version N): %w",
			name, newest, state.head(), ErrStoreBehind)
	}
	if err != nil {
		return PullResult{}, err
	}
	target := man.Seq
	local, _, hashed, err := Scan(ctx, padDir, man.ChunkBytes, state.Files)
	if err != nil {
		return PullResult{}, err
	}
	res := PullResult{Seq: target, Hashed: hashed, PadBytes: man.Bytes(), Manifest: man}
	synced := state.Seq != 0 && !state.Incomplete
	changed := synced && !sameFiles(local, filesOf(state.Files))
	if changed && !force {
		if state.head() == newest && seq == 0 {
			res.Seq, res.Ahead, res.Manifest = state.Seq, true, nil
			return res, nil
		}
		return res, fmt.Errorf("the pad has changes since version %d that the store lacks, and the store has version %d: %w (copy the pad's changes out first, or copy in with --force to discard them)",
			state.Seq, newest, ErrConflict)
	}
	if synced && !changed && state.Seq == target && sameFiles(local, man.Files) {
		return res, nil // the hoard is current
	}
	pieces, touched, err := makeRoom(padDir, name, man, local, state)
	if err != nil {
		return res, err
	}
	out, err := st.Fetch(ctx, store.TransferRequest{Name: name, Pieces: pieces, OnProgress: func(p store.Progress) {
		if progress != nil {
			progress("copy-in", p)
		}
	}})
	if err != nil {
		return res, fmt.Errorf("copy-in of version %d: %w", target, err)
	}
	res.Fetched = int64(out.BytesDone)
	return res, settle(ctx, padDir, man, newest, touched, state)
}

// versionManifest reads the manifest of version seq of name (0: the
// newest) and checks that it names itself so; newest is the store's
// newest version.
func versionManifest(ctx context.Context, st store.Store, name string, seq uint64) (man *Manifest, newest uint64, err error) {
	vs, err := st.Versions(ctx, store.VersionsRequest{Name: name})
	if err != nil {
		return man, 0, err
	}
	if len(vs.Versions) == 0 {
		return man, 0, fmt.Errorf("the store has no version of %s yet (a first copy-out makes one): %w", name, sdk.ErrNotFound)
	}
	newest = vs.Versions[len(vs.Versions)-1].Seq
	target := newest
	if seq != 0 {
		target = seq
	}
	mb, err := st.GetVersion(ctx, store.GetVersionRequest{Name: name, Seq: target})
	if err != nil {
		return man, newest, fmt.Errorf("version %d of %s: %w", target, name, err)
	}
	man, err = ParseManifest(mb.Manifest)
	if err != nil {
		return man, newest, fmt.Errorf("version %d of %s: %w: %w", target, name, err, sdk.ErrCorrupt)
	}
	if man.Name != name || man.Seq != target {
		return man, newest, fmt.Errorf("version %d of %s names itself %s %d: %w", target, name, man.Name, man.Seq, sdk.ErrCorrupt)
	}
	return man, newest, nil
}

// makeRoom shapes the pad for the version: its directories, each file
// that differs at its size, and no file the version does not list. It
// returns the chunks to fetch and the files they go into. When the pad
// held a version whole (state), what it changes is kept first, until the
// version is verified (keep). From then the state says the pad is a mix
// until the copy-in settles.
func makeRoom(padDir, name string, man *Manifest, local []LocalFile, state *State) (pieces []store.Piece, touched []string, err error) {
	have := map[string]LocalFile{}
	for _, l := range local {
		have[l.Path] = l
	}
	want := map[string]bool{}
	sizes := map[string]int64{}
	var files []File
	for _, f := range man.Files {
		want[f.Path] = true
		p, err := inPad(padDir, f.Path)
		if err != nil {
			return nil, nil, err
		}
		l, ok := have[f.Path]
		if ok && l.Size == f.Size && slices.Equal(l.Chunks, f.Chunks) {
			continue
		}
		sizes[p] = f.Size
		files = append(files, f)
		touched = append(touched, p)
		for i, c := range f.Chunks {
			if ok && i < len(l.Chunks) && l.Chunks[i] == c {
				continue
			}
			off := int64(i) * man.ChunkBytes
			pieces = append(pieces, store.Piece{Sum: c, Path: p, Offset: off, Length: min(man.ChunkBytes, f.Size-off)})
		}
	}
	var remove []string
	for _, l := range local {
		if !want[l.Path] {
			remove = append(remove, filepath.Join(padDir, filepath.FromSlash(l.Path)))
		}
	}
	if state.Seq != 0 && !state.Incomplete {
		before := *state
		if err := keep(padDir, &before, pieces, sizes, remove); err != nil {
			return nil, nil, fmt.Errorf("keeping what the copy-in replaces until the version is verified: %w", err)
		}
	}
	state.Name, state.Incomplete = name, true
	if err := state.Save(padDir); err != nil {
		return nil, nil, err
	}
	for _, d := range man.Dirs {
		if err := os.MkdirAll(filepath.Join(padDir, filepath.FromSlash(d)), 0o700); err != nil {
			return nil, nil, err
		}
	}
	for i, f := range files {
		if err := sizeFile(touched[i], f); err != nil {
			return nil, nil, err
		}
	}
	for _, p := range remove {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, err
		}
	}
	return pieces, touched, nil
}

// sizeFile makes the file at p exist at f's size.
func sizeFile(p string, f File) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	// Never an executable: nothing the store sends is to be run.
	mode := os.FileMode(f.Mode)&0o666 | 0o600
	fh, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, mode)
	if err == nil {
		err = fh.Chmod(mode)
		if terr := fh.Truncate(f.Size); err == nil {
			err = terr
		}
		fh.Close()
	}
	return err
}

// settle syncs what the copy-in wrote, checks that the pad is the
// version, and records it as the pad's (the state records the files as
// they are now, with the version's chunks: what was fetched was checked
// against them).
func settle(ctx context.Context, padDir string, man *Manifest, newest uint64, touched []string, state *State) error {
	for _, p := range touched {
		if err := syncFile(p); err != nil {
			return err
		}
	}
	now, _, _, err := Scan(ctx, padDir, man.ChunkBytes, withChunks(padDir, man.Files))
	if err != nil {
		return err
	}
	if !sameFiles(now, man.Files) {
		return fmt.Errorf("after the copy-in the pad does not match version %d: %w", man.Seq, sdk.ErrCorrupt)
	}
	state.Seq, state.Incomplete, state.Files = man.Seq, false, now
	state.Head = 0
	if newest > man.Seq {
		state.Head = newest // a rollback: the next copy-out follows newest
	}
	return state.Save(padDir)
}

// withChunks gives the files as they are on disk now the version's chunk
// lists, so that Scan reads none of them again.
func withChunks(padDir string, files []File) []LocalFile {
	var out []LocalFile
	for _, f := range files {
		info, err := os.Stat(filepath.Join(padDir, filepath.FromSlash(f.Path)))
		if err != nil {
			continue
		}
		out = append(out, LocalFile{File: f, MtimeNS: info.ModTime().UnixNano(), Ino: info.Sys().(*syscall.Stat_t).Ino})
	}
	return out
}
