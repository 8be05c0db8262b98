// Package tsm implements backup-tsm: the locked pad backed up to an IBM
// Storage Protect (TSM) server with the backup-archive client, dsmc.
//
// A file-level client resends a whole file that changed, and TSM's
// subfile backup stops at 2 GB; a pad holds multi-GiB disk images that
// change a little each session. So the pad is first mirrored into a
// staging directory (package chunkstage) where every large file is a
// directory of fixed-size chunk files: unchanged chunks stay unchanged
// files, and `dsmc incremental` sends only the changed ones. A restore
// brings the staging tree back at the snapshot's point in time and
// reassembles the files, verifying every chunk.
//
// A snapshot is marked by backing up .soulpad-snapshot after the data
// succeeded; its backup time is the snapshot's ID and point in time, so
// an interrupted backup adds no snapshot and leaves every earlier one
// restorable.
package tsm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/soulpad/soulpad/internal/chunkstage"
	"github.com/soulpad/soulpad/internal/fstree"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/backup"
)

// Version is the plugin's version.
const Version = "0.1.0"

// marker is backed up last in each snapshot.
const marker = ".soulpad-snapshot"

// idLayout is a snapshot ID: the marker's backup time, to the second.
const idLayout = "20060102T150405"

// Config is the plugin's block in site.hcl.
type Config struct {
	// Dsmc is the client binary (default dsmc from PATH).
	Dsmc string `json:"dsmc"`
	// OptFile is the client option file (dsm.opt: server address, node
	// name, PASSWORDACCESS). Required.
	OptFile string `json:"optfile"`
	// Server names the server stanza of dsm.sys to use (-servername);
	// empty takes the option file's default.
	Server string `json:"server"`
	// Node backs up as this node (-virtualnodename); empty takes the
	// option file's NODENAME.
	Node string `json:"node"`
	// PasswordFile holds the node's password; it is typed at the
	// client's prompt on stdin, never put on its command line. Leave it
	// empty with PASSWORDACCESS GENERATE.
	PasswordFile string `json:"password_file"`
	// StagingDir keeps the chunked mirror between backups (it must stay,
	// or every chunk is sent again). Default /var/tmp/soulpad-tsm.
	StagingDir string `json:"staging_dir"`
	// ChunkMiB is the chunk size; LargeFileMiB the size from which files
	// are chunked. Defaults 4 and 64.
	ChunkMiB     int `json:"chunk_mib"`
	LargeFileMiB int `json:"large_file_mib"`
}

// Plugin is backup-tsm.
type Plugin struct {
	cfg Config
	mu  sync.Mutex
}

// New returns the plugin.
func New() *Plugin { return &Plugin{cfg: defaults()} }

func defaults() Config {
	return Config{Dsmc: "dsmc", StagingDir: "/var/tmp/soulpad-tsm", ChunkMiB: 4, LargeFileMiB: 64}
}

var _ backup.Backup = (*Plugin)(nil)

// Info implements sdk.Plugin.
func (p *Plugin) Info(context.Context, sdk.InfoRequest) (sdk.InfoResponse, error) {
	return sdk.InfoResponse{Name: "backup-tsm", Kind: sdk.KindBackup, Version: Version, APIVersions: []int{backup.APIVersion},
		Description: "IBM Storage Protect (TSM) through dsmc; large files as chunk files so increments send what changed"}, nil
}

// Configure implements sdk.Plugin.
func (p *Plugin) Configure(_ context.Context, req sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	c := defaults()
	if err := req.Decode(&c); err != nil {
		return sdk.ConfigureResponse{}, fmt.Errorf("backup-tsm: %w", err)
	}
	// Relative paths are the site config's (the plugin's working directory).
	c.Dsmc = sdk.ConfigProgram(c.Dsmc)
	c.OptFile, c.PasswordFile, c.StagingDir = sdk.ConfigPath(c.OptFile), sdk.ConfigPath(c.PasswordFile), sdk.ConfigPath(c.StagingDir)
	if c.OptFile == "" {
		return sdk.ConfigureResponse{}, fmt.Errorf("backup-tsm: optfile must name the client option file (dsm.opt): %w", sdk.ErrInvalidConfig)
	}
	if c.ChunkMiB < 1 || c.LargeFileMiB < c.ChunkMiB {
		return sdk.ConfigureResponse{}, fmt.Errorf("backup-tsm: chunk_mib must be ≥ 1 and large_file_mib ≥ chunk_mib: %w", sdk.ErrInvalidConfig)
	}
	p.cfg = c
	return sdk.ConfigureResponse{}, nil
}

