// Package chunkstage keeps a staging copy of a tree for file-level backup
// clients (IBM's dsmc): small files are copied as they are, and a large
// file becomes a directory of fixed-size chunk files with a manifest, so
// an incremental backup after a small change to a multi-GiB disk image
// sends the changed chunks, not the file. A chunk whose content did not
// change is not rewritten: its size and modification time stay, and the
// client skips it. Assemble turns a restored staging tree back into the
// original files, verifying every chunk.
package chunkstage

import (
	"bytes"
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
	"strings"
	"time"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/atomicfile"
)

// Suffix names a chunked file's directory: <name>.soulpad-chunks/.
const Suffix = ".soulpad-chunks"

// ManifestName is the manifest inside a chunk directory.
const ManifestName = "manifest.json"

// Options size the chunking.
type Options struct {
	// Threshold: files of at least this many bytes are chunked.
	Threshold int64
	// ChunkSize is the size of every chunk but the last.
	ChunkSize int64
	// OnFile, when set, is called with each file's path and size as it is
	// staged.
	OnFile func(rel string, size int64)
}

// Manifest describes a chunked file.
type Manifest struct {
	Size      int64       `json:"size"`
	ChunkSize int64       `json:"chunk_size"`
	Mode      fs.FileMode `json:"mode"`
	ModTime   time.Time   `json:"mod_time"`
	Chunks    []string    `json:"chunks"` // sha256 of each chunk
	SHA256    string      `json:"sha256"`
}

// Stats count a Stage.
type Stats struct {
	Files        uint64
	BytesScanned uint64
	// BytesWritten is what changed in the staging tree.
	BytesWritten uint64
}

func chunkName(i int) string { return fmt.Sprintf("chunk-%06d", i) }

