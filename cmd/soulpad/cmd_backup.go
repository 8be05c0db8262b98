package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

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
