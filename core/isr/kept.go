package isr

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/sdk/store"
)

// A copy-in changes the pad on the store's word, but the version it
// brings is only known to be genuine once the vault is open (its seal,
// Manifest.Verify). Until then what the copy-in replaced is kept: the
// bytes of every chunk it overwrote and the tail of every file it cut,
// the files it removed whole, and the sync state before it. A version
// refused at the check is undone (RestoreKept) and the pad is what it
// was; a verified one lets the kept bytes go (DiscardKept). What is kept
// costs what the copy-in fetched, not a copy of the pad.
//
// Each copy-in before a check keeps its own undo (kept/1, kept/2, …);
// RestoreKept undoes them newest first. An undo is whole only once its
// state.json is written, last: a copy-in cut short while it kept leaves
// an undo without one, which nothing has changed yet (the pad's files
// change after it), and which is dropped.
const keptDir = stateDir + "/kept"

// undoRecord heads one saved range of a file: where the bytes go back.
type undoRecord struct {
	Offset, Length int64
}

// keptFile is what an undo says of a file it touched.
type keptFile struct {
	Path string `json:"path"`
	// Existed: the file was there before; Size is its size then.
	Existed bool  `json:"existed"`
	Size    int64 `json:"size"`
	// Removed: the copy-in removed it; it is kept whole as Kept.
	Removed bool   `json:"removed,omitempty"`
	Mode    uint32 `json:"mode,omitempty"`
	// Kept is the undo's file for it: its saved ranges, or the removed
	// file whole (a name in the undo's directory).
	Kept string `json:"kept,omitempty"`
}

// undo is an undo's state.json.
type undo struct {
	State *State     `json:"state"`
	Files []keptFile `json:"files"`
}

// keptUndos lists the pad's whole undos, oldest first, and removes any
// that was cut short.
func keptUndos(padDir string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(padDir, keptDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var nums []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		dir := filepath.Join(padDir, keptDir, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "state.json")); err != nil {
			if err := os.RemoveAll(dir); err != nil {
				return nil, err
			}
			continue
		}
		nums = append(nums, n)
	}
	sort.Ints(nums)
	var out []string
	for _, n := range nums {
		out = append(out, filepath.Join(padDir, keptDir, strconv.Itoa(n)))
	}
	return out, nil
}

// HasKept says whether the pad holds a copy-in that was not verified yet.
func HasKept(padDir string) bool {
	u, err := keptUndos(padDir)
	return err == nil && len(u) > 0
}

