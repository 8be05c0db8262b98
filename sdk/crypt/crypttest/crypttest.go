// Package crypttest is the conformance suite for crypt plugins. A plugin
// author runs it against the plugin in-process and as a built binary:
//
//	func TestConformance(t *testing.T) {
//		c := sdktest.InProcess(t, myplugin.New()).(crypt.Crypt)
//		crypttest.Run(t, c, crypttest.Options{Config: []byte(`{}`)})
//	}
package crypttest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/crypt"
)

// Options tune the suite to a plugin.
type Options struct {
	// Config is the plugin's config block as JSON.
	Config []byte
	// Passphrase is a valid passphrase for the plugin (default: a 32-char one).
	Passphrase []byte
	// SizeBytes is passed to Create (default 64 MiB).
	SizeBytes uint64
}

// Run runs the whole suite against c.
func Run(t *testing.T, c crypt.Crypt, opt Options) {
	if opt.Passphrase == nil {
		opt.Passphrase = []byte("correct horse battery staple 42")
	}
	if opt.SizeBytes == 0 {
		opt.SizeBytes = 64 << 20
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	info, err := c.Info(ctx, sdk.InfoRequest{})
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Kind != sdk.KindCrypt || info.Name == "" || !slices.Contains(info.APIVersions, crypt.APIVersion) {
		t.Fatalf("Info = %+v; want kind crypt, a name, API version %d", info, crypt.APIVersion)
	}
	if _, err := c.Configure(ctx, sdk.ConfigureRequest{Config: opt.Config}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	noEnc := info.Has(crypt.CapNoEncryption)
	cred := func() crypt.Credential { return crypt.Credential{Passphrase: bytes.Clone(opt.Passphrase)} }
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	const canary = "soulpad-canary-7f3a9c1e-plaintext"

	t.Run("CreateUnlockLockRoundTrip", func(t *testing.T) {
		if _, err := c.Create(ctx, crypt.CreateRequest{VaultPath: vault, Credential: cred(), SizeBytes: opt.SizeBytes}); err != nil {
			t.Fatalf("Create: %v", err)
		}
		_, err := c.Create(ctx, crypt.CreateRequest{VaultPath: vault, Credential: cred(), SizeBytes: opt.SizeBytes})
		if !errors.Is(err, sdk.ErrAlreadyExists) {
			t.Fatalf("Create on an existing vault = %v; want sdk.ErrAlreadyExists", err)
		}
		mnt := filepath.Join(dir, "mnt")
		if err := os.MkdirAll(mnt, 0o700); err != nil {
			t.Fatal(err)
		}
		u, err := c.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: cred(), MountDir: mnt})
		if err != nil {
			t.Fatalf("Unlock: %v", err)
		}
		if err := os.WriteFile(filepath.Join(u.PlaintextDir, "canary.txt"), bytes.Repeat([]byte(canary+"\n"), 64), 0o600); err != nil {
			t.Fatalf("write into the plaintext dir: %v", err)
		}
		u2, err := c.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: cred(), MountDir: mnt})
		if err != nil || u2.PlaintextDir != u.PlaintextDir {
			t.Fatalf("second Unlock = %q, %v; want %q, nil", u2.PlaintextDir, err, u.PlaintextDir)
		}
		if _, err := c.Lock(ctx, crypt.LockRequest{VaultPath: vault}); err != nil {
			t.Fatalf("Lock: %v", err)
		}
		if _, err := c.Lock(ctx, crypt.LockRequest{VaultPath: vault}); err != nil {
			t.Fatalf("Lock on a locked vault = %v; want nil", err)
		}
		u, err = c.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: cred(), MountDir: mnt})
		if err != nil {
			t.Fatalf("Unlock after Lock: %v", err)
		}
		got, err := os.ReadFile(filepath.Join(u.PlaintextDir, "canary.txt"))
		if err != nil || !bytes.HasPrefix(got, []byte(canary)) {
			t.Fatalf("file written before Lock: %q, %v", got, err)
		}
		if _, err := c.Lock(ctx, crypt.LockRequest{VaultPath: vault}); err != nil {
			t.Fatalf("Lock: %v", err)
		}
	})

	t.Run("UnlockMissingVault", func(t *testing.T) {
		_, err := c.Unlock(ctx, crypt.UnlockRequest{VaultPath: filepath.Join(dir, "nope"), Credential: cred(), MountDir: t.TempDir()})
		if !errors.Is(err, sdk.ErrNotFound) {
			t.Fatalf("Unlock of a missing vault = %v; want sdk.ErrNotFound", err)
		}
	})

	if noEnc {
		t.Logf("%s announces %q: skipping passphrase and cipher-text checks", info.Name, crypt.CapNoEncryption)
		return
	}

	t.Run("WrongPassphraseChangesNothing", func(t *testing.T) {
		before := hashTree(t, vault)
		_, err := c.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: crypt.Credential{Passphrase: []byte("not the passphrase at all, sorry")}, MountDir: t.TempDir()})
		if !errors.Is(err, sdk.ErrWrongPassphrase) {
			t.Fatalf("Unlock with a wrong passphrase = %v; want sdk.ErrWrongPassphrase", err)
		}
		if after := hashTree(t, vault); !bytes.Equal(before, after) {
			t.Fatal("a wrong passphrase changed the vault's bytes")
		}
	})

	t.Run("NoPlaintextInCipherText", func(t *testing.T) {
		_ = filepath.WalkDir(vault, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, rerr := os.ReadFile(p)
			if rerr == nil && bytes.Contains(b, []byte(canary)) {
				t.Errorf("canary found in cipher text %s", p)
			}
			return nil
		})
	})

	if !info.Has(crypt.CapCredentials) {
		return
	}
	m, ok := c.(crypt.CredentialManager)
	if !ok {
		t.Fatalf("%s announces %q but the client does not implement crypt.CredentialManager", info.Name, crypt.CapCredentials)
	}
	t.Run("KeyFileCredential", func(t *testing.T) {
		key := bytes.Repeat([]byte{0x5a, 0xa5, 0x3c}, 100)
		keyCred := func() crypt.Credential { return crypt.Credential{KeyFile: bytes.Clone(key)} }
		if _, err := m.AddCredential(ctx, crypt.AddCredentialRequest{VaultPath: vault, Existing: cred(), Add: keyCred()}); err != nil {
			t.Fatalf("AddCredential: %v", err)
		}
		if _, err := c.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: keyCred(), MountDir: t.TempDir()}); err != nil {
			t.Fatalf("Unlock with the added key file: %v", err)
		}
		if _, err := c.Lock(ctx, crypt.LockRequest{VaultPath: vault}); err != nil {
			t.Fatalf("Lock: %v", err)
		}
		if _, err := m.RemoveCredential(ctx, crypt.RemoveCredentialRequest{VaultPath: vault, Existing: cred(), Remove: keyCred()}); err != nil {
			t.Fatalf("RemoveCredential: %v", err)
		}
		_, err := c.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: keyCred(), MountDir: t.TempDir()})
		if !errors.Is(err, sdk.ErrWrongPassphrase) {
			t.Fatalf("Unlock with a removed key file = %v; want sdk.ErrWrongPassphrase", err)
		}
	})
}

// hashTree hashes every file's path and bytes under root.
func hashTree(t *testing.T, root string) []byte {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		h.Write([]byte(p))
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("hash %s: %v", root, err)
	}
	return h.Sum(nil)
}
