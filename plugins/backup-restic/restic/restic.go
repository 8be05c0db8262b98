// Package restic implements backup-restic: snapshots of the locked pad in
// a restic repository. restic deduplicates with content-defined chunks,
// so a small change to a large disk image sends about the changed part;
// a snapshot is written only when its data is complete, so an interrupted
// backup leaves every earlier snapshot restorable.
package restic

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/soulpad/soulpad/internal/fstree"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/backup"
)

// Version is the plugin's version.
const Version = "0.1.0"

// Config is the plugin's block in site.hcl.
type Config struct {
	// Repository is the restic repository: a directory on a second disk,
	// or any location restic takes (sftp:host:/path, rest:http://…).
	Repository string `json:"repository"`
	// PasswordFile holds the repository's password (restic encrypts the
	// repository with it); it is handed to restic by file, never on argv.
	PasswordFile string `json:"password_file"`
	// Restic is the binary (default restic from PATH).
	Restic string `json:"restic"`
	// Init creates the repository when it does not exist (default true).
	Init *bool `json:"init"`
}

// Plugin is backup-restic.
type Plugin struct {
	cfg Config

	mu sync.Mutex
	// found is the repository found (or made) already: it is not asked
	// for again until the config names another.
	found string
}

// New returns the plugin.
func New() *Plugin { return &Plugin{cfg: Config{Restic: "restic"}} }

var (
	_ backup.Backup   = (*Plugin)(nil)
	_ backup.Verifier = (*Plugin)(nil)
	_ backup.Pruner   = (*Plugin)(nil)
)

// Info implements sdk.Plugin.
func (p *Plugin) Info(context.Context, sdk.InfoRequest) (sdk.InfoResponse, error) {
	return sdk.InfoResponse{Name: "backup-restic", Kind: sdk.KindBackup, Version: Version, APIVersions: []int{backup.APIVersion},
		Capabilities: []string{backup.CapVerify, backup.CapPrune},
		Description:  "restic repository on a second disk or a LAN path: deduplicated, encrypted, verified"}, nil
}

// Configure implements sdk.Plugin.
func (p *Plugin) Configure(_ context.Context, req sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	c := Config{Restic: "restic"}
	if err := req.Decode(&c); err != nil {
		return sdk.ConfigureResponse{}, fmt.Errorf("backup-restic: %w", err)
	}
	// Relative paths are the site config's (the plugin's working directory).
	c.PasswordFile = sdk.ConfigPath(c.PasswordFile)
	c.Restic = sdk.ConfigProgram(c.Restic)
	if c.Repository != "" && !strings.Contains(c.Repository, ":") {
		c.Repository = sdk.ConfigPath(c.Repository) // a local directory
	}
	if c.Repository == "" || c.PasswordFile == "" {
		return sdk.ConfigureResponse{}, fmt.Errorf("backup-restic: repository and password_file must be set (e.g. repository = \"/media/backup/soulpad\"): %w", sdk.ErrInvalidConfig)
	}
	if _, err := os.Stat(c.PasswordFile); err != nil {
		return sdk.ConfigureResponse{}, fmt.Errorf("backup-restic: password_file: %v: %w", err, sdk.ErrInvalidConfig)
	}
	p.cfg = c
	return sdk.ConfigureResponse{}, nil
}

// run runs restic with the repository and password in its environment
// and returns its stdout; onLine, when set, gets each stdout line as it
// comes.
func (p *Plugin) run(ctx context.Context, dir string, onLine func([]byte), args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, p.cfg.Restic, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "RESTIC_REPOSITORY="+p.cfg.Repository, "RESTIC_PASSWORD_FILE="+p.cfg.PasswordFile, "LANG=C", "LC_ALL=C")
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("backup-restic: %s not found (install restic): %w", p.cfg.Restic, sdk.ErrIncompatibleHost)
		}
		return nil, err
	}
	var all bytes.Buffer
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		all.Write(sc.Bytes())
		all.WriteByte('\n')
		if onLine != nil {
			onLine(sc.Bytes())
		}
	}
	if err := cmd.Wait(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if ctx.Err() != nil {
			return all.Bytes(), fmt.Errorf("backup-restic: restic %s: %w", args[0], ctx.Err())
		}
		return all.Bytes(), fmt.Errorf("backup-restic: restic %s: %v: %s", args[0], err, msg)
	}
	return all.Bytes(), nil
}

