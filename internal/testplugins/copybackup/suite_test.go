package copybackup_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/soulpad/soulpad/internal/testplugins/copybackup"
	"github.com/soulpad/soulpad/sdk/backup"
	"github.com/soulpad/soulpad/sdk/backup/backuptest"
	"github.com/soulpad/soulpad/sdk/sdktest"
)

func config(t *testing.T, omit string) []byte {
	b, _ := json.Marshal(map[string]string{"target": filepath.Join(t.TempDir(), "target"), "broken_restore_omits": omit})
	return b
}

// TestSuiteRunsTheBrokenPlugin is run in a child process by
// TestSuiteFailsABrokenPlugin; alone it is skipped.
func TestSuiteRunsTheBrokenPlugin(t *testing.T) {
	if os.Getenv("BACKUPTEST_BROKEN") == "" {
		t.Skip("run by TestSuiteFailsABrokenPlugin")
	}
	backuptest.Run(t, sdktest.InProcess(t, copybackup.New()).(backup.Backup), backuptest.Options{Config: config(t, "vault/")})
}

// backup-copy (a test double for a backup target) passes the suite, and
// fails it once its restores leave the vault out.
func TestSuiteFailsABrokenPlugin(t *testing.T) {
	backuptest.Run(t, sdktest.InProcess(t, copybackup.New()).(backup.Backup), backuptest.Options{Config: config(t, "")})

	cmd := exec.Command(os.Args[0], "-test.run", "^TestSuiteRunsTheBrokenPlugin$", "-test.v")
	cmd.Env = append(os.Environ(), "BACKUPTEST_BROKEN=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the suite passed a plugin whose restores leave out the vault:\n%s", out)
	}
	if !strings.Contains(string(out), "restore of the first snapshot does not have the first content") {
		t.Fatalf("the suite failed the broken plugin, but not for the right reason:\n%s", out)
	}
}
