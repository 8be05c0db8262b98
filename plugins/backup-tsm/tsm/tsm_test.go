package tsm_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/plugins/backup-tsm/tsm"
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

// StandinConfig configures backup-tsm against the dsmc STAND-IN
// (internal/testplugins/dsmc-standin: no TSM server can run here) with a
// fresh "server" directory, node and password.
func StandinConfig(t testing.TB, password string) []byte {
	t.Helper()
	return standinConfig(t, password, 1, 2)
}

// StandinConfigChunks is StandinConfig with the given chunking.
func StandinConfigChunks(t testing.TB, chunkMiB, largeMiB int) []byte {
	t.Helper()
	return standinConfig(t, "node password", chunkMiB, largeMiB)
}

func standinConfig(t testing.TB, password string, chunkMiB, largeMiB int) []byte {
	dsmc := testbin.Build(t, "internal/testplugins/dsmc-standin")
	dir := t.TempDir()
	server := filepath.Join(dir, "server")
	os.Mkdir(server, 0o700)
	opt := filepath.Join(dir, "dsm.opt")
	os.WriteFile(opt, []byte("SERVERNAME STANDIN\nTCPSERVERADDRESS "+server+"\nNODENAME SOULPAD-TEST\nPASSWORDACCESS PROMPT\n"), 0o600)
	pw := filepath.Join(dir, "password")
	os.WriteFile(pw, []byte(password+"\n"), 0o600)
	b, _ := json.Marshal(map[string]any{"dsmc": dsmc, "optfile": opt, "password_file": pw, "staging_dir": filepath.Join(dir, "staging"),
		"server": "STANDIN", "node": "SOULPAD-PAD1",
		"chunk_mib": chunkMiB, "large_file_mib": largeMiB})
	return b
}

func TestConformanceInProcessWithStandin(t *testing.T) {
	backuptest.Run(t, sdktest.InProcess(t, tsm.New()).(backup.Backup), backuptest.Options{Config: StandinConfig(t, "node password")})
}

func TestConformanceBinaryWithStandin(t *testing.T) {
	backuptest.Run(t, sdktest.Binary(t, testbin.Build(t, "plugins/backup-tsm")).(backup.Backup), backuptest.Options{Config: StandinConfig(t, "node password")})
}

func TestParseSummary(t *testing.T) {
	out := []byte(`Total number of objects inspected:       1,024
Total number of objects backed up:          17
Total number of objects expired:             2
Total number of objects failed:              0
Total number of bytes inspected:          4.00 GB
Total number of bytes transferred:       41.50 MB
`)
	s := tsm.ParseSummary(out)
	if s.Inspected != 1024 || s.BackedUp != 17 || s.Expired != 2 || s.BytesInspected != 4<<30 || s.BytesTransferred != uint64(41.5*(1<<20)) {
		t.Fatalf("ParseSummary = %+v", s)
	}
}

// backedUpOnce configures the plugin with cfg and backs a one-file tree
// up; it returns the plugin, the tree, and cfg decoded.
func backedUpOnce(t *testing.T, cfg []byte) (backup.Backup, string, map[string]any) {
	t.Helper()
	p := sdktest.InProcess(t, tsm.New()).(backup.Backup)
	ctx := context.Background()
	if _, err := p.Configure(ctx, sdk.ConfigureRequest{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o600)
	if _, err := p.Backup(ctx, backup.BackupRequest{SourceDir: src}); err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	json.Unmarshal(cfg, &c)
	return p, src, c
}

// The node given in the config is the one the server stores under.
func TestNodeFromConfig(t *testing.T) {
	_, _, c := backedUpOnce(t, StandinConfig(t, "pw"))
	server := filepath.Join(filepath.Dir(c["optfile"].(string)), "server")
	if _, err := os.Stat(filepath.Join(server, "SOULPAD-PAD1")); err != nil {
		t.Fatalf("the stand-in server has no node SOULPAD-PAD1: %v", err)
	}
}

// A wrong node password: the client's authentication failure, clearly.
func TestWrongPasswordIsClear(t *testing.T) {
	p, src, c := backedUpOnce(t, StandinConfig(t, "right password"))
	ctx := context.Background()
	os.WriteFile(c["password_file"].(string), []byte("wrong password\n"), 0o600)
	_, err := p.Backup(ctx, backup.BackupRequest{SourceDir: src})
	if err == nil || !strings.Contains(err.Error(), "ANS1025E") || !strings.Contains(err.Error(), "rc 12") {
		t.Fatalf("backup with a wrong password: %v; want the client's ANS1025E and rc 12", err)
	}
	if errors.Is(err, sdk.ErrNotFound) {
		t.Fatal("a wrong password is not a missing source")
	}
}

// A staging directory someone else could have made first (the default
// lives in /var/tmp): a symlink to elsewhere, or one open to others, is
// refused, and nothing is written through it.
func TestPlantedStagingIsRefused(t *testing.T) {
	var cfg map[string]any
	if err := json.Unmarshal(StandinConfig(t, "node password"), &cfg); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "pad.json"), []byte("{}"), 0o600)
	elsewhere := t.TempDir()
	staging := cfg["staging_dir"].(string)
	for _, plant := range []func(){
		func() { os.Symlink(elsewhere, staging) },
		func() { os.Mkdir(staging, 0o777); os.Chmod(staging, 0o777) },
	} {
		os.RemoveAll(staging)
		plant()
		b, _ := json.Marshal(cfg)
		p := tsm.New()
		if _, err := p.Configure(context.Background(), sdk.ConfigureRequest{Config: b}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Backup(context.Background(), backup.BackupRequest{SourceDir: src}); !errors.Is(err, sdk.ErrInvalidConfig) {
			t.Errorf("backup through a planted staging directory: %v; want ErrInvalidConfig", err)
		}
		if _, err := p.List(context.Background(), backup.ListRequest{}); !errors.Is(err, sdk.ErrInvalidConfig) {
			t.Errorf("list of a planted staging directory: %v; want ErrInvalidConfig", err)
		}
		if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
			t.Errorf("the backup wrote %d entries through the symlink", len(ents))
		}
	}
}