// Summary is what dsmc's closing lines say.
type Summary struct {
	Inspected, BackedUp, Expired, Failed, Restored uint64
	BytesInspected, BytesTransferred               uint64
}

var (
	countRE = regexp.MustCompile(`^Total number of objects (\w[\w ]*?):\s+([\d,]+)\s*$`)
	bytesRE = regexp.MustCompile(`^Total number of bytes (\w+):\s+([\d,.]+)\s*([KMGT]?B)\s*$`)
)

// ParseSummary reads dsmc's summary lines.
func ParseSummary(out []byte) Summary {
	var s Summary
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if m := countRE.FindStringSubmatch(l); m != nil {
			n, _ := strconv.ParseUint(strings.ReplaceAll(m[2], ",", ""), 10, 64)
			switch m[1] {
			case "inspected":
				s.Inspected = n
			case "backed up":
				s.BackedUp = n
			case "expired":
				s.Expired = n
			case "failed":
				s.Failed = n
			case "restored":
				s.Restored = n
			}
		} else if m := bytesRE.FindStringSubmatch(l); m != nil {
			v, _ := strconv.ParseFloat(strings.ReplaceAll(m[2], ",", ""), 64)
			mult := map[string]float64{"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}[m[3]]
			n := uint64(v * mult)
			switch m[1] {
			case "inspected":
				s.BytesInspected = n
			case "transferred":
				s.BytesTransferred = n
			}
		}
	}
	return s
}

// dsmc runs the client. Return codes: 0 ok, 4 some files skipped, 8
// warnings, 12 errors; rc is returned with the output, err only for 12
// and for a client that could not run.
func (p *Plugin) dsmc(ctx context.Context, args ...string) ([]byte, int, error) {
	args = append(args, "-optfile="+p.cfg.OptFile, "-dateformat=3", "-timeformat=1")
	if p.cfg.Server != "" {
		args = append(args, "-servername="+p.cfg.Server)
	}
	if p.cfg.Node != "" {
		args = append(args, "-virtualnodename="+p.cfg.Node)
	}
	cmd := exec.CommandContext(ctx, p.cfg.Dsmc, args...)
	cmd.Env = append(os.Environ(), "LANG=C", "LC_ALL=C")
	cmd.WaitDelay = 5 * time.Second
	if p.cfg.PasswordFile != "" {
		pw, err := os.ReadFile(p.cfg.PasswordFile)
		if err != nil {
			return nil, 12, fmt.Errorf("backup-tsm: password_file: %w", err)
		}
		cmd.Stdin = bytes.NewReader(append(bytes.TrimRight(pw, "\r\n"), '\n'))
	}
	out, err := cmd.CombinedOutput()
	if err == nil {
		return out, 0, nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		if errors.Is(err, exec.ErrNotFound) {
			return out, 12, fmt.Errorf("backup-tsm: %s not found (install the IBM Storage Protect client, or set dsmc): %w", p.cfg.Dsmc, sdk.ErrIncompatibleHost)
		}
		return out, 12, fmt.Errorf("backup-tsm: dsmc %s: %w", args[0], err)
	}
	rc := ee.ExitCode()
	if ctx.Err() != nil {
		return out, rc, fmt.Errorf("backup-tsm: dsmc %s: %w", args[0], ctx.Err())
	}
	if rc >= 12 || rc < 0 {
		return out, rc, fmt.Errorf("backup-tsm: dsmc %s failed (rc %d): %s", args[0], rc, lastANS(out))
	}
	return out, rc, nil
}

// lastANS is the client's last ANS message, or its last line.
func lastANS(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(strings.TrimSpace(lines[i]), "ANS") {
			return strings.TrimSpace(lines[i])
		}
	}
	return lines[len(lines)-1]
}

// privateStaging makes the staging directory this user's alone, or
// refuses it: its default is under /var/tmp, where any local user could
// have made it first, or put a symlink in its place, to read the pad's
// cipher text or have files written elsewhere.
func (p *Plugin) privateStaging() error {
	if err := os.MkdirAll(filepath.Dir(p.cfg.StagingDir), 0o755); err != nil {
		return fmt.Errorf("backup-tsm: staging_dir: %w", err)
	}
	if err := sdk.MakePrivateDir(p.cfg.StagingDir); err != nil {
		return fmt.Errorf("backup-tsm: staging_dir: %w: %w", err, sdk.ErrInvalidConfig)
	}
	return nil
}

