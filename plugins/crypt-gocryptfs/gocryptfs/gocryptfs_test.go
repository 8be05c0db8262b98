package gocryptfs_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/plugins/crypt-gocryptfs/gocryptfs"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/crypt"
	"github.com/soulpad/soulpad/sdk/crypt/crypttest"
	"github.com/soulpad/soulpad/sdk/sdktest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

func requireFUSE(t *testing.T) {
	t.Helper()
	for _, b := range []string{"gocryptfs", "fusermount3"} {
		if _, err := exec.LookPath(b); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s missing; `make test` installs it", b)
			}
			t.Skipf("%s missing (scripts/deps.sh installs it)", b)
		}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse on this host")
	}
}

var opts = crypttest.Options{Config: []byte(`{"scrypt_logn": 12}`)}

func TestConformanceInProcess(t *testing.T) {
	requireFUSE(t)
	crypttest.Run(t, sdktest.InProcess(t, gocryptfs.New(sdktest.Logger(t, "crypt-gocryptfs"))).(crypt.Crypt), opts)
}

func TestConformanceBinary(t *testing.T) {
	requireFUSE(t)
	crypttest.Run(t, sdktest.Binary(t, testbin.Build(t, "plugins/crypt-gocryptfs")).(crypt.Crypt), opts)
}

func TestShortPassphraseRefusedAndKeyFileWorks(t *testing.T) {
	requireFUSE(t)
	ctx := context.Background()
	c := sdktest.InProcess(t, gocryptfs.New(sdktest.Logger(t, "crypt-gocryptfs"))).(crypt.Crypt)
	if _, err := c.Configure(ctx, sdk.ConfigureRequest{Config: opts.Config}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	_, err := c.Create(ctx, crypt.CreateRequest{VaultPath: vault, Credential: crypt.Credential{Passphrase: []byte("too short")}})
	if !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Fatalf("short passphrase: %v; want sdk.ErrInvalidArgument", err)
	}
	if _, err := os.Stat(vault); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a refused create left the vault behind")
	}
	key := []byte("bytes of a key file on a second USB key")
	if _, err := c.Create(ctx, crypt.CreateRequest{VaultPath: vault, Credential: crypt.Credential{KeyFile: key}}); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o700)
	if _, err := c.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: crypt.Credential{KeyFile: []byte("another key")}, MountDir: mnt}); !errors.Is(err, sdk.ErrWrongPassphrase) {
		t.Fatalf("wrong key file: %v", err)
	}
	u, err := c.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: crypt.Credential{KeyFile: key}, MountDir: mnt})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(u.PlaintextDir, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lock(ctx, crypt.LockRequest{VaultPath: vault}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "f")); err == nil {
		t.Fatal("the plaintext is still visible after lock")
	}
}

// The plugin that ends with its vault open unmounts it (crypttest), and
// its gocryptfs daemon, which would keep the key, ends too.
func TestPluginEndingLocksOpenVault(t *testing.T) {
	requireFUSE(t)
	crypttest.RunEnding(t, testbin.Build(t, "plugins/crypt-gocryptfs"), opts, func(t *testing.T, vault string) {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			out, _ := exec.Command("pgrep", "-f", "gocryptfs.* "+vault).Output()
			if len(out) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("gocryptfs still running for the vault 10 s after the plugin ended: %s", out)
			}
		}
	})
}
