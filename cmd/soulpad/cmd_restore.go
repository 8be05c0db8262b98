package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/soulpad/soulpad/core/lifecycle"
)

func newRestoreCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "restore SNAPSHOT NEW-PAD-DIR",
		Short: "Restore a backup snapshot as a new pad",
		Long: `Restore a snapshot (see 'soulpad backups') into NEW-PAD-DIR, which must not
exist or be empty: a restore never overwrites. The restored pad is the pad
as it was backed up, locked; run it with its passphrase:

  soulpad restore 3f9a1c2e /media/new-usb/pad
  SOULPAD_PAD_PATH=/media/new-usb/pad soulpad run`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeSnapshots(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			target, err := filepath.Abs(args[1])
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if _, err := lifecycle.Restore(ctx, lifecycle.BackupOptions{Config: cfg, Log: g.logger(cfg), Out: g.progressOut(cmd.OutOrStdout()), Progress: g.shower(cmd.OutOrStdout())}, args[0], target); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "next: SOULPAD_PAD_PATH=%s soulpad run%s\n", target, configArg(g))
			return nil
		},
	}
}
