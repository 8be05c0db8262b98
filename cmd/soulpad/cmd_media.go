package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/soulpad/soulpad/core/lifecycle"
)

// openMachine unlocks the pad's vault for a command that changes the
// machine (its lock held: the machine must not be running).
func openMachine(g *globals, cmd *cobra.Command, cf *credFlags, command string) (*lifecycle.OpenedVault, error) {
	cfg, err := g.load()
	if err != nil {
		return nil, err
	}
	if err := cf.check(cfg); err != nil {
		return nil, err
	}
	return lifecycle.OpenVault(cmd.Context(), lifecycle.VaultOptions{Config: cfg, Log: g.logger(cfg), Out: cmd.ErrOrStderr(),
		Command: command, Credential: cf.credential(cfg, false), CredentialTries: cf.tries(cfg)})
}

func credentialFlags(c *cobra.Command, cf *credFlags) {
	c.PersistentFlags().StringVar(&cf.passphraseFile, "passphrase-file", "", "read the passphrase from this file (first line)")
	c.PersistentFlags().StringVar(&cf.keyFile, "key-file", "", "use this file's bytes as the key (e.g. on a second USB key)")
}

func newMediaCmd(g *globals) *cobra.Command {
	var cf credFlags
	c := &cobra.Command{
		Use:   "media",
		Short: "Show, insert or eject the installer in the machine's CD-ROM drive",
		Long: `The machine has a CD-ROM drive. 'soulpad media insert FILE' puts an
installer ISO in it: the ISO is copied into the vault (it travels with the
pad while it is in) and the machine boots from it until it is ejected,
also after a suspend and resume. 'soulpad media eject' empties the drive
and removes the ISO from the vault; from then on the machine boots its
disk. Without a subcommand, says what is in the drive.

The pad must not be running (the vault is unlocked for the change; the
passphrase is asked as for 'soulpad run'). 'soulpad init --iso FILE'
makes a pad with an empty disk and the installer in the drive.`,
		Example: `  soulpad init --iso debian-12.8.0-amd64-netinst.iso
  soulpad run                      # install onto the empty disk
  soulpad media eject              # then the disk boots on its own
  soulpad media insert drivers.iso`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := openMachine(g, cmd, &cf, "media")
			if err != nil {
				return err
			}
			if spec := v.Spec(); spec.Media == "" {
				fmt.Fprintln(cmd.OutOrStdout(), "the CD-ROM drive is empty")
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "the CD-ROM drive holds an installer of %s (the machine boots from it; soulpad media eject removes it)\n", human(v.MediaSize()))
			}
			return v.Close()
		},
	}
	credentialFlags(c, &cf)
	c.AddCommand(newMediaInsertCmd(g, &cf), newMediaEjectCmd(g, &cf))
	return c
}

// newMediaInsertCmd is `soulpad media insert FILE`.
func newMediaInsertCmd(g *globals, cf *credFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "insert FILE",
		Short: "Put an installer ISO in the drive (copied into the vault)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := lifecycle.CheckISO(args[0]); err != nil {
				return err
			}
			v, err := openMachine(g, cmd, cf, "media")
			if err != nil {
				return err
			}
			show := g.shower(cmd.ErrOrStderr())
			err = v.InsertMedia(cmd.Context(), args[0], func(done, total int64) {
				if show != nil {
					show(lifecycle.Progress{Step: "copying the installer", Done: uint64(done), Total: uint64(total), Final: done >= total})
				}
			})
			if err = errors.Join(err, v.Close()); err == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is in the CD-ROM drive; the machine boots from it at its next start (soulpad run%s)\n", args[0], configArg(g))
			}
			return err
		},
	}
}

// newMediaEjectCmd is `soulpad media eject`.
func newMediaEjectCmd(g *globals, cf *credFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "eject",
		Short: "Empty the drive and remove the installer from the vault",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := openMachine(g, cmd, cf, "media")
			if err != nil {
				return err
			}
			had, err := v.EjectMedia()
			if err = errors.Join(err, v.Close()); err != nil {
				return err
			}
			if !had {
				fmt.Fprintln(cmd.OutOrStdout(), "the CD-ROM drive was empty")
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), "ejected: the drive is empty and the installer is gone from the vault; the machine boots its disk")
			}
			return nil
		},
	}
}

func newDiskCmd(g *globals) *cobra.Command {
	var cf credFlags
	c := &cobra.Command{
		Use:   "disk",
		Short: "Grow the machine's disk",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	credentialFlags(c, &cf)
	grow := &cobra.Command{
		Use:   "grow SIZE",
		Short: "Make the machine's disk larger (e.g. 20G, 512M, or +4G)",
		Long: `Make the machine's disk SIZE large (M, G or T: binary units; +N adds N
to its size now). The machine sees the new size from its next start or
resume; the partition and file system inside are the guest's to grow
(e.g. growpart and resize2fs on Linux, Disk Management on Windows). A disk
never shrinks. The pad must not be running.`,
		Example: `  soulpad disk grow 20G
  soulpad disk grow +4G`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mib, rel, err := parseGrowth(args[0])
			if err != nil {
				return usageErr(err)
			}
			v, err := openMachine(g, cmd, &cf, "disk")
			if err != nil {
				return err
			}
			if rel {
				mib += v.DiskMiB()
			}
			gr, err := v.GrowDisk(mib)
			if err = errors.Join(err, v.Close()); err != nil {
				if lifecycle.IsUsage(err) {
					return usageErr(err)
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "disk %s: %s → %s; the machine sees it at its next start or resume (grow the partition and file system inside the guest)\n",
				gr.Disk, human(gr.From), human(gr.To))
			if gr.To-gr.From > gr.Free {
				fmt.Fprintf(cmd.OutOrStdout(), "warning: the vault has %s free; writes beyond that will fail when the disk fills\n", human(gr.Free))
			}
			return nil
		},
	}
	c.AddCommand(grow)
	return c
}

// parseGrowth reads a size such as 20G, 512M or +4G into MiB; rel says
// it is to be added.
func parseGrowth(s string) (mib uint64, rel bool, err error) {
	t, rel := strings.CutPrefix(strings.TrimSpace(s), "+")
	n, err := parseSizeMiB(t)
	if err != nil {
		return 0, false, fmt.Errorf("%q is not a size: %v (or +4G to add 4 GiB)", s, err)
	}
	return uint64(n), rel, nil
}
