package luks_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/soulpad/soulpad/plugins/crypt-luks/luks"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/crypt"
	"github.com/soulpad/soulpad/sdk/sdktest"
)

// mountedFS is the file system type mounted at dir.
func mountedFS(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[1] == dir {
			return f[2]
		}
	}
	t.Fatalf("nothing is mounted at %s", dir)
	return ""
}

// A vault of 400 MiB or more gets XFS by default, and a file in it can be
// cloned (FICLONE: what a VMM seals a memory file with); a smaller one
// gets ext4, where cloning is refused. Both unlock again.
func TestFilesystemByVaultSize(t *testing.T) {
	requireHost(t)
	for _, tc := range []struct {
		size   uint64
		fs     string
		clones bool
	}{{640 << 20, "xfs", true}, {64 << 20, "ext4", false}} {
		t.Run(tc.fs, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			c := newPlugin(t)
			vault, plain := createOpen(t, c, dir, tc.size)
			if got := mountedFS(t, plain); got != tc.fs {
				t.Fatalf("a %d MiB vault has %s, want %s", tc.size>>20, got, tc.fs)
			}
			src := filepath.Join(plain, "ram")
			if err := os.WriteFile(src, make([]byte, 4<<20), 0o600); err != nil {
				t.Fatal(err)
			}
			a, _ := os.Open(src)
			b, _ := os.Create(filepath.Join(plain, "ram.clone"))
			err := unix.IoctlFileClone(int(b.Fd()), int(a.Fd()))
			a.Close()
			b.Close()
			if (err == nil) != tc.clones {
				t.Fatalf("FICLONE in %s: %v", tc.fs, err)
			}
			if _, err := c.Lock(ctx, crypt.LockRequest{VaultPath: vault}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: crypt.Credential{Passphrase: goodPass}, MountDir: plain}); err != nil {
				t.Fatal(err)
			}
			defer c.Lock(ctx, crypt.LockRequest{VaultPath: vault})
			if st, err := os.Stat(src); err != nil || st.Size() != 4<<20 {
				t.Fatalf("after unlocking again: %v", err)
			}
			// A copy of the vault (a copied pad) opens beside the original,
			// though its file system has the same UUID.
			cp := filepath.Join(dir, "copy")
			if out, err := exec.Command("cp", "--sparse=always", vault, cp).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v %s", err, out)
			}
			mnt2 := filepath.Join(dir, "mnt2")
			os.Mkdir(mnt2, 0o700)
			if _, err := c.Unlock(ctx, crypt.UnlockRequest{VaultPath: cp, Credential: crypt.Credential{Passphrase: goodPass}, MountDir: mnt2}); err != nil {
				t.Fatalf("a copy of the vault beside it: %v", err)
			}
			defer c.Lock(ctx, crypt.LockRequest{VaultPath: cp})
			if _, err := os.Stat(filepath.Join(mnt2, "ram")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// filesystem = "xfs" is refused for a vault too small for XFS, before
// anything is written; a bad value is a configuration error.
func TestFilesystemSetting(t *testing.T) {
	requireHost(t)
	c := sdktest.InProcess(t, luks.New(sdktest.Logger(t, "crypt-luks"))).(crypt.Crypt)
	ctx := context.Background()
	if _, err := c.Configure(ctx, sdk.ConfigureRequest{Config: []byte(`{"filesystem": "zfs"}`)}); !errors.Is(err, sdk.ErrInvalidConfig) {
		t.Fatalf("filesystem zfs: %v", err)
	}
	if _, err := c.Configure(ctx, sdk.ConfigureRequest{Config: []byte(`{"engine": "userspace", "argon2_memory_kib": 8192, "argon2_iterations": 4, "argon2_threads": 1, "filesystem": "xfs"}`)}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	_, err := c.Create(ctx, crypt.CreateRequest{VaultPath: vault, Credential: crypt.Credential{Passphrase: goodPass}, SizeBytes: 128 << 20})
	if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "300 MiB") {
		t.Fatalf("xfs in 128 MiB: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a refused create left %v", ents)
	}
}