func (p *Plugin) staging(src string) string {
	abs, _ := filepath.Abs(src)
	return filepath.Join(p.cfg.StagingDir, strings.NewReplacer("/", "_", ":", "_").Replace(strings.Trim(abs, "/")))
}

// Backup implements backup.Backup.
func (p *Plugin) Backup(ctx context.Context, req backup.BackupRequest) (backup.BackupResponse, error) {
	if st, err := os.Stat(req.SourceDir); err != nil || !st.IsDir() {
		return backup.BackupResponse{}, fmt.Errorf("backup-tsm: source %s is not a directory: %w", req.SourceDir, sdk.ErrNotFound)
	}
	stage := p.staging(req.SourceDir)
	var done uint64
	progress := func(phase, cur string, n uint64) {
		if req.OnProgress != nil {
			req.OnProgress(backup.Progress{Phase: phase, Current: cur, BytesDone: n})
		}
	}
	p.mu.Lock() // one backup or restore at a time: they share the staging tree
	defer p.mu.Unlock()
	if err := p.privateStaging(); err != nil {
		return backup.BackupResponse{}, err
	}
	st, err := chunkstage.Stage(ctx, req.SourceDir, stage, chunkstage.Options{
		Threshold: int64(p.cfg.LargeFileMiB) << 20, ChunkSize: int64(p.cfg.ChunkMiB) << 20,
		OnFile: func(rel string, size int64) { done += uint64(size); progress("staging", rel, done) },
	})
	if err != nil {
		return backup.BackupResponse{}, fmt.Errorf("backup-tsm: staging %s: %w", stage, err)
	}
	// A snapshot is restored as of its marker's second: nothing of this
	// backup may land in the last marker's second.
	if last, ok := p.lastSnapshot(ctx, stage); ok {
		if wait := time.Until(last.Add(time.Second)); wait > 0 {
			time.Sleep(wait)
		}
	}
	progress("dsmc incremental", stage, done)
	out, rc, err := p.dsmc(ctx, "incremental", stage+"/", "-subdir=yes")
	if err != nil {
		return backup.BackupResponse{}, err
	}
	data := ParseSummary(out)
	if rc != 0 || data.Failed > 0 {
		// Data missing from the server: no snapshot is marked.
		return backup.BackupResponse{}, fmt.Errorf("backup-tsm: dsmc incremental rc %d, %d objects failed (%s); no snapshot was marked, earlier ones are intact", rc, data.Failed, lastANS(out))
	}
	if err := os.WriteFile(filepath.Join(stage, marker), []byte(time.Now().UTC().Format(time.RFC3339Nano)+"\n"), 0o600); err != nil {
		return backup.BackupResponse{}, err
	}
	out, rc, err = p.dsmc(ctx, "incremental", filepath.Join(stage, marker))
	if err != nil {
		return backup.BackupResponse{}, err
	}
	if rc != 0 {
		return backup.BackupResponse{}, fmt.Errorf("backup-tsm: marking the snapshot: rc %d: %s", rc, lastANS(out))
	}
	mk := ParseSummary(out)
	last, ok := p.lastSnapshot(ctx, stage)
	if !ok {
		return backup.BackupResponse{}, errors.New("backup-tsm: the server does not list the snapshot just marked")
	}
	progress("done", "", done)
	return backup.BackupResponse{SnapshotID: last.Format(idLayout), BytesScanned: st.BytesScanned,
		BytesSent: data.BytesTransferred + mk.BytesTransferred, Files: st.Files}, nil
}

var dateRE = regexp.MustCompile(`(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})`)

// snapshots are the marker's backup times, oldest first.
func (p *Plugin) snapshots(ctx context.Context, stage string) ([]time.Time, error) {
	out, rc, err := p.dsmc(ctx, "query", "backup", filepath.Join(stage, marker), "-inactive")
	if err != nil {
		return nil, err
	}
	if rc == 8 && strings.Contains(string(out), "ANS1092W") {
		return nil, nil
	}
	var ts []time.Time
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.HasSuffix(strings.TrimSpace(l), marker) {
			continue
		}
		if m := dateRE.FindString(l); m != "" {
			if t, err := time.ParseInLocation("2006-01-02 15:04:05", m, time.Local); err == nil {
				ts = append(ts, t)
			}
		}
	}
	return ts, nil
}

