package restic_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/plugins/backup-restic/restic"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/backup"
	"github.com/soulpad/soulpad/sdk/backup/backuptest"
	"github.com/soulpad/soulpad/sdk/sdktest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

func requireRestic(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("restic"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("restic is not installed; `make test` installs it (scripts/deps.sh)")
		}
		t.Skip("restic is not installed (scripts/deps.sh installs it)")
	}
}

// config is a fresh repository and its password file.
func config(t testing.TB) []byte {
	t.Helper()
	dir := t.TempDir()
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte("a backup repository password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]string{"repository": filepath.Join(dir, "repo"), "password_file": pw})
	return b
}

func TestConformanceInProcess(t *testing.T) {
	requireRestic(t)
	backuptest.Run(t, sdktest.InProcess(t, restic.New()).(backup.Backup), backuptest.Options{Config: config(t)})
}

func TestConformanceBinary(t *testing.T) {
	requireRestic(t)
	backuptest.Run(t, sdktest.Binary(t, testbin.Build(t, "plugins/backup-restic")).(backup.Backup), backuptest.Options{Config: config(t)})
}

func TestPruneKeepsTheNewest(t *testing.T) {
	requireRestic(t)
	ctx := context.Background()
	p := sdktest.InProcess(t, restic.New()).(backup.Backup)
	if _, err := p.Configure(ctx, sdk.ConfigureRequest{Config: config(t)}); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	var ids []string
	for _, content := range []string{"one", "two", "three"} {
		os.WriteFile(filepath.Join(src, "f"), []byte(content), 0o600)
		r, err := p.Backup(ctx, backup.BackupRequest{SourceDir: src})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.SnapshotID)
	}
	if _, err := p.(backup.Pruner).Prune(ctx, backup.PruneRequest{KeepLast: 0}); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Fatalf("Prune keeping none = %v; want sdk.ErrInvalidArgument", err)
	}
	res, err := p.(backup.Pruner).Prune(ctx, backup.PruneRequest{KeepLast: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 2 {
		t.Fatalf("Prune removed %v; want the two older of %v", res.Removed, ids)
	}
	l, err := p.List(ctx, backup.ListRequest{})
	if err != nil || len(l.Snapshots) != 1 || l.Snapshots[0].ID != ids[2] {
		t.Fatalf("after prune: %+v, %v; want only %s", l.Snapshots, err, ids[2])
	}
	dst := filepath.Join(t.TempDir(), "r")
	if _, err := p.Restore(ctx, backup.RestoreRequest{SnapshotID: ids[2], TargetDir: dst}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "f")); string(b) != "three" {
		t.Fatalf("restored %q; want three", b)
	}
}
