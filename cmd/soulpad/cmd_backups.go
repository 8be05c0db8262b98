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
		Long: `List the snapshots of the locked pad in the backup target (plugins.backup),
oldest first: ID (for 'soulpad restore'), when it was taken, its size (what
a restore writes; "-" when the target does not say), the pad and the
machine.

--json prints a list of {"id", "time", "size_bytes" (null when unknown),
"pad", "machine", "tags"}: snake_case keys and [] for no snapshots, as
every --json of soulpad.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			snaps, err := lifecycle.Backups(cmd.Context(), lifecycle.BackupOptions{Config: cfg, Log: g.logger(cfg)})
			if err != nil {
				return err
			}
			out := termSafe(cmd.OutOrStdout())
			if asJSON {
				type snapJSON struct {
					ID   string    `json:"id"`
					Time time.Time `json:"time"`
					// SizeBytes is null when the backup target does not say.
					SizeBytes *uint64           `json:"size_bytes"`
					Pad       string            `json:"pad,omitempty"`
					Machine   string            `json:"machine,omitempty"`
					Tags      map[string]string `json:"tags"`
				}
				list := []snapJSON{}
				for _, s := range snaps {
					j := snapJSON{ID: s.ID, Time: s.Time, Pad: s.Tags["pad"], Machine: s.Tags["machine"], Tags: s.Tags}
					if s.SizeBytes > 0 {
						j.SizeBytes = &s.SizeBytes
					}
					if j.Tags == nil {
						j.Tags = map[string]string{}
					}
					list = append(list, j)
				}
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			}
			if len(snaps) == 0 {
				fmt.Fprintln(out, "no snapshots yet: `soulpad backup` makes one")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTAKEN\tSIZE\tPAD\tMACHINE")
			for _, s := range snaps {
				size := "-"
				if s.SizeBytes > 0 {
					size = fmt.Sprintf("%.1f MiB", float64(s.SizeBytes)/(1<<20))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.ID, s.Time.Local().Format(time.DateTime), size, s.Tags["pad"], s.Tags["machine"])
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}