func (p *Plugin) lastSnapshot(ctx context.Context, stage string) (time.Time, bool) {
	ts, err := p.snapshots(ctx, stage)
	if err != nil || len(ts) == 0 {
		return time.Time{}, false
	}
	return ts[len(ts)-1], true
}

// stages lists the staging directories this plugin keeps (one per pad
// path it backed up); none before the first backup. A staging directory
// that is not this user's alone is refused (see privateStaging).
func (p *Plugin) stages() ([]string, error) {
	if _, err := os.Lstat(p.cfg.StagingDir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err := sdk.CheckPrivateDir(p.cfg.StagingDir); err != nil {
		return nil, fmt.Errorf("backup-tsm: staging_dir: %w: %w", err, sdk.ErrInvalidConfig)
	}
	ents, _ := os.ReadDir(p.cfg.StagingDir)
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, filepath.Join(p.cfg.StagingDir, e.Name()))
		}
	}
	return out, nil
}

// List implements backup.Backup: the snapshots of every pad path this
// client backed up.
func (p *Plugin) List(ctx context.Context, _ backup.ListRequest) (backup.ListResponse, error) {
	var res backup.ListResponse
	stages, err := p.stages()
	if err != nil {
		return res, err
	}
	for _, stage := range stages {
		ts, err := p.snapshots(ctx, stage)
		if err != nil {
			return res, err
		}
		for _, t := range ts {
			res.Snapshots = append(res.Snapshots, backup.Snapshot{ID: t.Format(idLayout), Time: t, Tags: map[string]string{"source": stage}})
		}
	}
	return res, nil
}

// Restore implements backup.Backup: a point-in-time restore of the
// staging tree at the snapshot's time, then reassembly.
func (p *Plugin) Restore(ctx context.Context, req backup.RestoreRequest) (backup.RestoreResponse, error) {
	if err := fstree.CheckRestoreTarget(req.TargetDir); err != nil {
		return backup.RestoreResponse{}, fmt.Errorf("backup-tsm: %w", err)
	}
	at, err := time.ParseInLocation(idLayout, req.SnapshotID, time.Local)
	if err != nil {
		return backup.RestoreResponse{}, fmt.Errorf("backup-tsm: %q is not a snapshot ID (yyyymmddThhmmss; `soulpad backups` lists them): %w", req.SnapshotID, sdk.ErrNotFound)
	}
	var stage string
	stages, err := p.stages()
	if err != nil {
		return backup.RestoreResponse{}, err
	}
	for _, s := range stages {
		ts, err := p.snapshots(ctx, s)
		if err != nil {
			return backup.RestoreResponse{}, err
		}
		for _, t := range ts {
			if t.Equal(at) {
				stage = s
			}
		}
	}
	if stage == "" {
		return backup.RestoreResponse{}, fmt.Errorf("backup-tsm: no snapshot %s: %w", req.SnapshotID, sdk.ErrNotFound)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if req.OnProgress != nil {
		req.OnProgress(backup.Progress{Phase: "dsmc restore", Current: req.SnapshotID})
	}
	tmp := strings.TrimSuffix(req.TargetDir, "/") + ".restoring"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return backup.RestoreResponse{}, err
	}
	out, rc, err := p.dsmc(ctx, "restore", stage+"/*", tmp+"/", "-subdir=yes", "-replace=no",
		"-pitdate="+at.Format("2006-01-02"), "-pittime="+at.Format("15:04:05"))
	if err != nil {
		os.RemoveAll(tmp)
		return backup.RestoreResponse{}, err
	}
	if rc != 0 {
		os.RemoveAll(tmp)
		return backup.RestoreResponse{}, fmt.Errorf("backup-tsm: dsmc restore rc %d: %s", rc, lastANS(out))
	}
	os.Remove(filepath.Join(tmp, marker))
	if err := chunkstage.Assemble(tmp); err != nil {
		os.RemoveAll(tmp)
		return backup.RestoreResponse{}, fmt.Errorf("backup-tsm: %w", err)
	}
	os.Remove(req.TargetDir) // empty, or absent
	if err := os.MkdirAll(filepath.Dir(req.TargetDir), 0o700); err != nil {
		return backup.RestoreResponse{}, err
	}
	if err := os.Rename(tmp, req.TargetDir); err != nil {
		return backup.RestoreResponse{}, err
	}
	var res backup.RestoreResponse
	res.Files, res.BytesRestored, err = fstree.Count(req.TargetDir)
	return res, err
}
