package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/soulpad/soulpad/core/lifecycle"
	"github.com/soulpad/soulpad/core/pad"
)

func newManCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "man DIR",
		Short: "Write soulpad's man pages (soulpad.1, soulpad-run.1, …) into DIR",
		Long: `Write a man page for soulpad and each of its commands into DIR (made if
missing), from the same text as --help. Install them with, for example:

  soulpad man /usr/local/share/man/man1 && mandb

Shell completion, which also offers suspend point and snapshot IDs:
'soulpad completion bash|zsh|fish --help'.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			root.DisableAutoGenTag = true
			hdr := &doc.GenManHeader{Title: "SOULPAD", Section: "1", Source: "SoulPad " + version, Manual: "SoulPad Manual"}
			if err := doc.GenManTree(root, hdr, args[0]); err != nil {
				return err
			}
			n, _ := os.ReadDir(args[0])
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %d man pages to %s\n", len(n), args[0])
			return nil
		},
	}
}

// journalPoints are the pad's sealed suspend points as its journal
// records them (no unlock needed), oldest first.
func journalPoints(p *pad.Pad) ([]pad.Entry, error) {
	all, err := pad.ReadJournal(p.JournalDir())
	if err != nil {
		return nil, err
	}
	removed := map[string]bool{}
	for _, e := range all {
		if ids, ok := e.Fields["removed"].([]any); ok && e.Event == "info" {
			for _, id := range ids {
				removed[fmt.Sprint(id)] = true
			}
		}
	}
	var out []pad.Entry
	for _, e := range all {
		if e.Event == "info" && (e.Message == "suspend point sealed" || e.Message == lifecycle.CheckpointSealed) && e.Fields != nil && e.Fields["point"] != nil && !removed[fmt.Sprint(e.Fields["point"])] {
			out = append(out, e)
		}
	}
	return out, nil
}

// completePoints offers the pad's suspend point IDs, newest first, with
// when they were sealed.
func completePoints(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		_, p, err := g.loadPad()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		es, err := journalPoints(p)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for i := len(es) - 1; i >= 0; i-- {
			id := fmt.Sprint(es[i].Fields["point"])
			if strings.HasPrefix(id, toComplete) && !contains(args, id) {
				out = append(out, id+"\tsealed "+es[i].Time.Local().Format(time.DateTime))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeSnapshots offers the backup target's snapshot IDs, newest first.
func completeSnapshots(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveDefault // NEW-PAD-DIR: a path
		}
		cfg, err := g.load()
		if err != nil || cfg.Plugins.Backup == "" {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 20*time.Second)
		defer cancel()
		snaps, err := lifecycle.Backups(ctx, lifecycle.BackupOptions{Config: cfg, Log: g.logger(cfg)})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		sort.SliceStable(snaps, func(i, j int) bool { return snaps[i].Time.After(snaps[j].Time) })
		var out []string
		for _, s := range snaps {
			if strings.HasPrefix(s.ID, toComplete) {
				out = append(out, s.ID+"\ttaken "+s.Time.Local().Format(time.DateTime))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
