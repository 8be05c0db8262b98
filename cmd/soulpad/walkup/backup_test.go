package walkup_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/internal/testcli"
	"github.com/soulpad/soulpad/sdk/backup"
)

// backupBlocks configure each backup plugin against a fresh target in dir
// (cfgDir is the config file's).
var backupBlocks = map[string]func(t *testing.T, dir, cfgDir string) string{
	"backup-restic": func(t *testing.T, dir, cfgDir string) string {
		requireTool(t, "restic")
		// Beside the config and named relative to it, as site.hcl says
		// relative paths are.
		if err := os.WriteFile(filepath.Join(cfgDir, "restic-password"), []byte("backup password for the drill\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("plugin \"backup-restic\" {\n  repository    = %q\n  password_file = \"restic-password\"\n}\n", filepath.Join(dir, "repo"))
	},
	// backup-tsm against the dsmc STAND-IN (no TSM server can run here):
	// a local directory plays the server.
	"backup-tsm": func(t *testing.T, dir, _ string) string {
		dsmc := testbin.Build(t, "internal/testplugins/dsmc-standin")
		server := filepath.Join(dir, "server")
		os.Mkdir(server, 0o700)
		opt := filepath.Join(dir, "dsm.opt")
		os.WriteFile(opt, []byte("TCPSERVERADDRESS "+server+"\nNODENAME SOULPAD-DRILL\nPASSWORDACCESS PROMPT\n"), 0o600)
		pw := filepath.Join(dir, "node-password")
		os.WriteFile(pw, []byte("node password\n"), 0o600)
		return fmt.Sprintf("plugin \"backup-tsm\" {\n  dsmc = %q\n  optfile = %q\n  password_file = %q\n  staging_dir = %q\n  chunk_mib = 1\n  large_file_mib = 8\n}\n",
			dsmc, opt, pw, filepath.Join(dir, "staging"))
	},
}

func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed; `make test` installs it", name)
		}
		t.Skipf("%s is not installed (scripts/deps.sh installs it)", name)
	}
}

// The restore drill: run the guest, suspend (the backup after suspend
// runs), back up again by hand, lose the pad, restore the snapshot to a
// new path, resume there: the counter goes on.
func TestRestoreDrill(t *testing.T) {
	for _, name := range []string{"backup-restic", "backup-tsm"} {
		t.Run(name, func(t *testing.T) { restoreDrill(t, name) })
	}
}

