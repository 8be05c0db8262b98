// Package copybackup is a test backup plugin: each snapshot is a full copy
// of the source tree in target/<id>/ with a manifest of checksums, written
// under a temporary name and renamed when complete.
package copybackup

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

	"github.com/soulpad/soulpad/internal/fstree"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/backup"
)

// Config is the plugin's block.
type Config struct {
	Target string `json:"target"`
	// BrokenRestoreOmits deliberately breaks Restore: it leaves out the
	// files under this path (to show that backuptest fails such a plugin).
	BrokenRestoreOmits string `json:"broken_restore_omits"`
}

type manifest struct {
	ID    string            `json:"id"`
	Time  time.Time         `json:"time"`
	Tags  map[string]string `json:"tags"`
	Files map[string]string `json:"files"` // path → sha256
	Size  uint64            `json:"size"`
}

// Plugin is backup-copy.
type Plugin struct{ cfg Config }

// New returns the plugin.
func New() *Plugin { return &Plugin{} }

var (
	_ backup.Backup   = (*Plugin)(nil)
	_ backup.Verifier = (*Plugin)(nil)
)

// Info implements sdk.Plugin.
func (p *Plugin) Info(context.Context, sdk.InfoRequest) (sdk.InfoResponse, error) {
	return sdk.InfoResponse{Name: "backup-copy", Kind: sdk.KindBackup, Version: "0.1.0", APIVersions: []int{backup.APIVersion},
		Capabilities: []string{backup.CapVerify}, Description: "test backup plugin: full copies into a directory"}, nil
}

// Configure implements sdk.Plugin.
func (p *Plugin) Configure(_ context.Context, req sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	var c Config
	if err := req.Decode(&c); err != nil {
		return sdk.ConfigureResponse{}, err
	}
	if c.Target == "" {
		return sdk.ConfigureResponse{}, fmt.Errorf("backup-copy: target must be set: %w", sdk.ErrInvalidConfig)
	}
	p.cfg = c
	return sdk.ConfigureResponse{}, os.MkdirAll(c.Target, 0o700)
}

// Backup implements backup.Backup.
func (p *Plugin) Backup(ctx context.Context, req backup.BackupRequest) (backup.BackupResponse, error) {
	id := time.Now().UTC().Format("20060102T150405.000000000")
	tmp := filepath.Join(p.cfg.Target, ".partial-"+id)
	m := manifest{ID: id, Time: time.Now().UTC(), Tags: req.Tags, Files: map[string]string{}}
	var n uint64
	err := filepath.WalkDir(req.SourceDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(req.SourceDir, path)
		sum, size, err := copyFile(ctx, path, filepath.Join(tmp, rel), func(k uint64) {
			if req.OnProgress != nil {
				req.OnProgress(backup.Progress{Phase: "copy", BytesDone: n + k, FilesDone: uint64(len(m.Files)), Current: rel})
			}
		})
		if err != nil {
			return err
		}
		m.Files[rel] = sum
		n += size
		if req.OnProgress != nil {
			req.OnProgress(backup.Progress{Phase: "copy", BytesDone: n, FilesDone: uint64(len(m.Files)), Current: rel})
		}
		return nil
	})
	if err != nil {
		_ = os.RemoveAll(tmp)
		return backup.BackupResponse{}, fmt.Errorf("backup-copy: %w", err)
	}
	m.Size = n
	b, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(tmp, ".manifest.json"), b, 0o600); err != nil {
		_ = os.RemoveAll(tmp)
		return backup.BackupResponse{}, err
	}
	if err := os.Rename(tmp, filepath.Join(p.cfg.Target, id)); err != nil {
		_ = os.RemoveAll(tmp)
		return backup.BackupResponse{}, err
	}
	return backup.BackupResponse{SnapshotID: id, BytesScanned: n, BytesSent: n, Files: uint64(len(m.Files))}, nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
	n   uint64
	on  func(uint64)
}

func (c *ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(b)
	c.n += uint64(n)
	if c.on != nil && c.n%(8<<20) < uint64(n) {
		c.on(c.n) // about every 8 MiB
	}
	return n, err
}

