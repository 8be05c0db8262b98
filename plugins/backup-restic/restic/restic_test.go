package restic_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/plugins/backup-restic/restic"
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
