package luks_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/soulpad/soulpad/internal/testluks"
	"github.com/soulpad/soulpad/sdk/crypt"
)

var (
	run      = testluks.Run
	withLoop = testluks.WithLoop
)

// fill writes files of several sizes (odd ones included) under dir and
// returns their contents by name.
func fill(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for i, n := range []int{0, 1, 511, 4097, 1 << 20, 5<<20 + 333} {
		b := make([]byte, n)
		rand.Read(b)
		name := filepath.Join("sub", strings.Repeat("x", i+1)+".bin")
		files[name] = b
	}
	for name, b := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

func same(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes differ from the %d written", name, len(got), len(want))
		}
	}
}

// A vault filled through the userspace engine is decrypted by cryptsetup
// itself, and the files match.
func TestUserspaceVaultDecryptsWithCryptsetup(t *testing.T) {
	requireHost(t)
	ctx := context.Background()
	c := newPlugin(t)
	dir := t.TempDir()
	vault, plain := createOpen(t, c, dir, 80<<20)
	files := fill(t, plain)
	if _, err := c.Lock(ctx, crypt.LockRequest{VaultPath: vault}); err != nil {
		t.Fatal(err)
	}
	dump := run(t, nil, "cryptsetup", "luksDump", vault)
	for _, want := range []string{"Version:       \t2", "cipher: aes-xts-plain64", "sector: 4096 [bytes]", "PBKDF:      argon2id", "Key:        512 bits"} {
		if !strings.Contains(dump, want) {
			t.Errorf("luksDump lacks %q:\n%s", want, dump)
		}
	}
	same(t, testluks.Decrypt(t, vault, goodPass), files)
}

// A container made by cryptsetup alone (an mkfs.ext4 image encrypted in
// place with `cryptsetup reencrypt --encrypt`, LUKS2 defaults: 512-byte
// sectors) unlocks with the userspace engine; what it writes there
// cryptsetup decrypts again.
func TestCryptsetupVaultUnlocks(t *testing.T) {
	requireHost(t)
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	files := fill(t, src)
	vault := filepath.Join(dir, "vault")
	run(t, nil, "truncate", "-s", "64M", vault)
	run(t, nil, "mkfs.ext4", "-q", "-d", src, vault)
	run(t, nil, "truncate", "-s", "96M", vault)
	withLoop(t, vault, func(dev string) {
		run(t, goodPass, "cryptsetup", "reencrypt", "--encrypt", "--type", "luks2", "--pbkdf-memory", "8192", "--pbkdf-force-iterations", "4", "--reduce-device-size", "32M",
			"--batch-mode", "--key-file", "-", dev)
	})
	if dump := run(t, nil, "cryptsetup", "luksDump", vault); !strings.Contains(dump, "sector: 512 [bytes]") {
		t.Logf("note: cryptsetup chose another sector size:\n%s", dump)
	}

	c := newPlugin(t)
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o700)
	u, err := c.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: crypt.Credential{Passphrase: goodPass}, MountDir: mnt})
	if err != nil {
		t.Fatal(err)
	}
	same(t, u.PlaintextDir, files)
	more := fill(t, filepath.Join(u.PlaintextDir, "more"))
	if _, err := c.Lock(ctx, crypt.LockRequest{VaultPath: vault}); err != nil {
		t.Fatal(err)
	}
	back := testluks.Decrypt(t, vault, goodPass)
	same(t, back, files)
	same(t, filepath.Join(back, "more"), more)
}
