package crypttest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/crypt"
	"github.com/soulpad/soulpad/sdk/crypt/crypttest"
	"github.com/soulpad/soulpad/sdk/sdktest"
)

// xorCrypt is a test double for the suite itself, not a cipher: the vault
// is a directory with the passphrase's hash and each file XORed with it.
// Unlock writes the plain files into the mount directory, Lock writes
// them back and removes them. With acceptAny it is deliberately broken:
// any passphrase opens the vault.
type xorCrypt struct {
	acceptAny bool
	mu        sync.Mutex
	open      map[string]string // vault → mount dir
}

func (x *xorCrypt) Info(context.Context, sdk.InfoRequest) (sdk.InfoResponse, error) {
	return sdk.InfoResponse{Name: "crypt-xor", Kind: sdk.KindCrypt, Version: "0", APIVersions: []int{crypt.APIVersion}}, nil
}
func (x *xorCrypt) Configure(context.Context, sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	return sdk.ConfigureResponse{}, nil
}
func key(c crypt.Credential) []byte { k := sha256.Sum256(c.Passphrase); return k[:] }
func xor(b, k []byte) []byte {
	out := make([]byte, len(b))
	for i := range b {
		out[i] = b[i] ^ k[i%len(k)]
	}
	return out
}
func (x *xorCrypt) Create(_ context.Context, r crypt.CreateRequest) (crypt.CreateResponse, error) {
	if _, err := os.Stat(r.VaultPath); err == nil {
		return crypt.CreateResponse{}, sdk.ErrAlreadyExists
	}
	if err := os.MkdirAll(filepath.Join(r.VaultPath, "files"), 0o700); err != nil {
		return crypt.CreateResponse{}, err
	}
	k := sha256.Sum256(key(r.Credential))
	return crypt.CreateResponse{}, os.WriteFile(filepath.Join(r.VaultPath, "check"), k[:], 0o600)
}
func (x *xorCrypt) Unlock(_ context.Context, r crypt.UnlockRequest) (crypt.UnlockResponse, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if m, ok := x.open[r.VaultPath]; ok {
		return crypt.UnlockResponse{PlaintextDir: m}, nil
	}
	check, err := os.ReadFile(filepath.Join(r.VaultPath, "check"))
	if err != nil {
		return crypt.UnlockResponse{}, sdk.ErrNotFound
	}
	k := key(r.Credential)
	if sum := sha256.Sum256(k); !bytes.Equal(sum[:], check) && !x.acceptAny {
		return crypt.UnlockResponse{}, sdk.ErrWrongPassphrase
	}
	if err := os.Chmod(r.MountDir, 0o700); err != nil {
		return crypt.UnlockResponse{}, err
	}
	ents, _ := os.ReadDir(filepath.Join(r.VaultPath, "files"))
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(r.VaultPath, "files", e.Name()))
		_ = os.WriteFile(filepath.Join(r.MountDir, e.Name()), xor(b, k), 0o600)
	}
	if x.open == nil {
		x.open = map[string]string{}
	}
	x.open[r.VaultPath] = r.MountDir
	// Remember the key beside the mount for Lock (a double: no secrecy).
	return crypt.UnlockResponse{PlaintextDir: r.MountDir}, os.WriteFile(filepath.Join(r.MountDir, ".key"), k, 0o600)
}
func (x *xorCrypt) Lock(_ context.Context, r crypt.LockRequest) (crypt.LockResponse, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	m, ok := x.open[r.VaultPath]
	if !ok {
		return crypt.LockResponse{}, nil
	}
	k, err := os.ReadFile(filepath.Join(m, ".key"))
	if err != nil {
		return crypt.LockResponse{}, err
	}
	err = filepath.WalkDir(m, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == ".key" {
			return err
		}
		b, err := os.ReadFile(p)
		if err == nil {
			err = os.WriteFile(filepath.Join(r.VaultPath, "files", d.Name()), xor(b, k), 0o600)
		}
		return errors.Join(err, os.Remove(p))
	})
	_ = os.Remove(filepath.Join(m, ".key"))
	delete(x.open, r.VaultPath)
	return crypt.LockResponse{}, err
}

// TestSuiteRunsTheBrokenPlugin is run in a child process by
// TestSuiteFailsABrokenPlugin; alone it is skipped.
func TestSuiteRunsTheBrokenPlugin(t *testing.T) {
	if os.Getenv("CRYPTTEST_BROKEN") == "" {
		t.Skip("run by TestSuiteFailsABrokenPlugin")
	}
	crypttest.Run(t, sdktest.InProcess(t, &xorCrypt{acceptAny: true}).(crypt.Crypt), crypttest.Options{})
}

// The suite passes the double, and fails it once any passphrase opens
// its vaults: the suite is a gate, not a formality.
func TestSuiteFailsABrokenPlugin(t *testing.T) {
	crypttest.Run(t, sdktest.InProcess(t, &xorCrypt{}).(crypt.Crypt), crypttest.Options{})

	cmd := exec.Command(os.Args[0], "-test.run", "^TestSuiteRunsTheBrokenPlugin$", "-test.v")
	cmd.Env = append(os.Environ(), "CRYPTTEST_BROKEN=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the suite passed a plugin that opens vaults with any passphrase:\n%s", out)
	}
	if !strings.Contains(string(out), "--- FAIL: TestSuiteRunsTheBrokenPlugin/WrongPassphraseChangesNothing") {
		t.Fatalf("the suite failed the broken plugin, but not for the right reason:\n%s", out)
	}
}