// ready makes sure the repository exists (creating it when allowed),
// once per repository. Before a write (clear), it also clears locks left
// by a restic that was killed on this host.
func (p *Plugin) ready(ctx context.Context, clear bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.found != p.cfg.Repository {
		if _, err := p.run(ctx, "", nil, "cat", "config"); err != nil {
			if p.cfg.Init != nil && !*p.cfg.Init {
				return fmt.Errorf("backup-restic: no restic repository at %s (set init = true, or run `restic init`): %w", p.cfg.Repository, sdk.ErrNotFound)
			}
			if _, err := p.run(ctx, "", nil, "init"); err != nil {
				return fmt.Errorf("backup-restic: create the repository at %s: %w", p.cfg.Repository, err)
			}
			clear = false // a new repository has no locks
		}
		p.found = p.cfg.Repository
	}
	if clear {
		_, _ = p.run(ctx, "", nil, "unlock")
	}
	return nil
}

// Backup implements backup.Backup.
func (p *Plugin) Backup(ctx context.Context, req backup.BackupRequest) (backup.BackupResponse, error) {
	if st, err := os.Stat(req.SourceDir); err != nil || !st.IsDir() {
		return backup.BackupResponse{}, fmt.Errorf("backup-restic: source %s is not a directory: %w", req.SourceDir, sdk.ErrNotFound)
	}
	if err := p.ready(ctx, true); err != nil {
		return backup.BackupResponse{}, err
	}
	args := []string{"backup", "--json", "--host", "soulpad"}
	keys := make([]string, 0, len(req.Tags))
	for k := range req.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "--tag", k+"="+req.Tags[k])
	}
	var sum struct {
		MessageType string `json:"message_type"`
		SnapshotID  string `json:"snapshot_id"`
		DataAdded   uint64 `json:"data_added"`
		Processed   uint64 `json:"total_bytes_processed"`
		Files       uint64 `json:"total_files_processed"`
		// status
		TotalBytes uint64   `json:"total_bytes"`
		BytesDone  uint64   `json:"bytes_done"`
		TotalFiles uint64   `json:"total_files"`
		FilesDone  uint64   `json:"files_done"`
		Current    []string `json:"current_files"`
	}
	var res backup.BackupResponse
	_, err := p.run(ctx, req.SourceDir, func(line []byte) {
		if json.Unmarshal(line, &sum) != nil {
			return
		}
		switch sum.MessageType {
		case "status":
			if req.OnProgress != nil {
				pr := backup.Progress{Phase: "backup", BytesDone: sum.BytesDone, BytesTotal: sum.TotalBytes, FilesDone: sum.FilesDone, FilesTotal: sum.TotalFiles}
				if len(sum.Current) > 0 {
					pr.Current = sum.Current[0]
				}
				req.OnProgress(pr)
			}
		case "summary":
			res = backup.BackupResponse{SnapshotID: sum.SnapshotID, BytesScanned: sum.Processed, BytesSent: sum.DataAdded, Files: sum.Files}
		}
	}, append(args, ".")...)
	if err != nil {
		return backup.BackupResponse{}, err
	}
	if res.SnapshotID == "" {
		return backup.BackupResponse{}, errors.New("backup-restic: restic reported no snapshot")
	}
	if req.OnProgress != nil {
		req.OnProgress(backup.Progress{Phase: "done", BytesDone: res.BytesScanned, BytesTotal: res.BytesScanned, FilesDone: res.Files, FilesTotal: res.Files})
	}
	return res, nil
}

type snapshot struct {
	ID    string    `json:"id"`
	Short string    `json:"short_id"`
	Time  time.Time `json:"time"`
	Tags  []string  `json:"tags"`
}

func (p *Plugin) snapshots(ctx context.Context) ([]snapshot, error) {
	if err := p.ready(ctx, false); err != nil {
		return nil, err
	}
	out, err := p.run(ctx, "", nil, "snapshots", "--json", "--host", "soulpad")
	if err != nil {
		return nil, err
	}
	var ss []snapshot
	if err := json.Unmarshal(out, &ss); err != nil {
		return nil, fmt.Errorf("backup-restic: snapshots: %w", err)
	}
	sort.Slice(ss, func(i, j int) bool { return ss[i].Time.Before(ss[j].Time) })
	return ss, nil
}

