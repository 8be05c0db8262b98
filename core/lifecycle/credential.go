package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/go-hclog"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/crypt"
)

// CredentialOptions change which credentials open a pad's vault.
type CredentialOptions struct {
	Config *config.Config
	Log    hclog.Logger
	Out    io.Writer
	// Existing opens the vault now. Required.
	Existing CredentialFunc
	// Add, when set, becomes another way to open the vault.
	Add CredentialFunc
	// Remove, when set, stops opening the vault. With RemoveExisting the
	// existing credential is removed after Add succeeded (a change).
	Remove         CredentialFunc
	RemoveExisting bool
}

// Credentials adds and/or removes a credential of the pad's vault through
// the crypt plugin (which must announce crypt.CapCredentials), and notes
// what was done — never the secrets — in the pad's journal.
func Credentials(ctx context.Context, o CredentialOptions) error {
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Add == nil && o.Remove == nil && !o.RemoveExisting {
		return errors.New("nothing to do: give a credential to add or to remove")
	}
	v, err := OpenPad(ctx, VaultOptions{Config: o.Config, Log: o.Log, Out: o.Out, Command: "credential"})
	if err != nil {
		return err
	}
	defer v.Close()
	if err := v.startCrypt(ctx); err != nil {
		return err
	}
	p, cp := v.pad, v.crypt
	m, ok := cp.Crypt().(crypt.CredentialManager)
	if !cp.Info.Has(crypt.CapCredentials) || !ok {
		return fmt.Errorf("%s cannot add or remove credentials of its vaults: %w", cp.Name, sdk.ErrUnsupported)
	}
	existing, err := o.Existing(ctx)
	if err != nil {
		return err
	}
	defer existing.Wipe()
	j := v.r.journal
	note := func(msg string) {
		_ = j.Append(pad.Entry{Stage: "credential", Event: "info", Message: msg})
		fmt.Fprintln(o.Out, msg)
	}
	keep := existing
	if o.Add != nil {
		add, err := o.Add(ctx)
		if err != nil {
			return err
		}
		defer add.Wipe()
		if _, err := m.AddCredential(ctx, crypt.AddCredentialRequest{VaultPath: p.VaultPath(), Existing: existing, Add: add}); err != nil {
			return cp.Err("add a credential", err)
		}
		note(fmt.Sprintf("added a %s to the vault", kindOf(add)))
		keep = add
	}
	var rm crypt.Credential
	switch {
	case o.RemoveExisting:
		rm = existing
	case o.Remove != nil:
		if rm, err = o.Remove(ctx); err != nil {
			return err
		}
		defer rm.Wipe()
	default:
		return nil
	}
	if _, err := m.RemoveCredential(ctx, crypt.RemoveCredentialRequest{VaultPath: p.VaultPath(), Existing: keep, Remove: rm}); err != nil {
		return cp.Err("remove a credential", err)
	}
	note(fmt.Sprintf("removed a %s from the vault", kindOf(rm)))
	return nil
}

func kindOf(c crypt.Credential) string {
	if len(c.KeyFile) > 0 {
		return "key file"
	}
	return "passphrase"
}
