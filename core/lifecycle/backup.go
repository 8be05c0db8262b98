package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/core/pluginhost"
	"github.com/soulpad/soulpad/internal/fstree"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/backup"
)

// BackupOptions configure backup, list and restore.
type BackupOptions struct {
	Config *config.Config
	Log    hclog.Logger
	// Out receives progress for the user; nil discards it.
	Out io.Writer
	// Progress, when set, receives the backup's or restore's progress
	// instead of lines on Out.
	Progress ProgressFunc
	// PluginDirs, when set, replaces the search path derived from config.
	PluginDirs []string
}

// ErrPadInUse: a session runs the pad; back it up once it is suspended.
var ErrPadInUse = errors.New("the pad is in use by a running session")

func (o *BackupOptions) defaults() {
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.PluginDirs == nil {
		o.PluginDirs = PluginDirs(o.Config)
	}
}

// startBackup starts the configured backup plugin.
func startBackup(ctx context.Context, o BackupOptions) (*pluginhost.Host, *pluginhost.Plugin, error) {
	if o.Config.Plugins.Backup == "" {
		return nil, nil, fmt.Errorf("no backup plugin configured: set plugins.backup (e.g. \"backup-restic\") and its plugin block: %w", sdk.ErrInvalidConfig)
	}
	return startOne(ctx, o.Config, o.Log, o.PluginDirs, o.Config.Plugins.Backup, sdk.KindBackup)
}

// progressPrinter prints progress at most twice a second, or hands it to
// o.Progress.
func progressPrinter(o BackupOptions) func(backup.Progress) {
	out := o.Out
	var last time.Time
	return func(p backup.Progress) {
		if o.Progress != nil {
			o.Progress(Progress{Step: p.Phase, Done: p.BytesDone, Total: p.BytesTotal, Final: p.Phase == "done"})
			return
		}
		if time.Since(last) < 500*time.Millisecond && p.Phase != "done" {
			return
		}
		last = time.Now()
		switch {
		case p.BytesTotal > 0:
			fmt.Fprintf(out, "  %s: %s of %s%s (%.0f%%), %d of %d files\n", p.Phase, humanBytes(int64(p.BytesDone)), humanBytes(int64(p.BytesTotal)),
				counted(p.Phase), 100*float64(p.BytesDone)/float64(p.BytesTotal), p.FilesDone, p.FilesTotal)
		case p.Current != "":
			fmt.Fprintf(out, "  %s: %s\n", p.Phase, p.Current)
		default:
			fmt.Fprintf(out, "  %s\n", p.Phase)
		}
	}
}

// Backup backs the pad up as it sits locked: pad.json, the journal and
// the vault's cipher text with its sealed suspend points. The target
// never needs the key. A pad a session is running is refused.
func Backup(ctx context.Context, o BackupOptions) (backup.BackupResponse, error) {
	o.defaults()
	v, err := OpenPad(ctx, VaultOptions{Config: o.Config, Log: o.Log, Out: o.Out, Command: "backup", PluginDirs: o.PluginDirs})
	if err != nil {
		var le *pad.LockedError
		if errors.As(err, &le) && le.Live && le.Holder.Command == "run" {
			return backup.BackupResponse{}, withWayOut(fmt.Errorf("%w: %w; the backup takes the pad locked", ErrPadInUse, err), WayOut{Kind: WayOutSuspendFirst})
		}
		return backup.BackupResponse{}, err
	}
	defer v.Close()
	return v.backup(ctx, o)
}

// backup backs the opened pad up with the configured backup plugin.
func (v *Vault) backup(ctx context.Context, o BackupOptions) (backup.BackupResponse, error) {
	if o.Config.Plugins.Backup == "" {
		return backup.BackupResponse{}, fmt.Errorf("no backup plugin configured: set plugins.backup (e.g. \"backup-restic\") and its plugin block: %w", sdk.ErrInvalidConfig)
	}
	bp, err := v.start(ctx, o.Config.Plugins.Backup, sdk.KindBackup)
	if err != nil {
		return backup.BackupResponse{}, err
	}
	p, j := v.pad, v.r.journal
	fmt.Fprintf(o.Out, "backing up pad %s (%s) with %s…\n", p.Meta.ID, p.Dir, bp.Name)
	start := time.Now()
	res, err := bp.Backup().Backup(ctx, backup.BackupRequest{SourceDir: p.Dir, Tags: map[string]string{"pad": p.Meta.ID, "machine": p.Meta.Machine},
		OnProgress: progressPrinter(o)})
	if err != nil {
		_ = j.Append(pad.Entry{Stage: "backup", Event: "fail", Error: err.Error(), DurationMS: ms(time.Since(start))})
		return backup.BackupResponse{}, bp.Err("backup", err)
	}
	share := 0.0
	if res.BytesScanned > 0 {
		share = 100 * float64(res.BytesSent) / float64(res.BytesScanned)
	}
	msg := fmt.Sprintf("snapshot %s: %s scanned, %s sent (%.1f%%), %d files, %.1f s", res.SnapshotID, humanBytes(int64(res.BytesScanned)),
		humanBytes(int64(res.BytesSent)), share, res.Files, time.Since(start).Seconds())
	_ = j.Append(pad.Entry{Stage: "backup", Event: "end", Message: msg, DurationMS: ms(time.Since(start)), Fields: map[string]any{
		"snapshot": res.SnapshotID, "bytes_scanned": res.BytesScanned, "bytes_sent": res.BytesSent, "plugin": bp.Name}})
	fmt.Fprintln(o.Out, msg)
	return res, nil
}