// Stage makes staging mirror src. It never touches src, and stops with
// ctx's error once ctx is done (what was staged stays valid).
func Stage(ctx context.Context, src, staging string, o Options) (Stats, error) {
	var st Stats
	if err := os.MkdirAll(staging, 0o700); err != nil {
		return st, err
	}
	keep := map[string]bool{}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "." {
			return nil
		}
		if strings.HasSuffix(rel, Suffix) {
			return fmt.Errorf("chunkstage: %s: a source name may not end in %s", p, Suffix)
		}
		dst := filepath.Join(staging, rel)
		switch {
		case d.IsDir():
			keep[rel] = true
			return os.MkdirAll(dst, 0o700)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			st.Files++
			st.BytesScanned += uint64(info.Size())
			if o.OnFile != nil {
				o.OnFile(rel, info.Size())
			}
			if info.Size() >= o.Threshold {
				keep[rel+Suffix] = true
				n, err := stageChunked(ctx, p, dst+Suffix, info, o.ChunkSize)
				st.BytesWritten += uint64(n)
				return err
			}
			keep[rel] = true
			n, err := stageSmall(p, dst, info)
			st.BytesWritten += uint64(n)
			return err
		}
		return nil // sockets, devices, links: not part of a pad
	})
	if err != nil {
		return st, err
	}
	// Drop what src no longer has.
	var gone []string
	_ = filepath.WalkDir(staging, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(staging, p)
		if rel == "." {
			return nil
		}
		if d.IsDir() && strings.HasSuffix(rel, Suffix) {
			if !keep[rel] {
				gone = append(gone, p)
			}
			return filepath.SkipDir
		}
		if !keep[rel] && !isControl(rel) {
			gone = append(gone, p)
			if d.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
	for _, g := range gone {
		if err := os.RemoveAll(g); err != nil {
			return st, err
		}
	}
	return st, nil
}

// isControl: files the backup plugin keeps in the staging root.
func isControl(rel string) bool { return strings.HasPrefix(rel, ".soulpad-") }

// stageSmall copies src to dst unless dst has the same size, time and
// content already.
func stageSmall(src, dst string, info fs.FileInfo) (int64, error) {
	if os.RemoveAll(dst+Suffix) != nil {
		return 0, fmt.Errorf("chunkstage: cannot clear %s", dst+Suffix)
	}
	if di, err := os.Stat(dst); err == nil && di.Size() == info.Size() && di.ModTime().Equal(info.ModTime()) && di.Mode().IsRegular() {
		return 0, nil
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return 0, err
	}
	if err := writeAtomic(dst, b, info.Mode().Perm(), info.ModTime()); err != nil {
		return 0, err
	}
	return int64(len(b)), nil
}

// stageChunked writes the chunks of src that changed into dir.
func stageChunked(ctx context.Context, src, dir string, info fs.FileInfo, chunk int64) (int64, error) {
	if di, err := os.Stat(strings.TrimSuffix(dir, Suffix)); err == nil && !di.IsDir() {
		os.Remove(strings.TrimSuffix(dir, Suffix)) // it was small before
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	var old Manifest
	if b, err := os.ReadFile(filepath.Join(dir, ManifestName)); err == nil {
		_ = json.Unmarshal(b, &old)
	}
	if old.ChunkSize != chunk {
		old = Manifest{}
	}
	f, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	m := Manifest{Size: info.Size(), ChunkSize: chunk, Mode: info.Mode().Perm(), ModTime: info.ModTime()}
	whole := sha256.New()
	buf := make([]byte, chunk)
	var written int64
	for i := 0; ; i++ {
		if err := ctx.Err(); err != nil {
			return written, err // the old manifest stays: chunks it names may be newer, never older than src was
		}
		n, err := io.ReadFull(f, buf)
		if n == 0 {
			break
		}
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return written, err
		}
		whole.Write(buf[:n])
		sum := sha256.Sum256(buf[:n])
		h := hex.EncodeToString(sum[:])
		m.Chunks = append(m.Chunks, h)
		cp := filepath.Join(dir, chunkName(i))
		if i < len(old.Chunks) && old.Chunks[i] == h {
			if ci, err := os.Stat(cp); err == nil && ci.Size() == int64(n) {
				continue // unchanged: leave the file, and its time, alone
			}
		}
		if err := writeAtomic(cp, buf[:n], 0o600, time.Time{}); err != nil {
			return written, err
		}
		written += int64(n)
		if n < len(buf) {
			break
		}
	}
	m.SHA256 = hex.EncodeToString(whole.Sum(nil))
	for i := len(m.Chunks); i < len(old.Chunks); i++ {
		os.Remove(filepath.Join(dir, chunkName(i)))
	}
	b, _ := json.MarshalIndent(m, "", " ")
	if ob, err := os.ReadFile(filepath.Join(dir, ManifestName)); err == nil && bytes.Equal(ob, b) {
		return written, nil
	}
	if err := writeAtomic(filepath.Join(dir, ManifestName), b, 0o600, time.Time{}); err != nil {
		return written, err
	}
	return written + int64(len(b)), nil
}

func writeAtomic(path string, b []byte, perm fs.FileMode, mtime time.Time) error {
	return atomicfile.Write(path, perm, mtime, bytes.NewReader(b))
}

// Assemble turns every chunk directory under dir back into its file,
// verifying each chunk and the whole; a mismatch fails with
// sdk.ErrCorrupt and leaves the chunks in place.
func Assemble(dir string) error {
	var chunked []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasSuffix(p, Suffix) {
			chunked = append(chunked, p)
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, c := range chunked {
		if err := assembleOne(c); err != nil {
			return err
		}
	}
	return nil
}

func assembleOne(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return fmt.Errorf("chunkstage: %s: %v: %w", dir, err, sdk.ErrCorrupt)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("chunkstage: %s: manifest: %v: %w", dir, err, sdk.ErrCorrupt)
	}
	out := strings.TrimSuffix(dir, Suffix)
	tmp := out + ".assembling"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, m.Mode|0o200)
	if err != nil {
		return err
	}
	whole := sha256.New()
	var size int64
	for i, want := range m.Chunks {
		c, err := os.ReadFile(filepath.Join(dir, chunkName(i)))
		if err != nil {
			f.Close()
			os.Remove(tmp)
			return fmt.Errorf("chunkstage: %s: chunk %d: %v: %w", out, i, err, sdk.ErrCorrupt)
		}
		sum := sha256.Sum256(c)
		if hex.EncodeToString(sum[:]) != want {
			f.Close()
			os.Remove(tmp)
			return fmt.Errorf("chunkstage: %s: chunk %d does not match its checksum: %w", out, i, sdk.ErrCorrupt)
		}
		whole.Write(c)
		size += int64(len(c))
		if _, err := f.Write(c); err != nil {
			f.Close()
			os.Remove(tmp)
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	f.Close()
	if size != m.Size || hex.EncodeToString(whole.Sum(nil)) != m.SHA256 {
		os.Remove(tmp)
		return fmt.Errorf("chunkstage: %s: reassembled file does not match (size %d, want %d): %w", out, size, m.Size, sdk.ErrCorrupt)
	}
	if err := os.Chtimes(tmp, m.ModTime, m.ModTime); err != nil {
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}
