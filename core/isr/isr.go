package isr

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"syscall"
	"time"

	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/store"
)

const (
	lockFile  = pad.LockFile
	stateDir  = pad.StoreStateDir
	stateFile = ".store/state.json"
)

// ErrConflict: the pad and the store both moved on from their last sync.
var ErrConflict = errors.New("the pad and the store have both changed since they last synced")

// State is what the local pad knows of its last sync.
type State struct {
	Name string `json:"name"`
	// Seq is the version the pad held after its last sync (0: none).
	Seq uint64 `json:"seq"`
	// Holder is this pad's lease holder identifier.
	Holder string `json:"holder"`
	// Incomplete: a copy-in was cut short; the pad is a mix of versions
	// and must be copied in again before it runs.
	Incomplete bool `json:"incomplete,omitempty"`
	// Files are the pad's files as of the last sync.
	Files []LocalFile `json:"files,omitempty"`
}

// LocalFile is a file with what tells whether it changed since.
type LocalFile struct {
	File
	MtimeNS int64  `json:"mtime_ns"`
	Ino     uint64 `json:"ino"`
}

// LoadState reads the pad's sync state; a pad that never synced has a
// fresh one with a new holder identifier.
func LoadState(padDir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(padDir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		id := make([]byte, 12)
		rand.Read(id)
		return &State{Holder: hex.EncodeToString(id)}, nil
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil || s.Holder == "" {
		return nil, fmt.Errorf("%s is damaged (%v): remove it, and the next copy-in compares every chunk: %w", filepath.Join(padDir, stateFile), err, sdk.ErrCorrupt)
	}
	return &s, nil
}

// Save writes the state atomically.
func (s *State) Save(padDir string) error {
	if err := os.MkdirAll(filepath.Join(padDir, stateDir), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		return err
	}
	return pad.WriteFileAtomic(filepath.Join(padDir, stateFile), b, 0o600)
}

// Scan lists the pad's files and their chunks, reading only files that
// changed since prev (size, mtime, inode); hashed counts the bytes read.
func Scan(ctx context.Context, padDir string, chunkBytes int64, prev []LocalFile) (files []LocalFile, dirs []string, hashed int64, err error) {
	known := map[string]LocalFile{}
	for _, f := range prev {
		known[f.Path] = f
	}
	err = filepath.WalkDir(padDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(padDir, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if skipped(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			dirs = append(dirs, rel)
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file; a pad holds only files and directories", p)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		lf := LocalFile{File: File{Path: rel, Size: info.Size(), Mode: uint32(info.Mode().Perm())}, MtimeNS: info.ModTime().UnixNano(), Ino: st.Ino}
		if k, ok := known[rel]; ok && k.Size == lf.Size && k.MtimeNS == lf.MtimeNS && k.Ino == lf.Ino && int64(len(k.Chunks)) == chunksOf(lf.Size, chunkBytes) {
			lf.Chunks = k.Chunks
		} else {
			if lf.Chunks, err = hashFile(ctx, p, chunkBytes); err != nil {
				return err
			}
			hashed += lf.Size
		}
		files = append(files, lf)
		return nil
	})
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, dirs, hashed, err
}

func chunksOf(size, chunkBytes int64) int64 { return (size + chunkBytes - 1) / chunkBytes }

func hashFile(ctx context.Context, path string, chunkBytes int64) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	buf := make([]byte, chunkBytes)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			s := sha256.Sum256(buf[:n])
			out = append(out, hex.EncodeToString(s[:]))
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// sameFiles says whether two listings have the same paths and chunks.
func sameFiles(a []LocalFile, b []File) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Path != b[i].Path || a[i].Size != b[i].Size || !slices.Equal(a[i].Chunks, b[i].Chunks) {
			return false
		}
	}
	return true
}

func filesOf(ls []LocalFile) []File {
	out := make([]File, len(ls))
	for i, l := range ls {
		out[i] = l.File
	}
	return out
}

