package main

import (
	"github.com/spf13/cobra"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/lifecycle"
)

func newCredentialCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "credential",
		Short: "Add, remove or change the passphrases and key files that open the vault",
		Long: `Manage the credentials that open the pad's vault, through its crypt plugin
(crypt-luks keeps each in a LUKS2 key slot). The current credential comes
from --passphrase-file, --key-file, the config's unlock block, or the
terminal; new ones from --new-passphrase-file, --new-key-file or the
terminal (asked twice). Secrets are never taken from the command line.

  soulpad credential add --new-key-file /media/usbkey/soulpad.key
  soulpad credential change            # a new passphrase instead of the old
  soulpad credential remove --remove-key-file /media/usbkey/soulpad.key

A vault keeps at least one credential: the last one cannot be removed.`,
	}
	c.AddCommand(credentialSub(g, "add", "Add a passphrase or key file that also opens the vault", true, false),
		credentialSub(g, "change", "Replace the current passphrase or key file with a new one", true, true),
		credentialSub(g, "remove", "Remove a passphrase or key file (another must remain)", false, false))
	return c
}

func credentialSub(g *globals, use, short string, add, change bool) *cobra.Command {
	cur := credFlags{}
	next := credFlags{label: "New passphrase"}
	rm := credFlags{label: "Passphrase to remove"}
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			o := lifecycle.CredentialOptions{Config: cfg, Log: g.logger(cfg), Out: cmd.OutOrStdout(),
				Existing: cur.credential(cfg, false), RemoveExisting: change}
			none := &config.Config{}
			if add {
				o.Add = next.credential(none, true)
			} else {
				o.Remove = rm.credential(none, false)
			}
			return lifecycle.Credentials(cmd.Context(), o)
		},
	}
	c.Flags().StringVar(&cur.passphraseFile, "passphrase-file", "", "the current passphrase, from this file")
	c.Flags().StringVar(&cur.keyFile, "key-file", "", "the current key file")
	if add {
		c.Flags().StringVar(&next.passphraseFile, "new-passphrase-file", "", "the new passphrase, from this file")
		c.Flags().StringVar(&next.keyFile, "new-key-file", "", "the new key file (e.g. on a second USB key)")
	} else {
		c.Flags().StringVar(&rm.passphraseFile, "remove-passphrase-file", "", "the passphrase to remove, from this file")
		c.Flags().StringVar(&rm.keyFile, "remove-key-file", "", "the key file to remove")
	}
	return c
}
