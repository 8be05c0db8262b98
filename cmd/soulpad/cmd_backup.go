package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/soulpad/soulpad/core/lifecycle"
)

func newBackupCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "backup",
		Short: "Back up the locked pad (cipher text and suspend points) with the backup plugin",
		Long: `Back up the pad as it sits locked — pad.json, the journal, and the vault's
cipher text with its sealed suspend points — through plugins.backup. The
target never needs the vault's key. Backups are incremental: a small change
to a large disk image sends about the changed part. A pad a session is
running is refused: suspend it first.

Progress goes to stdout, then a summary of bytes scanned and bytes sent.
An interrupted backup leaves every earlier snapshot restorable; the next
one completes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			_, err = lifecycle.Backup(ctx, lifecycle.BackupOptions{Config: cfg, Log: g.logger(cfg), Out: g.progressOut(cmd.OutOrStdout()), Progress: g.shower(cmd.OutOrStdout())})
			return err
		},
	}
	c.AddCommand(newBackupVerifyCmd(g), newBackupPruneCmd(g))
	return c
}

func newBackupVerifyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "verify [SNAPSHOT]",
		Short: "Check that the backup target can still be restored (reads all of its data)",
		Long: `Reads the backup target's data back and checks it (restic: check
--read-data), so a damaged target is found before a restore needs it. With
SNAPSHOT, checks that it exists too. Exits non-zero when the target is
damaged.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			res, err := lifecycle.VerifyBackup(cmd.Context(), lifecycle.BackupOptions{Config: cfg, Log: g.logger(cfg), Out: cmd.OutOrStdout()}, id)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "the backup target is whole: %s\n", res.Details)
			return nil
		},
	}
}

func newBackupPruneCmd(g *globals) *cobra.Command {
	var keep int
	c := &cobra.Command{
		Use:   "prune --keep-last N",
		Short: "Remove all but the newest N snapshots from the backup target",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			res, err := lifecycle.PruneBackups(cmd.Context(), lifecycle.BackupOptions{Config: cfg, Log: g.logger(cfg), Out: cmd.OutOrStdout()}, keep)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %d snapshots; the newest %d are kept\n", len(res.Removed), keep)
			return nil
		},
	}
	c.Flags().IntVar(&keep, "keep-last", 0, "how many of the newest snapshots to keep (required, 1 or more)")
	return c
}