// keep saves, before a copy-in changes the pad, what it will change:
// the old bytes of the pieces it will fetch into existing files, the
// tails of files it will shorten, the files it will remove; and state.
func keep(padDir string, state *State, pieces []store.Piece, sizes map[string]int64, remove []string) error {
	undos, err := keptUndos(padDir)
	if err != nil {
		return err
	}
	n := 1
	if len(undos) > 0 {
		n, _ = strconv.Atoi(filepath.Base(undos[len(undos)-1]))
		n++
	}
	dir := filepath.Join(padDir, keptDir, strconv.Itoa(n))
	if err := os.MkdirAll(filepath.Join(dir, "files"), 0o700); err != nil {
		return err
	}
	var u undo
	u.State = state
	byPath := map[string][]store.Piece{}
	for _, p := range pieces {
		byPath[p.Path] = append(byPath[p.Path], p)
	}
	paths := make([]string, 0, len(sizes))
	for p := range sizes {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for i, p := range paths {
		name := fmt.Sprintf("%d.undo", i)
		kf, err := keepRanges(padDir, p, sizes[p], byPath[p], filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if kf.Existed {
			kf.Kept = name
		}
		u.Files = append(u.Files, kf)
	}
	for i, p := range remove {
		rel, err := filepath.Rel(padDir, p)
		if err != nil {
			return err
		}
		info, err := os.Stat(p)
		if err != nil {
			return err
		}
		name := filepath.Join("files", strconv.Itoa(i))
		if err := os.Rename(p, filepath.Join(dir, name)); err != nil {
			return err
		}
		u.Files = append(u.Files, keptFile{Path: filepath.ToSlash(rel), Existed: true, Size: info.Size(), Removed: true, Mode: uint32(info.Mode().Perm()), Kept: name})
	}
	b, err := json.Marshal(u)
	if err != nil {
		return err
	}
	if err := syncTree(dir); err != nil {
		return err
	}
	return pad.WriteFileAtomic(filepath.Join(dir, "state.json"), b, 0o600)
}

// keepRanges writes to undoPath the bytes of the file at p that the
// pieces will overwrite and, if it shrinks to newSize, its tail.
func keepRanges(padDir, p string, newSize int64, pieces []store.Piece, undoPath string) (keptFile, error) {
	rel, err := filepath.Rel(padDir, p)
	if err != nil {
		return keptFile{}, err
	}
	kf := keptFile{Path: filepath.ToSlash(rel)}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return kf, nil // a new file: undone by removing it
	}
	if err != nil {
		return kf, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return kf, err
	}
	kf.Existed, kf.Size, kf.Mode = true, info.Size(), uint32(info.Mode().Perm())
	var ranges []undoRecord
	for _, pc := range pieces {
		if pc.Offset < kf.Size {
			ranges = append(ranges, undoRecord{pc.Offset, min(pc.Length, kf.Size-pc.Offset)})
		}
	}
	if newSize < kf.Size {
		ranges = append(ranges, undoRecord{newSize, kf.Size - newSize})
	}
	out, err := os.OpenFile(undoPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return kf, err
	}
	defer out.Close()
	for _, r := range ranges {
		if err := binary.Write(out, binary.LittleEndian, r); err != nil {
			return kf, err
		}
		if _, err := io.Copy(out, io.NewSectionReader(f, r.Offset, r.Length)); err != nil {
			return kf, err
		}
	}
	return kf, out.Sync()
}

// RestoreKept undoes the copy-ins that were not verified, newest first:
// the pad's files and its sync state are again what they were before
// them. It returns the version the pad holds then (0: it held none).
func RestoreKept(padDir string) (uint64, error) {
	undos, err := keptUndos(padDir)
	if err != nil || len(undos) == 0 {
		return 0, err
	}
	var state *State
	for i := len(undos) - 1; i >= 0; i-- {
		if state, err = restoreUndo(padDir, undos[i]); err != nil {
			return 0, fmt.Errorf("undoing the copy-in kept in %s: %w", undos[i], err)
		}
	}
	if err := state.Save(padDir); err != nil {
		return 0, err
	}
	return state.Seq, os.RemoveAll(filepath.Join(padDir, keptDir))
}

func restoreUndo(padDir, dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return nil, err
	}
	var u undo
	if err := json.Unmarshal(b, &u); err != nil || u.State == nil {
		return nil, fmt.Errorf("its record is damaged (%v)", err)
	}
	// Files the copy-in made are not the pad's: they go. The files
	// the undo names are all it touched.
	for _, kf := range u.Files {
		p, err := inPad(padDir, kf.Path)
		if err != nil {
			return nil, err
		}
		kept, err := inPad(dir, kf.Kept)
		if kf.Existed && err != nil {
			return nil, err
		}
		switch {
		case kf.Removed:
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return nil, err
			}
			if err := os.Rename(kept, p); err != nil {
				return nil, err
			}
		case !kf.Existed:
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		default:
			if err := replay(p, kf, kept); err != nil {
				return nil, err
			}
		}
	}
	return u.State, nil
}

// replay writes an undo's ranges back into the file at p and gives it
// its old size and mode.
func replay(p string, kf keptFile, undoPath string) error {
	in, err := os.Open(undoPath)
	if err != nil {
		return err
	}
	defer in.Close()
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, os.FileMode(kf.Mode)|0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(kf.Size); err != nil {
		return err
	}
	for {
		var r undoRecord
		if err := binary.Read(in, binary.LittleEndian, &r); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return err
		}
		if r.Offset < 0 || r.Length < 0 || r.Offset > kf.Size || r.Length > kf.Size-r.Offset {
			return fmt.Errorf("an undo range %d+%d lies outside %s's %d bytes", r.Offset, r.Length, kf.Path, kf.Size)
		}
		if _, err := io.Copy(io.NewOffsetWriter(f, r.Offset), io.LimitReader(in, r.Length)); err != nil {
			return err
		}
	}
	if err := f.Chmod(os.FileMode(kf.Mode) | 0o600); err != nil {
		return err
	}
	return f.Sync()
}

// DiscardKept lets the kept bytes go: the version copied in is verified.
func DiscardKept(padDir string) error {
	return os.RemoveAll(filepath.Join(padDir, keptDir))
}

// inPad is the pad file named by rel, which must stay inside the pad.
func inPad(padDir, rel string) (string, error) {
	if !filepath.IsLocal(filepath.FromSlash(rel)) {
		return "", fmt.Errorf("%q is not a path inside the pad", rel)
	}
	return filepath.Join(padDir, filepath.FromSlash(rel)), nil
}

// syncTree fsyncs the files and directories under dir, dir included.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}
