package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/lifecycle"
	"github.com/soulpad/soulpad/core/pad"
)

func newBackupCmd(g *globals) *cobra.Command {
	return &cobra.Command{
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
			_, err = lifecycle.Backup(ctx, lifecycle.BackupOptions{Config: cfg, Log: g.logger(cfg), Out: cmd.OutOrStdout()})
			return err
		},
	}
}

func newBackupsCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "backups",
		Short: "List the snapshots in the backup target",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			snaps, err := lifecycle.Backups(cmd.Context(), lifecycle.BackupOptions{Config: cfg, Log: g.logger(cfg)})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(snaps)
			}
			if len(snaps) == 0 {
				fmt.Fprintln(out, "no snapshots yet: `soulpad backup` makes one")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTAKEN\tPAD\tMACHINE")
			for _, s := range snaps {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.ID, s.Time.Local().Format(time.DateTime), s.Tags["pad"], s.Tags["machine"])
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func newRestoreCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "restore SNAPSHOT NEW-PAD-DIR",
		Short: "Restore a backup snapshot as a new pad",
		Long: `Restore a snapshot (see 'soulpad backups') into NEW-PAD-DIR, which must not
exist or be empty: a restore never overwrites. The restored pad is the pad
as it was backed up, locked; run it with its passphrase:

  soulpad restore 3f9a1c2e /media/new-usb/pad
  SOULPAD_PAD_PATH=/media/new-usb/pad soulpad run`,
		Args: cobra.ExactArgs(2),
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
			if _, err := lifecycle.Restore(ctx, lifecycle.BackupOptions{Config: cfg, Log: g.logger(cfg), Out: cmd.OutOrStdout()}, args[0], target); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "next: SOULPAD_PAD_PATH=%s soulpad run%s\n", target, configArg(g))
			return nil
		},
	}
}

// backupAfterSuspend backs the just-suspended pad up. It never keeps the
// user from unplugging: Ctrl-C skips it, and so does a failure; either
// way the next backup catches up.
func backupAfterSuspend(g *globals, cfg *config.Config, out io.Writer) {
	fmt.Fprintln(out, "backing up (session.backup_after_suspend); Ctrl-C skips it, the next backup catches up")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	_, err := lifecycle.Backup(ctx, lifecycle.BackupOptions{Config: cfg, Log: g.logger(cfg), Out: out})
	if err == nil {
		return
	}
	why := err.Error()
	if ctx.Err() != nil {
		why = "skipped"
	}
	fmt.Fprintf(out, "backup not made (%s); the next `soulpad backup` or suspend catches up\n", why)
	if p, perr := pad.Open(cfg.Pad.Path); perr == nil {
		if j, jerr := pad.NewJournal(p.JournalDir(), "backup-"+pad.NewID()); jerr == nil {
			_ = j.Append(pad.Entry{Stage: "backup", Event: "info", Message: "backup after suspend not made: " + why})
		}
	}
}
