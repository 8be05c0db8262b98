// Package crypt is the contract of crypt plugins: they turn the vault on
// the pad (cipher text) into a plaintext directory on the host and back.
package crypt

import (
	"context"
	"time"

	"github.com/soulpad/soulpad/sdk"
)

// APIVersion is the version of this contract.
const APIVersion = 1

// Capabilities a crypt plugin may announce in Info.
const (
	// CapCredentials: the plugin implements CredentialManager.
	CapCredentials = "credentials"
	// CapKeyFile: a key file (e.g. on a second USB key) can open the vault.
	CapKeyFile = "key-file"
	// CapNoEncryption: the vault is not encrypted and needs no credential
	// (test and measurement plugins only); the host does not prompt and
	// warns the user.
	CapNoEncryption = "no-encryption"
)

// Credential opens a vault: a passphrase, or the bytes of a key file. The
// host wipes both after use; plugins must not log or keep them beyond the
// call (a kernel keyring or a mapped key is the plugin's business).
type Credential struct {
	Passphrase []byte
	KeyFile    []byte
}

// Empty reports whether neither a passphrase nor a key file is set.
func (c Credential) Empty() bool { return len(c.Passphrase) == 0 && len(c.KeyFile) == 0 }

// Wipe overwrites the secret bytes in place.
func (c Credential) Wipe() {
	for i := range c.Passphrase {
		c.Passphrase[i] = 0
	}
	for i := range c.KeyFile {
		c.KeyFile[i] = 0
	}
}

// CreateRequest asks for a new vault at VaultPath.
type CreateRequest struct {
	// VaultPath is where the cipher text lives on the pad (a file or a
	// directory, the plugin's choice). It must not exist yet.
	VaultPath string
	// Credential is the first credential that opens the vault.
	Credential Credential
	// SizeBytes is the capacity wanted, for fixed-size containers.
	SizeBytes uint64
	// OnProgress, when set, is called as long work goes on (a fixed-size
	// container being written end to end). It does not cross the RPC;
	// the adapters carry the progress stream.
	OnProgress func(Progress) `json:"-"`
}

// Progress reports long work in Create. BytesTotal may be 0 when unknown.
type Progress struct {
	Phase      string
	BytesDone  uint64
	BytesTotal uint64
}

// CreateResponse is empty.
type CreateResponse struct{}

// UnlockRequest asks to open a vault.
type UnlockRequest struct {
	VaultPath  string
	Credential Credential
	// MountDir is an empty host directory the plugin may mount the plaintext
	// at. Plugins that need no mount may ignore it.
	MountDir string
}

// UnlockResponse gives the plaintext directory.
type UnlockResponse struct {
	PlaintextDir string
}

// LockRequest asks to close a vault.
type LockRequest struct {
	VaultPath string
}

// LockResponse is empty.
type LockResponse struct{}

// Crypt is the interface every crypt plugin implements.
type Crypt interface {
	sdk.Plugin

	// Create makes a new vault. It fails with sdk.ErrAlreadyExists when
	// VaultPath exists, and with sdk.ErrInvalidArgument when the credential
	// is not acceptable (e.g. too short); nothing is left behind on failure.
	Create(ctx context.Context, req CreateRequest) (CreateResponse, error)

	// Unlock opens the vault and returns a plaintext directory that stays
	// usable until Lock. A wrong credential fails with
	// sdk.ErrWrongPassphrase and changes nothing in the vault; a missing
	// vault fails with sdk.ErrNotFound; a damaged one with sdk.ErrCorrupt.
	// Unlock on a vault this plugin already unlocked returns the same
	// directory.
	Unlock(ctx context.Context, req UnlockRequest) (UnlockResponse, error)

	// Lock flushes and closes the vault and wipes key material. Lock on a
	// locked vault returns nil.
	Lock(ctx context.Context, req LockRequest) (LockResponse, error)
}

// AddCredentialRequest adds a credential, proven by an existing one.
type AddCredentialRequest struct {
	VaultPath string
	Existing  Credential
	Add       Credential
}

// AddCredentialResponse is empty.
type AddCredentialResponse struct{}

// RemoveCredentialRequest removes a credential, proven by an existing one
// (which may be the one removed). Removing the last credential fails with
// sdk.ErrInvalidArgument.
type RemoveCredentialRequest struct {
	VaultPath string
	Existing  Credential
	Remove    Credential
}

// RemoveCredentialResponse is empty.
type RemoveCredentialResponse struct{}

// CredentialManager is optional (capability "credentials").
type CredentialManager interface {
	AddCredential(ctx context.Context, req AddCredentialRequest) (AddCredentialResponse, error)
	RemoveCredential(ctx context.Context, req RemoveCredentialRequest) (RemoveCredentialResponse, error)
}

// LockWhenFree locks the vault as a crypt plugin ends (its Shutdown),
// waiting up to a minute while it is busy: a suspend that was asked for
// (the VMM plugin finishing its state after the host died) completes
// before the vault goes.
func LockWhenFree(c Crypt, vault string) error {
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := c.Lock(context.Background(), LockRequest{VaultPath: vault})
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
