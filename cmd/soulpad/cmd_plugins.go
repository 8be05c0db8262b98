package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/lifecycle"
	"github.com/soulpad/soulpad/core/pluginhost"
)

func newPluginsCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "plugins",
		Short: "List the plugins found, with kind, version and SHA-256",
		Long: `List every plugin binary in the search path (plugins.dirs, then plugins/
beside the soulpad executable, then the pad's plugins/), start each to ask
its kind and version, and show its SHA-256 — the value to pin in
plugins { sha256 = { "name" = "…" } } so that a replaced binary is refused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			host := lifecycle.NewHost(cfg, g.logger(cfg), nil)
			defer host.Close()
			bins, err := host.List()
			if err != nil {
				return err
			}
			rows := []pluginRow{}
			for _, b := range bins {
				rows = append(rows, describePlugin(cmd.Context(), host, cfg, b))
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			if len(rows) == 0 {
				fmt.Fprintf(out, "no plugins found in %s\nbuild them with `make build`\n", strings.Join(host.Dirs(), ", "))
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tKIND\tVERSION\tPINNED\tSHA-256\tPATH")
			for _, r := range rows {
				kind := r.Kind
				if r.Error != "" {
					kind = "ERROR"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, kind, r.Version, r.Pinned, r.SHA256, r.Path)
			}
			tw.Flush()
			for _, r := range rows {
				if r.Error != "" {
					fmt.Fprintf(out, "\n%s: %s\n", r.Name, r.Error)
				}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// pluginRow is a line of `soulpad plugins` (an element of its --json).
type pluginRow struct {
	Name         string   `json:"name"`
	Kind         string   `json:"kind"`
	Version      string   `json:"version"`
	APIVersions  []int    `json:"api_versions"`
	Capabilities []string `json:"capabilities"`
	SHA256       string   `json:"sha256"`
	Pinned       string   `json:"pinned"`
	Path         string   `json:"path"`
	Description  string   `json:"description,omitempty"`
	Error        string   `json:"error,omitempty"`
}

// describePlugin starts the plugin b to ask its kind and version, and
// says whether its checksum is pinned and matches.
func describePlugin(ctx context.Context, host *pluginhost.Host, cfg *config.Config, b pluginhost.Binary) pluginRow {
	r := pluginRow{Name: b.Name, SHA256: b.SHA256, Path: b.Path, Pinned: "no"}
	if pin, ok := cfg.Plugins.SHA256[b.Name]; ok {
		r.Pinned = "ok"
		if !strings.EqualFold(pin, b.SHA256) {
			r.Pinned = "MISMATCH"
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	p, err := host.Launch(ctx, b.Name)
	cancel()
	if err != nil {
		r.Error = err.Error()
	} else {
		r.Kind, r.Version, r.APIVersions, r.Capabilities, r.Description = string(p.Info.Kind), p.Info.Version, p.Info.APIVersions, p.Info.Capabilities, p.Info.Description
		p.Kill()
	}
	if r.Capabilities == nil {
		r.Capabilities = []string{} // [] not null, as every --json
	}
	if r.APIVersions == nil {
		r.APIVersions = []int{}
	}
	return r
}
