// Package crypttest is the conformance suite for crypt plugins. A plugin
// author runs it against the plugin in-process and as a built binary:
//
//	func TestConformance(t *testing.T) {
//		c := sdktest.InProcess(t, myplugin.New()).(crypt.Crypt)
//		crypttest.Run(t, c, crypttest.Options{Config: []byte(`{}`)})
//	}
package crypttest

import (
	"github.com/soulpad/soulpad/sdk/mountinfo"

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
	"github.com/soulpad/soulpad/sdk/sdktest"
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

// canary is written into every vault; it must never show in cipher text.
const canary = "soulpad-canary-7f3a9c1e-plaintext"

type suite struct {
	c    crypt.Crypt
	opt  Options
	info sdk.InfoResponse
}

// Run runs the whole suite against c. Each check makes its own vault in
// its own directory and runs alone.
func Run(t *testing.T, c crypt.Crypt, opt Options) {
	if opt.Passphrase == nil {
		opt.Passphrase = []byte("correct horse battery staple 42")
	}
	if opt.SizeBytes == 0 {
		opt.SizeBytes = 64 << 20
	}
	s := &suite{c: c, opt: opt}
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
	s.info = info
	t.Run("CreateUnlockLockRoundTrip", s.roundTrip)
	t.Run("UnlockMissingVault", s.missing)
	if info.Has(crypt.CapNoEncryption) {
		t.Logf("%s announces %q: skipping passphrase and cipher-text checks", info.Name, crypt.CapNoEncryption)
		return
	}
	t.Run("WrongPassphraseChangesNothing", s.wrongPassphrase)
	t.Run("NoPlaintextInCipherText", s.noPlaintext)
	if info.Has(crypt.CapCredentials) {
		if _, ok := c.(crypt.CredentialManager); !ok {
			t.Fatalf("%s announces %q but the client does not implement crypt.CredentialManager", info.Name, crypt.CapCredentials)
		}
		t.Run("KeyFileCredential", s.keyFile)
	}
}

func (s *suite) cred() crypt.Credential {
	return crypt.Credential{Passphrase: bytes.Clone(s.opt.Passphrase)}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// fixture creates a fresh vault holding the canary, locked; on failure
// it lists the vault's files.
func (s *suite) fixture(t *testing.T) string {
	t.Helper()
	ctx := ctxFor(t)
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	if _, err := s.c.Create(ctx, crypt.CreateRequest{VaultPath: vault, Credential: s.cred(), SizeBytes: s.opt.SizeBytes}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() {
		_, _ = s.c.Lock(context.Background(), crypt.LockRequest{VaultPath: vault})
		if t.Failed() {
			_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err == nil {
					t.Logf("  %s", p)
				}
				return nil
			})
		}
	})
	u, err := s.c.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: s.cred(), MountDir: t.TempDir()})
	if err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	if err := os.WriteFile(filepath.Join(u.PlaintextDir, "canary.txt"), bytes.Repeat([]byte(canary+"\n"), 64), 0o600); err != nil {
		t.Fatalf("write into the plaintext dir: %v", err)
	}
	if _, err := s.c.Lock(ctx, crypt.LockRequest{VaultPath: vault}); err != nil {
		t.Fatalf("Lock: %v", err)
	}
	return vault
}

func (s *suite) roundTrip(t *testing.T) {
	ctx := ctxFor(t)
	vault := s.fixture(t)
	_, err := s.c.Create(ctx, crypt.CreateRequest{VaultPath: vault, Credential: s.cred(), SizeBytes: s.opt.SizeBytes})
	if !errors.Is(err, sdk.ErrAlreadyExists) {
		t.Fatalf("Create on an existing vault = %v; want sdk.ErrAlreadyExists", err)
	}
	mnt := t.TempDir()
	u, err := s.c.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: s.cred(), MountDir: mnt})
	if err != nil {
		t.Fatalf("Unlock after Lock: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(u.PlaintextDir, "canary.txt")); err != nil || !bytes.HasPrefix(got, []byte(canary)) {
		t.Fatalf("file written before Lock: %q, %v", got, err)
	}
	// Other local users cannot even list the plaintext.
	if fi, err := os.Stat(u.PlaintextDir); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("the plaintext directory %s: %v, %v; want it closed to group and others", u.PlaintextDir, fi.Mode().Perm(), err)
	}
	u2, err := s.c.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: s.cred(), MountDir: mnt})
	if err != nil || u2.PlaintextDir != u.PlaintextDir {
		t.Fatalf("second Unlock = %q, %v; want %q, nil", u2.PlaintextDir, err, u.PlaintextDir)
	}
	if _, err := s.c.Lock(ctx, crypt.LockRequest{VaultPath: vault}); err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if _, err := s.c.Lock(ctx, crypt.LockRequest{VaultPath: vault}); err != nil {
		t.Fatalf("Lock on a locked vault = %v; want nil", err)
	}
}