// List implements backup.Backup.
func (p *Plugin) List(ctx context.Context, _ backup.ListRequest) (backup.ListResponse, error) {
	ss, err := p.snapshots(ctx)
	if err != nil {
		return backup.ListResponse{}, err
	}
	var out backup.ListResponse
	for _, s := range ss {
		tags := map[string]string{}
		for _, t := range s.Tags {
			k, v, _ := strings.Cut(t, "=")
			tags[k] = v
		}
		snap := backup.Snapshot{ID: s.Short, Time: s.Time, Tags: tags}
		// The size restored (what the pad held), as restic counts it.
		if b, err := p.run(ctx, "", nil, "stats", "--json", "--mode", "restore-size", s.ID); err == nil {
			var st struct {
				TotalSize uint64 `json:"total_size"`
			}
			if json.Unmarshal(b, &st) == nil {
				snap.SizeBytes = st.TotalSize
			}
		}
		out.Snapshots = append(out.Snapshots, snap)
	}
	return out, nil
}

// find resolves a snapshot ID (short or full) among ss.
func find(ss []snapshot, id string) (snapshot, bool) {
	for _, s := range ss {
		if id != "" && (s.ID == id || s.Short == id || strings.HasPrefix(s.ID, id) && len(id) >= 8) {
			return s, true
		}
	}
	return snapshot{}, false
}

// Restore implements backup.Backup: restic restores and verifies what it
// wrote (--verify).
func (p *Plugin) Restore(ctx context.Context, req backup.RestoreRequest) (backup.RestoreResponse, error) {
	if err := fstree.CheckRestoreTarget(req.TargetDir); err != nil {
		return backup.RestoreResponse{}, fmt.Errorf("backup-restic: %w", err)
	}
	ss, err := p.snapshots(ctx)
	if err != nil {
		return backup.RestoreResponse{}, err
	}
	s, ok := find(ss, req.SnapshotID)
	if !ok {
		return backup.RestoreResponse{}, fmt.Errorf("backup-restic: no snapshot %q (`soulpad backups` lists them): %w", req.SnapshotID, sdk.ErrNotFound)
	}
	if req.OnProgress != nil {
		req.OnProgress(backup.Progress{Phase: "restore", Current: s.Short})
	}
	if _, err := p.run(ctx, "", nil, "restore", s.ID, "--target", req.TargetDir, "--verify"); err != nil {
		return backup.RestoreResponse{}, err
	}
	var res backup.RestoreResponse
	res.Files, res.BytesRestored, err = fstree.Count(req.TargetDir)
	return res, err
}

// Verify implements backup.Verifier: restic check reads back every pack
// of the repository (--read-data), which covers the snapshot.
func (p *Plugin) Verify(ctx context.Context, req backup.VerifyRequest) (backup.VerifyResponse, error) {
	ss, err := p.snapshots(ctx)
	if err != nil {
		return backup.VerifyResponse{}, err
	}
	if _, ok := find(ss, req.SnapshotID); !ok && req.SnapshotID != "" {
		return backup.VerifyResponse{}, fmt.Errorf("backup-restic: no snapshot %q: %w", req.SnapshotID, sdk.ErrNotFound)
	}
	out, err := p.run(ctx, "", nil, "check", "--read-data")
	if err != nil {
		return backup.VerifyResponse{}, fmt.Errorf("%w: %w", err, sdk.ErrCorrupt)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return backup.VerifyResponse{Details: lines[len(lines)-1]}, nil
}

// Prune implements backup.Pruner.
func (p *Plugin) Prune(ctx context.Context, req backup.PruneRequest) (backup.PruneResponse, error) {
	if req.KeepLast < 1 {
		return backup.PruneResponse{}, fmt.Errorf("backup-restic: prune must keep at least one snapshot: %w", sdk.ErrInvalidArgument)
	}
	before, err := p.snapshots(ctx)
	if err != nil {
		return backup.PruneResponse{}, err
	}
	if err := p.ready(ctx, true); err != nil {
		return backup.PruneResponse{}, err
	}
	if _, err := p.run(ctx, "", nil, "forget", "--host", "soulpad", "--keep-last", fmt.Sprint(req.KeepLast), "--prune"); err != nil {
		return backup.PruneResponse{}, err
	}
	after, err := p.snapshots(ctx)
	if err != nil {
		return backup.PruneResponse{}, err
	}
	var res backup.PruneResponse
	for _, s := range before {
		if _, ok := find(after, s.ID); !ok {
			res.Removed = append(res.Removed, s.Short)
		}
	}
	return res, nil
}