func restoreDrill(t *testing.T, plugin string) {
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", "crypt-gocryptfs")
	testbin.Build(t, "plugins/"+plugin)
	target := t.TempDir()
	block := backupBlocks[plugin](t, target, filepath.Dir(e.Cfg))
	f, err := os.OpenFile(e.Cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(block)
	f.Close()
	t.Setenv("SOULPAD_PLUGINS_BACKUP", plugin)
	t.Setenv("SOULPAD_SESSION_BACKUP_AFTER_SUSPEND", "true")
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	_, buf, done := e.StartRun(t)
	first := e.WaitCounter(t, 3)
	// A running pad is not backed up: the backup takes it locked.
	if _, stderr, code := e.Run(t, "backup"); code == 0 || !strings.Contains(stderr, "in use by a running session") {
		t.Fatalf("backup of a running pad: exit %d %s", code, stderr)
	}
	if out, errOut, code := e.Run(t, "suspend"); code != 0 {
		t.Fatalf("suspend: exit %d %s %s", code, out, errOut)
	}
	testcli.Wait(t, done, buf)
	if out := buf.String(); !strings.Contains(out, "backing up") || !strings.Contains(out, "sent") {
		t.Fatalf("no backup after suspend:\n%s", out)
	}
	n := first[len(first)-1]
	stdout, stderr, code := e.Run(t, "backup")
	if code != 0 || !strings.Contains(stdout, "scanned") || !strings.Contains(stdout, "sent") {
		t.Fatalf("backup: exit %d\n%s%s", code, stdout, stderr)
	}
	t.Logf("second backup, nothing changed: %s", lastLine(stdout))
	list, _, code := e.Run(t, "backups", "--json")
	var snaps []backup.Snapshot
	if code != 0 || json.Unmarshal([]byte(list), &snaps) != nil || len(snaps) != 2 {
		t.Fatalf("backups: exit %d, want 2 snapshots:\n%s", code, list)
	}
	// snake_case keys; the size where the target says it (restic does).
	var sized []struct {
		ID        string  `json:"id"`
		SizeBytes *uint64 `json:"size_bytes"`
	}
	if err := json.Unmarshal([]byte(list), &sized); err != nil || sized[0].ID == "" || strings.Contains(list, `"SizeBytes"`) {
		t.Fatalf("backups --json keys: %v\n%s", err, list)
	}
	if plugin == "backup-restic" && (sized[1].SizeBytes == nil || *sized[1].SizeBytes < 1<<20) {
		t.Fatalf("backups --json: restic's snapshot has no size:\n%s", list)
	}

	// Verify and prune, where the plugin can.
	vout, verr, code := e.Run(t, "backup", "verify")
	switch {
	case plugin == "backup-restic" && (code != 0 || !strings.Contains(vout, "the backup target is whole")):
		t.Fatalf("backup verify: exit %d\n%s%s", code, vout, verr)
	case plugin != "backup-restic" && (code == 0 || !strings.Contains(verr, "cannot verify")):
		t.Fatalf("backup verify with %s (no verify capability): exit %d\n%s%s", plugin, code, vout, verr)
	}
	if plugin == "backup-restic" {
		if pout, perr, code := e.Run(t, "backup", "prune", "--keep-last", "1"); code != 0 || !strings.Contains(pout, "removed 1 snapshots") {
			t.Fatalf("backup prune --keep-last 1: exit %d\n%s%s", code, pout, perr)
		}
		if list, _, _ := e.Run(t, "backups", "--json"); json.Unmarshal([]byte(list), &snaps) != nil || len(snaps) != 1 {
			t.Fatalf("after prune: %s; want the newest snapshot only", list)
		}
		snaps = append([]backup.Snapshot{{}}, snaps...) // the restore below takes snaps[1], the newest
	}

	// The pad is lost.
	if err := os.RemoveAll(e.Pad); err != nil {
		t.Fatal(err)
	}
	busy := t.TempDir()
	os.WriteFile(filepath.Join(busy, "something"), []byte("x"), 0o600)
	if _, stderr, code := e.Run(t, "restore", snaps[1].ID, busy); code == 0 || !strings.Contains(stderr, "not empty") {
		t.Fatalf("restore into a non-empty directory: exit %d %s", code, stderr)
	}
	newPad := filepath.Join(t.TempDir(), "new-usb", "pad")
	if stdout, stderr, code := e.Run(t, "restore", snaps[1].ID, newPad); code != 0 {
		t.Fatalf("restore: exit %d\n%s%s", code, stdout, stderr)
	}
	e.Pad = newPad
	t.Setenv("SOULPAD_PAD_PATH", newPad)
	t.Setenv("SOULPAD_SESSION_BACKUP_AFTER_SUSPEND", "false")
	second, out := e.Session(t, 2)
	if !strings.Contains(out, "resumed ") || second[0] <= n {
		t.Fatalf("after restore the counter printed %v; want it to go on from %d:\n%s", second, n, out)
	}
	if plugin == "backup-restic" {
		// A damaged target is found by verify, before a restore needs it.
		packs, _ := filepath.Glob(filepath.Join(target, "repo", "data", "*", "*"))
		if len(packs) == 0 {
			t.Fatal("no restic pack files to damage")
		}
		b, _ := os.ReadFile(packs[0])
		b[len(b)/2] ^= 0xff
		os.Chmod(packs[0], 0o600)
		if err := os.WriteFile(packs[0], b, 0o600); err != nil {
			t.Fatal(err)
		}
		if vout, verr, code := e.Run(t, "backup", "verify"); code == 0 {
			t.Fatalf("backup verify of a damaged repository passed:\n%s%s", vout, verr)
		}
	}
}

func lastLine(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}

// The backup after a suspend never keeps the user from leaving: with a
// backup that does not finish (a hung TSM server, played by a dsmc that
// only sleeps), Ctrl-C skips it, soulpad run exits 0 with the pad
// suspended, and the journal says the backup was not made.
func TestBackupAfterSuspendCanBeSkipped(t *testing.T) {
	e := testcli.Setup(t)
	testbin.Build(t, "plugins/backup-tsm")
	dir := t.TempDir()
	hung := filepath.Join(dir, "hung-dsmc")
	if err := os.WriteFile(hung, []byte("#!/bin/sh\nexec sleep 300\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	opt := filepath.Join(dir, "dsm.opt")
	os.WriteFile(opt, []byte("TCPSERVERADDRESS /nonexistent\nNODENAME X\n"), 0o600)
	f, _ := os.OpenFile(e.Cfg, os.O_APPEND|os.O_WRONLY, 0)
	fmt.Fprintf(f, "plugin \"backup-tsm\" {\n  dsmc = %q\n  optfile = %q\n  staging_dir = %q\n}\n", hung, opt, filepath.Join(dir, "staging"))
	f.Close()
	t.Setenv("SOULPAD_PLUGINS_BACKUP", "backup-tsm")
	t.Setenv("SOULPAD_SESSION_BACKUP_AFTER_SUSPEND", "true")
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	cmd, buf, done := e.StartRun(t)
	if out, errOut, code := e.Run(t, "suspend"); code != 0 {
		t.Fatalf("suspend: exit %d %s %s", code, out, errOut)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(buf.String(), "Ctrl-C skips it") {
		if time.Now().After(deadline) {
			t.Fatalf("no backup after suspend started:\n%s", buf.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The backup is under way once the hung dsmc (a sleep) runs.
	for {
		hungNow := false
		for _, name := range testcli.Descendants(cmd.Process.Pid) {
			hungNow = hungNow || name == "sleep"
		}
		if hungNow {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dsmc never started:\n%s", buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(os.Interrupt)
	testcli.Wait(t, done, buf)
	out := buf.String()
	if !strings.Contains(out, "suspended to point") || !strings.Contains(out, "backup not made (skipped)") {
		t.Fatalf("Ctrl-C during the backup after suspend:\n%s", out)
	}
	if j, _, _ := e.Run(t, "journal"); !strings.Contains(j, "backup after suspend not made: skipped") {
		t.Fatalf("the journal does not say the backup was skipped:\n%s", j)
	}
}
