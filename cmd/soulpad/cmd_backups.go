package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulpad/soulpad/core/lifecycle"
)

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
