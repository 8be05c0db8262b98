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

// ErrStoreBehind: the store shows an older newest version than the pad
// has held: a version was hidden or lost.
var ErrStoreBehind = errors.New("the store went backwards")

// ErrConflict: the pad and the store both moved on from their last sync.
var ErrConflict = errors.New("the pad and the store have both changed since they last synced")

// State is what the local pad knows of its last sync.
type State struct {
	Name string `json:"name"`
	// Seq is the version the pad held after its last sync (0: none).
	Seq uint64 `json:"seq"`
	// Head is the store's newest version at the last sync, when the pad
	// holds an older one (a rollback: its next copy-out becomes the
	// version after Head); 0 means Seq.
	Head uint64 `json:"head,omitempty"`
	// Holder is this pad's secret part of its lease holder identifier;
	// the lease names LeaseHolder(), which this PC's identity is part of.
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

// head is the store's newest version the pad knows of.
func (s *State) head() uint64 { return max(s.Head, s.Seq) }

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

// LeaseHolder is the holder the pad's lease names on this PC: its own
// identifier bound to this PC's machine id (so a copy of the pad on
// another PC is another holder, refused while this one holds the lease).
func (s *State) LeaseHolder() string {
	h := sha256.New()
	fmt.Fprintf(h, "soulpad lease holder\x00%s\x00%s", s.Holder, hostID())
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// hostID is this PC's machine id (/etc/machine-id), or its host name.
var hostID = func() string {
	if id := pad.MachineID(); id != "" {
		return id
	}
	name, _ := os.Hostname()
	return "host:" + name
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

func syncFile(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Checkout takes the lease of name for the pad at padDir, for term (a
// live session renews it: RenewLease).
func Checkout(ctx context.Context, st store.Store, padDir, name, host string, term time.Duration, breakLease bool) (store.AcquireResponse, error) {
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
	now := time.Now().UTC()
	return st.Acquire(ctx, store.AcquireRequest{Name: name, Lease: store.Lease{Holder: state.LeaseHolder(), Host: host, Acquired: now, Expires: now.Add(term)}, Break: breakLease})
}

// RenewLease extends the pad's lease by term from now, or keeps it
// from lapsing (term 0: it holds until released or broken, as when a
// failed copy-out keeps it so that no other PC takes an older version).
// sdk.ErrBusy: another holder took it over.
func RenewLease(ctx context.Context, st store.Store, padDir, name, host string, acquired time.Time, term time.Duration) error {
	state, err := LoadState(padDir)
	if err != nil {
		return err
	}
	l := store.Lease{Holder: state.LeaseHolder(), Host: host, Acquired: acquired}
	if term > 0 {
		l.Expires = time.Now().UTC().Add(term)
	}
	_, err = st.Acquire(ctx, store.AcquireRequest{Name: name, Lease: l})
	return err
}

// Checkin releases the pad's lease.
func Checkin(ctx context.Context, st store.Store, padDir, name string) error {
	state, err := LoadState(padDir)
	if err != nil {
		return err
	}
	_, err = st.Release(ctx, store.ReleaseRequest{Name: name, Holder: state.LeaseHolder()})
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