// Progress reports a copy.
type Progress func(phase string, p store.Progress)

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
	vs, err := st.Versions(ctx, store.VersionsRequest{Name: name})
	if err != nil {
		return PullResult{}, err
	}
	if len(vs.Versions) == 0 {
		return PullResult{}, fmt.Errorf("the store has no version of %s yet (a first copy-out makes one): %w", name, sdk.ErrNotFound)
	}
	newest := vs.Versions[len(vs.Versions)-1].Seq
	target := newest
	if seq != 0 {
		target = seq
	}
	mb, err := st.GetVersion(ctx, store.GetVersionRequest{Name: name, Seq: target})
	if err != nil {
		return PullResult{}, fmt.Errorf("version %d of %s: %w", target, name, err)
	}
	man, err := ParseManifest(mb.Manifest)
	if err != nil {
		return PullResult{}, fmt.Errorf("version %d of %s: %w: %w", target, name, err, sdk.ErrCorrupt)
	}
	if man.Name != name || man.Seq != target {
		return PullResult{}, fmt.Errorf("version %d of %s names itself %s %d: %w", target, name, man.Name, man.Seq, sdk.ErrCorrupt)
	}
	local, _, hashed, err := Scan(ctx, padDir, man.ChunkBytes, state.Files)
	if err != nil {
		return PullResult{}, err
	}
	res := PullResult{Seq: target, Hashed: hashed, PadBytes: man.Bytes()}
	synced := state.Seq != 0 && !state.Incomplete
	changed := synced && !sameFiles(local, filesOf(state.Files))
	if changed && !force {
		if state.Seq == newest && seq == 0 {
			res.Seq, res.Ahead = state.Seq, true
			return res, nil
		}
		return res, fmt.Errorf("the pad has changes since version %d that the store lacks, and the store has version %d: %w (copy the pad's changes out first, or copy in with --force to discard them)",
			state.Seq, newest, ErrConflict)
	}
	if synced && !changed && state.Seq == target && sameFiles(local, man.Files) {
		return res, nil // the hoard is current
	}
	// From here the pad is a mix until the state says otherwise.
	state.Name, state.Incomplete = name, true
	if err := state.Save(padDir); err != nil {
		return res, err
	}
	have := map[string]LocalFile{}
	for _, l := range local {
		have[l.Path] = l
	}
	want := map[string]bool{}
	for _, d := range man.Dirs {
		if err := os.MkdirAll(filepath.Join(padDir, filepath.FromSlash(d)), 0o700); err != nil {
			return res, err
		}
	}
	var pieces []store.Piece
	var touched []string
	for _, f := range man.Files {
		want[f.Path] = true
		p := filepath.Join(padDir, filepath.FromSlash(f.Path))
		l, ok := have[f.Path]
		if ok && l.Size == f.Size && slices.Equal(l.Chunks, f.Chunks) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return res, err
		}
		fh, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, os.FileMode(f.Mode)|0o600)
		if err == nil {
			err = fh.Truncate(f.Size)
			fh.Close()
		}
		if err != nil {
			return res, err
		}
		touched = append(touched, p)
		for i, c := range f.Chunks {
			if ok && i < len(l.Chunks) && l.Chunks[i] == c {
				continue
			}
			off := int64(i) * man.ChunkBytes
			pieces = append(pieces, store.Piece{Sum: c, Path: p, Offset: off, Length: min(man.ChunkBytes, f.Size-off)})
		}
	}
	for _, l := range local {
		if !want[l.Path] {
			if err := os.Remove(filepath.Join(padDir, filepath.FromSlash(l.Path))); err != nil {
				return res, err
			}
		}
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
	for _, p := range touched {
		if err := syncFile(p); err != nil {
			return res, err
		}
	}
	// The state records the files as they are now, with the version's
	// chunks (what was fetched was checked against them).
	now, _, _, err := Scan(ctx, padDir, man.ChunkBytes, withChunks(padDir, man.Files))
	if err != nil {
		return res, err
	}
	if !sameFiles(now, man.Files) {
		return res, fmt.Errorf("after the copy-in the pad does not match version %d: %w", target, sdk.ErrCorrupt)
	}
	state.Seq, state.Incomplete, state.Files = target, false, now
	return res, state.Save(padDir)
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

func syncFile(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

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
// never becomes a version (its chunks are reused by the next). holder
// must hold the lease.
func Push(ctx context.Context, st store.Store, padDir, name, host string, progress Progress) (PushResult, error) {
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
	if newest != state.Seq {
		return PushResult{}, fmt.Errorf("the store has version %d of %s, newer than this pad's %d: %w (copy in first; the pad's changes would be lost)", newest, name, state.Seq, ErrConflict)
	}
	local, dirs, hashed, err := Scan(ctx, padDir, DefaultChunkBytes, state.Files)
	if err != nil {
		return PushResult{}, err
	}
	res := PushResult{Hashed: hashed}
	for _, l := range local {
		res.PadBytes += l.Size
	}
	if newest != 0 && sameFiles(local, filesOf(state.Files)) {
		return res, nil
	}
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
		return res, err
	}
	var pieces []store.Piece
	for _, s := range miss.Sums {
		pieces = append(pieces, first[s])
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
	man := Manifest{Format: ManifestFormat, Name: name, Seq: newest + 1, Parent: newest, Created: time.Now().UTC(), Host: host, ChunkBytes: DefaultChunkBytes, Dirs: dirs, Files: filesOf(local)}
	b, err := json.Marshal(man)
	if err != nil {
		return res, err
	}
	if _, err := st.PutVersion(ctx, store.PutVersionRequest{Name: name, Seq: man.Seq, Manifest: b, Holder: state.Holder}); err != nil {
		if errors.Is(err, sdk.ErrAlreadyExists) {
			return res, fmt.Errorf("another PC made version %d of %s meanwhile: %w", man.Seq, name, ErrConflict)
		}
		return res, err
	}
	state.Name, state.Seq, state.Files = name, man.Seq, local
	res.Seq = man.Seq
	return res, state.Save(padDir)
}

// Checkout takes the lease of name for the pad at padDir.
func Checkout(ctx context.Context, st store.Store, padDir, name, host string, breakLease bool) (store.AcquireResponse, error) {
	if err := os.MkdirAll(padDir, 0o700); err != nil {
		return store.AcquireResponse{}, err
	}
	state, err := LoadState(padDir)
	if err != nil {
		return store.AcquireResponse{}, err
	}
	if state.Seq == 0 && len(state.Files) == 0 {
		// Keep the holder identifier before the lease names it.
		if err := state.Save(padDir); err != nil {
			return store.AcquireResponse{}, err
		}
	}
	return st.Acquire(ctx, store.AcquireRequest{Name: name, Lease: store.Lease{Holder: state.Holder, Host: host, Acquired: time.Now().UTC()}, Break: breakLease})
}

// Checkin releases the pad's lease.
func Checkin(ctx context.Context, st store.Store, padDir, name string) error {
	state, err := LoadState(padDir)
	if err != nil {
		return err
	}
	_, err = st.Release(ctx, store.ReleaseRequest{Name: name, Holder: state.Holder})
	return err
}

// GC removes the chunks no version references; it returns how many and
// their bytes are not known (the store does not say).
func GC(ctx context.Context, st store.Store, name string) (removed int, err error) {
	vs, err := st.Versions(ctx, store.VersionsRequest{Name: name})
	if err != nil {
		return 0, err
	}
	used := map[string]bool{}
	for _, v := range vs.Versions {
		mb, err := st.GetVersion(ctx, store.GetVersionRequest{Name: name, Seq: v.Seq})
		if err != nil {
			return 0, err
		}
		man, err := ParseManifest(mb.Manifest)
		if err != nil {
			// A version that cannot be read keeps everything: its
			// chunks are not known.
			return 0, fmt.Errorf("version %d: %w; nothing was removed", v.Seq, err)
		}
		for _, f := range man.Files {
			for _, c := range f.Chunks {
				used[c] = true
			}
		}
	}
	all, err := st.Chunks(ctx, store.ChunksRequest{Name: name})
	if err != nil {
		return 0, err
	}
	var doomed []string
	for _, c := range all.Sums {
		if !used[c] {
			doomed = append(doomed, c)
		}
	}
	if len(doomed) == 0 {
		return 0, nil
	}
	_, err = st.Delete(ctx, store.DeleteRequest{Name: name, Sums: doomed})
	return len(doomed), err
}
