package luks

import (
	"context"
	"errors"
	"fmt"

	luksgo "github.com/anatol/luks.go"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/crypt"
)

// secret is the bytes cryptsetup and luks.go take: the passphrase, or the
// key file's content.
func secret(c crypt.Credential) ([]byte, error) {
	if len(c.KeyFile) > 0 {
		return c.KeyFile, nil
	}
	if len(c.Passphrase) > 0 {
		return c.Passphrase, nil
	}
	return nil, fmt.Errorf("crypt-luks: no passphrase or key file given: %w", sdk.ErrInvalidArgument)
}

func checkNew(c crypt.Credential) error {
	if len(c.KeyFile) == 0 && len(c.Passphrase) < MinPassphrase {
		return fmt.Errorf("crypt-luks: a passphrase needs at least %d characters (or use a key file): %w", MinPassphrase, sdk.ErrInvalidArgument)
	}
	return nil
}

// slots counts the active key slots.
func slots(path string) (int, error) {
	dev, err := luksgo.Open(path)
	if err != nil {
		return 0, fmt.Errorf("crypt-luks: %s: %v: %w", path, err, sdk.ErrCorrupt)
	}
	defer dev.Close()
	return len(dev.Slots()), nil
}

// AddCredential implements crypt.CredentialManager.
func (p *Plugin) AddCredential(ctx context.Context, req crypt.AddCredentialRequest) (crypt.AddCredentialResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur, err := secret(req.Existing)
	if err != nil {
		return crypt.AddCredentialResponse{}, err
	}
	add, err := secret(req.Add)
	if err != nil {
		return crypt.AddCredentialResponse{}, err
	}
	if err := checkNew(req.Add); err != nil {
		return crypt.AddCredentialResponse{}, err
	}
	u, err := unseal(req.VaultPath, cur)
	if err != nil {
		return crypt.AddCredentialResponse{}, err
	}
	u.wipe()
	args := append([]string{"luksAddKey", "--batch-mode"}, p.pbkdfArgs()...)
	if err := cryptsetup(ctx, cur, add, append(args, "--key-file", "-", req.VaultPath, "/dev/fd/3")...); err != nil {
		return crypt.AddCredentialResponse{}, fmt.Errorf("crypt-luks: add credential: %w", err)
	}
	return crypt.AddCredentialResponse{}, nil
}

// RemoveCredential implements crypt.CredentialManager.
func (p *Plugin) RemoveCredential(ctx context.Context, req crypt.RemoveCredentialRequest) (crypt.RemoveCredentialResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur, err := secret(req.Existing)
	if err != nil {
		return crypt.RemoveCredentialResponse{}, err
	}
	rm, err := secret(req.Remove)
	if err != nil {
		return crypt.RemoveCredentialResponse{}, err
	}
	u, err := unseal(req.VaultPath, cur)
	if err != nil {
		return crypt.RemoveCredentialResponse{}, err
	}
	u.wipe()
	if u, err = unseal(req.VaultPath, rm); err != nil {
		if errors.Is(err, sdk.ErrWrongPassphrase) {
			return crypt.RemoveCredentialResponse{}, fmt.Errorf("crypt-luks: remove credential: it does not open %s: %w", req.VaultPath, sdk.ErrNotFound)
		}
		return crypt.RemoveCredentialResponse{}, err
	}
	u.wipe()
	if n, err := slots(req.VaultPath); err != nil {
		return crypt.RemoveCredentialResponse{}, err
	} else if n < 2 {
		return crypt.RemoveCredentialResponse{}, fmt.Errorf("crypt-luks: remove credential: it is the last one; add another first: %w", sdk.ErrInvalidArgument)
	}
	if err := cryptsetup(ctx, rm, nil, "luksRemoveKey", "--batch-mode", "--key-file", "-", req.VaultPath); err != nil {
		return crypt.RemoveCredentialResponse{}, fmt.Errorf("crypt-luks: remove credential: %w", err)
	}
	return crypt.RemoveCredentialResponse{}, nil
}
