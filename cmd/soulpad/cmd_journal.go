package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/soulpad/soulpad/core/pad"
)

func newJournalCmd(g *globals) *cobra.Command {
	var asJSON, last bool
	c := &cobra.Command{
		Use:   "journal",
		Short: "Print the pad's journal: every session's stages, timings and events",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, p, err := g.loadPad()
			if err != nil {
				return err
			}
			var es []pad.Entry
			if last {
				es, err = pad.LastSession(p.JournalDir())
			} else {
				es, err = pad.ReadJournal(p.JournalDir())
			}
			if err != nil {
				return err
			}
			out := termSafe(cmd.OutOrStdout())
			if asJSON {
				enc := json.NewEncoder(out)
				for _, e := range es {
					if err := enc.Encode(e); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tSESSION\tSTAGE\tEVENT\tTIME\tMESSAGE")
			for _, e := range es {
				d := ""
				if e.Event == "end" || e.Event == "fail" {
					d = fmt.Sprintf("%.3f s", e.DurationMS/1000)
				}
				msg := e.Message
				if e.Error != "" {
					msg = strings.TrimSpace(msg + " " + firstLine(e.Error))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format("2006-01-02 15:04:05.000"), e.Session, e.Stage, e.Event, d, msg)
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON lines")
	c.Flags().BoolVar(&last, "last", false, "only the last session")
	return c
}