func (s *suite) missing(t *testing.T) {
	_, err := s.c.Unlock(ctxFor(t), crypt.UnlockRequest{VaultPath: filepath.Join(t.TempDir(), "nope"), Credential: s.cred(), MountDir: t.TempDir()})
	if !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("Unlock of a missing vault = %v; want sdk.ErrNotFound", err)
	}
}

func (s *suite) wrongPassphrase(t *testing.T) {
	vault := s.fixture(t)
	before := hashTree(t, vault)
	_, err := s.c.Unlock(ctxFor(t), crypt.UnlockRequest{VaultPath: vault, Credential: crypt.Credential{Passphrase: []byte("not the passphrase at all, sorry")}, MountDir: t.TempDir()})
	if !errors.Is(err, sdk.ErrWrongPassphrase) {
		t.Fatalf("Unlock with a wrong passphrase = %v; want sdk.ErrWrongPassphrase", err)
	}
	if after := hashTree(t, vault); !bytes.Equal(before, after) {
		t.Fatal("a wrong passphrase changed the vault's bytes")
	}
}

func (s *suite) noPlaintext(t *testing.T) {
	vault := s.fixture(t)
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
}

func (s *suite) keyFile(t *testing.T) {
	ctx := ctxFor(t)
	m := s.c.(crypt.CredentialManager)
	vault := s.fixture(t)
	key := bytes.Repeat([]byte{0x5a, 0xa5, 0x3c}, 100)
	keyCred := func() crypt.Credential { return crypt.Credential{KeyFile: bytes.Clone(key)} }
	if _, err := m.AddCredential(ctx, crypt.AddCredentialRequest{VaultPath: vault, Existing: s.cred(), Add: keyCred()}); err != nil {
		t.Fatalf("AddCredential: %v", err)
	}
	if _, err := s.c.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: keyCred(), MountDir: t.TempDir()}); err != nil {
		t.Fatalf("Unlock with the added key file: %v", err)
	}
	if _, err := s.c.Lock(ctx, crypt.LockRequest{VaultPath: vault}); err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if _, err := m.RemoveCredential(ctx, crypt.RemoveCredentialRequest{VaultPath: vault, Existing: s.cred(), Remove: keyCred()}); err != nil {
		t.Fatalf("RemoveCredential: %v", err)
	}
	_, err := s.c.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: keyCred(), MountDir: t.TempDir()})
	if !errors.Is(err, sdk.ErrWrongPassphrase) {
		t.Fatalf("Unlock with a removed key file = %v; want sdk.ErrWrongPassphrase", err)
	}
}

// RunEnding checks, against the plugin binary at path, that a plugin that
// ends with its vault open locks it first (the host let go of it, or died):
// nothing of the vault stays mounted, and a file written just before is
// in the vault afterwards. after, when set, runs plugin-specific checks
// once the plugin has ended.
func RunEnding(t *testing.T, path string, opt Options, after func(t *testing.T, vault string)) {
	if opt.Passphrase == nil {
		opt.Passphrase = []byte("correct horse battery staple 42")
	}
	if opt.SizeBytes == 0 {
		opt.SizeBytes = 64 << 20
	}
	impl, stop := sdktest.BinaryStop(t, path)
	c := impl.(crypt.Crypt)
	ctx := ctxFor(t)
	if _, err := c.Configure(ctx, sdk.ConfigureRequest{Config: opt.Config}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	s := &suite{c: c, opt: opt}
	dir := t.TempDir()
	vault, mnt := filepath.Join(dir, "vault"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, crypt.CreateRequest{VaultPath: vault, Credential: s.cred(), SizeBytes: opt.SizeBytes}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	u, err := c.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: s.cred(), MountDir: mnt})
	if err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	data := bytes.Repeat([]byte("written just before the plugin ended\n"), 10000)
	if err := os.WriteFile(filepath.Join(u.PlaintextDir, "last.txt"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stop()
	t.Logf("the plugin ended %v after it was let go of", time.Since(start).Round(time.Millisecond))
	if mountinfo.MountedUnder(dir) {
		t.Fatalf("the vault is still mounted under %s after the plugin ended", dir)
	}
	if after != nil {
		after(t, vault)
	}
	// A new plugin process finds the file, whole.
	c2 := sdktest.Binary(t, path).(crypt.Crypt)
	if _, err := c2.Configure(ctx, sdk.ConfigureRequest{Config: opt.Config}); err != nil {
		t.Fatal(err)
	}
	u2, err := c2.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: s.cred(), MountDir: mnt})
	if err != nil {
		t.Fatalf("Unlock after the plugin ended: %v", err)
	}
	defer c2.Lock(ctx, crypt.LockRequest{VaultPath: vault})
	if got, err := os.ReadFile(filepath.Join(u2.PlaintextDir, "last.txt")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the file written before the plugin ended: %d bytes, %v; want %d bytes", len(got), err, len(data))
	}
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