// Backups lists the snapshots in the backup target, oldest first.
func Backups(ctx context.Context, o BackupOptions) ([]backup.Snapshot, error) {
	o.defaults()
	host, bp, err := startBackup(ctx, o)
	if err != nil {
		return nil, err
	}
	defer host.Close()
	l, err := bp.Backup().List(ctx, backup.ListRequest{})
	if err != nil {
		return nil, bp.Err("list", err)
	}
	return l.Snapshots, nil
}

// Restore writes snapshot id into target, a new pad directory (absent or
// empty; anything else is refused), and checks that a pad came back.
func Restore(ctx context.Context, o BackupOptions, id, target string) (backup.RestoreResponse, error) {
	o.defaults()
	if st, err := pad.PeekLock(target); err == nil && st.Held && st.Holder != nil {
		return backup.RestoreResponse{}, &pad.LockedError{Pad: target, Holder: *st.Holder, Live: true}
	}
	if err := fstree.CheckRestoreTarget(target); err != nil {
		return backup.RestoreResponse{}, err
	}
	host, bp, err := startBackup(ctx, o)
	if err != nil {
		return backup.RestoreResponse{}, err
	}
	defer host.Close()
	fmt.Fprintf(o.Out, "restoring snapshot %s into %s with %s…\n", id, target, bp.Name)
	res, err := bp.Backup().Restore(ctx, backup.RestoreRequest{SnapshotID: id, TargetDir: target, OnProgress: progressPrinter(o)})
	if err != nil {
		return backup.RestoreResponse{}, bp.Err("restore", err)
	}
	p, err := pad.Open(target)
	if err != nil {
		return res, fmt.Errorf("the restored snapshot is not a pad: %w", err)
	}
	// The snapshot was taken under the backup's own lock: the new pad is
	// free.
	if err := pad.ClearLock(p.Dir); err != nil {
		return res, err
	}
	fmt.Fprintf(o.Out, "restored pad %s: %d files, %s\n", p.Meta.ID, res.Files, humanBytes(int64(res.BytesRestored)))
	return res, nil
}

// VerifyBackup checks the backup target (snapshot id, or all of it when
// id is empty) through the backup plugin; a damaged target is an error
// wrapping sdk.ErrCorrupt.
func VerifyBackup(ctx context.Context, o BackupOptions, id string) (backup.VerifyResponse, error) {
	o.defaults()
	host, bp, err := startBackup(ctx, o)
	if err != nil {
		return backup.VerifyResponse{}, err
	}
	defer host.Close()
	if !bp.Info.Has(backup.CapVerify) {
		return backup.VerifyResponse{}, fmt.Errorf("backup plugin %s cannot verify its target: %w", bp.Name, sdk.ErrUnsupported)
	}
	out, err := bp.Backup().(backup.Verifier).Verify(ctx, backup.VerifyRequest{SnapshotID: id})
	if err != nil {
		return out, bp.Err("verify", err)
	}
	return out, nil
}

// PruneBackups removes all but the newest keepLast snapshots.
func PruneBackups(ctx context.Context, o BackupOptions, keepLast int) (backup.PruneResponse, error) {
	o.defaults()
	if keepLast < 1 {
		return backup.PruneResponse{}, fmt.Errorf("keep at least one snapshot (--keep-last 1 or more): %w", sdk.ErrInvalidArgument)
	}
	host, bp, err := startBackup(ctx, o)
	if err != nil {
		return backup.PruneResponse{}, err
	}
	defer host.Close()
	if !bp.Info.Has(backup.CapPrune) {
		return backup.PruneResponse{}, fmt.Errorf("backup plugin %s cannot prune its target: %w", bp.Name, sdk.ErrUnsupported)
	}
	out, err := bp.Backup().(backup.Pruner).Prune(ctx, backup.PruneRequest{KeepLast: keepLast})
	if err != nil {
		return out, bp.Err("prune", err)
	}
	return out, nil
}

// backupWanted: session.backup_after_suspend, and the session suspended
// and shut down well.
func (s *Session) backupWanted() bool {
	return s.cfg.Session.BackupAfterSuspend && s.result.Outcome == OutcomeSuspended && s.r.failed == nil
}

// backupAfterSuspend backs the just-suspended pad up. It never keeps the
// user from leaving: a request to suspend (Ctrl-C) skips it, and so does
// a failure; either way the next backup catches up.
func (s *Session) backupAfterSuspend(ctx context.Context, note *string) error {
	s.r.progress("  backing up (session.backup_after_suspend); Ctrl-C skips it, the next backup catches up")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	select { // a request left from before the backup is not a skip
	case <-s.requests:
	default:
	}
	skipped := make(chan struct{})
	go func() {
		select {
		case <-s.requests:
			close(skipped)
			cancel()
		case <-ctx.Done():
		}
	}()
	_, err := s.backup(ctx, BackupOptions{Config: s.cfg, Log: s.log, Out: s.out, Progress: s.opts.Progress})
	if err == nil {
		*note = "backed up"
		return nil
	}
	why := err.Error()
	select {
	case <-skipped:
		why = "skipped"
	default:
	}
	s.r.progress("  backup not made (%s); the next `soulpad backup` or suspend catches up", why)
	_ = s.r.journal.Append(pad.Entry{Stage: StageBackup, Event: "info", Message: "backup after suspend not made: " + why})
	*note = "not made: " + why
	return nil
}