func copyFile(ctx context.Context, src, dst string, onBytes func(uint64)) (string, uint64, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", 0, err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return "", 0, err
	}
	out, err := os.Create(dst)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), &ctxReader{ctx: ctx, r: in, on: onBytes})
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return hex.EncodeToString(h.Sum(nil)), uint64(n), err
}

func (p *Plugin) read(id string) (manifest, error) {
	var m manifest
	if id == "" || strings.ContainsAny(id, "/\\") || strings.HasPrefix(id, ".") {
		return m, fmt.Errorf("backup-copy: snapshot %q: %w", id, sdk.ErrNotFound)
	}
	b, err := os.ReadFile(filepath.Join(p.cfg.Target, filepath.Base(id), ".manifest.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return m, fmt.Errorf("backup-copy: snapshot %q: %w", id, sdk.ErrNotFound)
	}
	if err != nil {
		return m, err
	}
	err = json.Unmarshal(b, &m)
	return m, err
}

// List implements backup.Backup.
func (p *Plugin) List(context.Context, backup.ListRequest) (backup.ListResponse, error) {
	ents, err := os.ReadDir(p.cfg.Target)
	if err != nil {
		return backup.ListResponse{}, err
	}
	var out backup.ListResponse
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if m, err := p.read(e.Name()); err == nil {
			out.Snapshots = append(out.Snapshots, backup.Snapshot{ID: m.ID, Time: m.Time, SizeBytes: m.Size, Tags: m.Tags})
		}
	}
	sort.Slice(out.Snapshots, func(i, k int) bool { return out.Snapshots[i].Time.Before(out.Snapshots[k].Time) })
	return out, nil
}

// Restore implements backup.Backup.
func (p *Plugin) Restore(ctx context.Context, req backup.RestoreRequest) (backup.RestoreResponse, error) {
	m, err := p.read(req.SnapshotID)
	if err != nil {
		return backup.RestoreResponse{}, err
	}
	if err := fstree.CheckRestoreTarget(req.TargetDir); err != nil {
		return backup.RestoreResponse{}, fmt.Errorf("backup-copy: %w", err)
	}
	var n uint64
	for rel, want := range m.Files {
		if p.cfg.BrokenRestoreOmits != "" && strings.HasPrefix(rel, p.cfg.BrokenRestoreOmits) {
			continue
		}
		sum, size, err := copyFile(ctx, filepath.Join(p.cfg.Target, m.ID, rel), filepath.Join(req.TargetDir, rel), nil)
		if err != nil {
			return backup.RestoreResponse{}, err
		}
		if sum != want {
			return backup.RestoreResponse{}, fmt.Errorf("backup-copy: %s in snapshot %s: %w", rel, m.ID, sdk.ErrCorrupt)
		}
		n += size
		if req.OnProgress != nil {
			req.OnProgress(backup.Progress{Phase: "restore", BytesDone: n, BytesTotal: m.Size, Current: rel})
		}
	}
	return backup.RestoreResponse{BytesRestored: n, Files: uint64(len(m.Files))}, nil
}

// Verify implements backup.Verifier.
func (p *Plugin) Verify(_ context.Context, req backup.VerifyRequest) (backup.VerifyResponse, error) {
	m, err := p.read(req.SnapshotID)
	if err != nil {
		return backup.VerifyResponse{}, err
	}
	for rel, want := range m.Files {
		f, err := os.Open(filepath.Join(p.cfg.Target, m.ID, rel))
		if err != nil {
			return backup.VerifyResponse{}, fmt.Errorf("backup-copy: %s: %v: %w", rel, err, sdk.ErrCorrupt)
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil || hex.EncodeToString(h.Sum(nil)) != want {
			return backup.VerifyResponse{}, fmt.Errorf("backup-copy: %s does not match: %w", rel, sdk.ErrCorrupt)
		}
	}
	return backup.VerifyResponse{Details: fmt.Sprintf("%d files verified", len(m.Files))}, nil
}
