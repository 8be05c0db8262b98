package pad

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/soulpad/soulpad/internal/ctxio"
	"github.com/soulpad/soulpad/sdk"
)

// Pending is a suspend point being written.
type Pending struct {
	m   *Machine
	id  string
	dir string
	// hashed counts the bytes Seal read to checksum them.
	hashed int64
	// beside are more refs for the mapped files (Beside).
	beside map[string][]Ref
}

// NewPending makes an empty directory for a new suspend point.
func (m *Machine) NewPending() (*Pending, error) {
	id := time.Now().UTC().Format("20060102T150405.000Z") + "-" + NewID()[:6]
	id = strings.ReplaceAll(id, ".", "")
	dir := filepath.Join(m.PointsDir(), pendingPrefix+id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("new suspend point: %w", err)
	}
	return &Pending{m: m, id: id, dir: dir}, nil
}

// Dir is where the VMM writes the state.
func (p *Pending) Dir() string { return p.dir }

// ID is the point's identifier.
func (p *Pending) ID() string { return p.id }

// Hashed is how many bytes Seal read to checksum the point's files
// (files the VMM plugin summed, and the chunks of a mapped file unchanged
// since the parent point, are not read).
func (p *Pending) Hashed() int64 { return p.hashed }

// Beside gives Seal more files whose chunk sums it may take for the
// mapped file name (beyond the parent point's): shadows hashed while the
// machine ran (Presum). A ref must not be removed before Seal returns.
func (p *Pending) Beside(name string, refs ...Ref) {
	if p.beside == nil {
		p.beside = map[string][]Ref{}
	}
	p.beside[name] = append(p.beside[name], refs...)
}

// Discard removes the pending point.
func (p *Pending) Discard() error { return os.RemoveAll(p.dir) }

// Seal fsyncs and checksums files (relative to Dir), writes the manifest,
// and renames the point into place: until the rename the point does not
// exist, after it the point is complete. known holds checksums the VMM
// plugin computed as it wrote a file: such a file is fsynced and its size
// checked, not read again.
func (p *Pending) Seal(files []string, man Manifest, known ...FileSum) (Point, error) {
	man.Format = FormatVersion
	man.ID = p.id
	man.Machine = p.m.Name
	if man.Created.IsZero() {
		man.Created = time.Now().UTC()
	}
	man.Files = nil
	if err := p.dropDraft(); err != nil {
		return Point{}, fmt.Errorf("seal suspend point: %w", err)
	}
	sort.Strings(files)
	for _, name := range files {
		if name == ManifestFile || strings.Contains(name, "..") || filepath.IsAbs(name) {
			return Point{}, fmt.Errorf("seal suspend point: bad file name %q from the VMM plugin", name)
		}
		var fs FileSum
		var err error
		var hashed int64
		switch k, ok := findSum(known, name); {
		case ok:
			fs, err = syncKnown(filepath.Join(p.dir, name), k)
		case isMapped(known, name):
			refs := append(p.m.PointRef(man.Parent, name), p.beside[name]...)
			fs, hashed, err = sumChunks(context.Background(), filepath.Join(p.dir, name), refs)
		default:
			fs, err = sumFile(filepath.Join(p.dir, name), true)
			hashed = fs.Size
		}
		p.hashed += hashed
		if err != nil {
			return Point{}, fmt.Errorf("seal suspend point: %w", err)
		}
		fs.Name = name
		fs.Mapped = isMapped(known, name)
		fs.OnLoad = fs.OnLoad && len(fs.SHA256) == 64 // only a sum the plugin computed
		man.Files = append(man.Files, fs)
	}
	b, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return Point{}, err
	}
	if err := WriteFileAtomic(filepath.Join(p.dir, ManifestFile), append(b, '\n'), 0o600); err != nil {
		return Point{}, fmt.Errorf("seal suspend point: %w", err)
	}
	final := filepath.Join(p.m.PointsDir(), p.id)
	if err := os.Rename(p.dir, final); err != nil {
		return Point{}, fmt.Errorf("seal suspend point: %w", err)
	}
	if err := SyncDir(p.m.PointsDir()); err != nil {
		return Point{}, err
	}
	p.dir = final
	return Point{Dir: final, Manifest: man}, nil
}

// PointRef is the mapped file name of sealed point id with its sums, as
// a ref (none if the point or the file does not exist). A sealed point's
// files are never written again.
func (m *Machine) PointRef(id, name string) []Ref {
	if id == "" || strings.ContainsAny(id, "/.") {
		return nil
	}
	dir := filepath.Join(m.PointsDir(), id)
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil
	}
	var man Manifest
	if json.Unmarshal(b, &man) != nil || man.ID != id {
		return nil
	}
	for _, f := range man.Files {
		if f.Name == name {
			return []Ref{{Path: filepath.Join(dir, name), Sum: f}}
		}
	}
	return nil
}

func isMapped(known []FileSum, name string) bool {
	for _, k := range known {
		if k.Name == name && k.Mapped {
			return true
		}
	}
	return false
}

func findSum(known []FileSum, name string) (FileSum, bool) {
	for _, k := range known {
		if k.Name == name && len(k.SHA256) == 64 {
			return k, true
		}
	}
	return FileSum{}, false
}

// syncKnown fsyncs a file whose checksum the VMM plugin gave, and checks
// that its size is what the plugin wrote.
func syncKnown(path string, k FileSum) (FileSum, error) {
	f, err := os.Open(path)
	if err != nil {
		return FileSum{}, err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return FileSum{}, fmt.Errorf("sync %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		return FileSum{}, err
	}
	if st.Size() != k.Size {
		return FileSum{}, fmt.Errorf("%s is %d bytes, but the VMM plugin wrote %d: %w", path, st.Size(), k.Size, sdk.ErrCorrupt)
	}
	return k, nil
}

func sumFile(path string, sync bool) (FileSum, error) {
	return sumFileCtx(context.Background(), path, sync)
}

func sumFileCtx(ctx context.Context, path string, sync bool) (FileSum, error) {
	f, err := os.Open(path)
	if err != nil {
		return FileSum{}, err
	}
	defer f.Close()
	if sync {
		if err := f.Sync(); err != nil {
			return FileSum{}, fmt.Errorf("sync %s: %w", path, err)
		}
	}
	h := sha256.New()
	n, err := io.Copy(h, ctxio.Reader{Ctx: ctx, R: f})
	if err != nil {
		return FileSum{}, fmt.Errorf("read %s: %w", path, err)
	}
	return FileSum{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// CleanPending removes suspend points that were never sealed (a crash or
// power cut during suspend) and removals that were cut short. It returns
// how many it removed.
func (m *Machine) CleanPending() (int, error) {
	ents, err := os.ReadDir(m.PointsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("machine %s: %w", m.Name, err)
	}
	n := 0
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), pendingPrefix) {
			if err := os.RemoveAll(filepath.Join(m.PointsDir(), e.Name())); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}
