package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/control"
	"github.com/soulpad/soulpad/core/lifecycle"
	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/core/pluginhost"
	"github.com/soulpad/soulpad/sdk/detect"
)

func openPad(cfg *config.Config) (*pad.Pad, error) {
	return pad.Open(cfg.Pad.Path)
}

// StatusReport is `soulpad status --json`.
type StatusReport struct {
	Pad          pad.Meta `json:"pad"`
	Dir          string   `json:"dir"`
	Running      bool     `json:"running"`
	RunningStage string   `json:"running_stage,omitempty"`
	// Lock is who holds the pad (or left it locked).
	Lock        pad.LockState `json:"lock"`
	Points      []PointInfo   `json:"suspend_points"`
	LastSession []StageTiming `json:"last_session"`
	// ThisHost is the profile of the host status runs on.
	ThisHost        *detect.HostProfile `json:"this_host,omitempty"`
	ThisHostSummary string              `json:"this_host_summary"`
}

// PointInfo is a suspend point as the journal recorded it (the points
// themselves are inside the vault).
type PointInfo struct {
	ID          string    `json:"id"`
	Time        time.Time `json:"time"`
	Bytes       int64     `json:"bytes"`
	CPUModel    string    `json:"cpu_model"`
	Accelerator string    `json:"accelerator"`
	Host        string    `json:"host"`
	HostSummary string    `json:"host_summary,omitempty"`
}

// StageTiming is one stage of the last session.
type StageTiming struct {
	Stage      string  `json:"stage"`
	DurationMS float64 `json:"duration_ms"`
	Failed     bool    `json:"failed"`
	Message    string  `json:"message,omitempty"`
}

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the pad, its suspend points and the last session's stage timings",
		Long: `Show the pad's identity, whether a session is running it now, its suspend
points (as recorded in the pad's journal: the points themselves stay inside
the encrypted vault; 'soulpad points' unlocks it and lists them all), who
holds the pad's lock, and the stage timings of the last session.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			p, err := openPad(cfg)
			if err != nil {
				return err
			}
			rep := StatusReport{Pad: p.Meta, Dir: p.Dir}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
			defer cancel()
			if r, err := control.Send(ctx, p.Meta.ID, control.Request{Command: "status"}); err == nil && r.OK {
				rep.Running, rep.RunningStage = true, r.Stage
			}
			if rep.Lock, err = pad.PeekLock(p.Dir); err != nil {
				return err
			}
			all, err := pad.ReadJournal(p.JournalDir())
			if err != nil {
				return err
			}
			removed := map[string]bool{}
			for _, e := range all {
				if ids, ok := e.Fields["removed"].([]any); ok && e.Event == "info" {
					for _, id := range ids {
						removed[fmt.Sprint(id)] = true
					}
				}
			}
			for _, e := range all {
				if e.Event == "info" && e.Message == "suspend point sealed" && e.Fields != nil && e.Fields["point"] != nil && !removed[fmt.Sprint(e.Fields["point"])] {
					pi := PointInfo{ID: fmt.Sprint(e.Fields["point"]), Time: e.Time, CPUModel: str(e.Fields["cpu_model"]), Accelerator: str(e.Fields["accelerator"]), Host: str(e.Fields["host"]), HostSummary: str(e.Fields["host_summary"])}
					if n, ok := e.Fields["bytes"].(float64); ok {
						pi.Bytes = int64(n)
					}
					rep.Points = append(rep.Points, pi)
				}
			}
			if prof, src, err := lifecycle.ProbeHost(ctx, cfg, g.logger(cfg)); err == nil {
				rep.ThisHost, rep.ThisHostSummary = &prof, lifecycle.HostSummary(prof)+" ("+src+")"
			} else {
				rep.ThisHostSummary = "unknown: " + err.Error()
			}
			last, _ := pad.LastSession(p.JournalDir())
			for _, e := range last {
				if (e.Event == "end" || e.Event == "fail") && e.Stage != "" {
					msg := e.Message
					if e.Error != "" {
						msg = e.Error
					}
					rep.LastSession = append(rep.LastSession, StageTiming{Stage: e.Stage, DurationMS: e.DurationMS, Failed: e.Event == "fail", Message: msg})
				}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			fmt.Fprintf(out, "pad        %s\nid         %s (format %d, created %s)\nmachine    %s\nplugins    crypt %s, vmm %s\n",
				p.Dir, p.Meta.ID, p.Meta.Format, p.Meta.Created.Local().Format(time.DateTime), p.Meta.Machine, p.Meta.Crypt.Name, p.Meta.VMM.Name)
			fmt.Fprintf(out, "this host  %s\n", rep.ThisHostSummary)
			if rep.Running {
				fmt.Fprintf(out, "running    yes, stage %s\n", rep.RunningStage)
			} else {
				fmt.Fprintln(out, "running    no")
			}
			switch l := rep.Lock; {
			case l.Held && l.Holder != nil:
				fmt.Fprintf(out, "in use     by %s\n", *l.Holder)
			case l.Held:
				fmt.Fprintln(out, "in use     yes")
			case l.Stale && l.Foreign:
				fmt.Fprintf(out, "in use     left locked by %s, which never released it: if that session is gone, `soulpad break-lock`\n", *l.Holder)
			case l.Stale:
				fmt.Fprintf(out, "in use     no (%s ended without releasing it; the next run takes over)\n", *l.Holder)
			default:
				fmt.Fprintln(out, "in use     no")
			}
			fmt.Fprintln(out, "\nSuspend points:")
			if len(rep.Points) == 0 {
				fmt.Fprintln(out, "  none yet")
			} else {
				tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "  ID\tTAKEN\tSIZE\tCPU MODEL\tACCEL\tHOST")
				for _, pi := range rep.Points {
					fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", pi.ID, pi.Time.Local().Format(time.DateTime), human(pi.Bytes), pi.CPUModel, pi.Accelerator, pi.Host)
				}
				tw.Flush()
				fmt.Fprintln(out, "  taken on:")
				for _, pi := range rep.Points {
					if pi.HostSummary != "" {
						fmt.Fprintf(out, "    %s  %s\n", pi.ID, pi.HostSummary)
					}
				}
			}
			fmt.Fprintln(out, "\nLast session:")
			if len(rep.LastSession) == 0 {
				fmt.Fprintln(out, "  none yet")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "  STAGE\tTIME\tRESULT")
			for _, t := range rep.LastSession {
				res := t.Message
				if t.Failed {
					res = "FAILED: " + firstLine(res)
				} else if res == "" {
					res = "ok"
				}
				fmt.Fprintf(tw, "  %s\t%.3f s\t%s\n", t.Stage, t.DurationMS/1000, res)
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

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
			host := pluginhost.New(g.logger(cfg).Named("plugin"), lifecycle.PluginDirs(cfg), cfg.Plugins.SHA256)
			defer host.Close()
			bins, err := host.List()
			if err != nil {
				return err
			}
			type row struct {
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
			var rows []row
			for _, b := range bins {
				r := row{Name: b.Name, SHA256: b.SHA256, Path: b.Path, Pinned: "no"}
				if pin, ok := cfg.Plugins.SHA256[b.Name]; ok {
					r.Pinned = "ok"
					if !strings.EqualFold(pin, b.SHA256) {
						r.Pinned = "MISMATCH"
					}
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
				p, err := host.Launch(ctx, b.Name)
				cancel()
				if err != nil {
					r.Error = err.Error()
				} else {
					r.Kind, r.Version, r.APIVersions, r.Capabilities, r.Description = string(p.Info.Kind), p.Info.Version, p.Info.APIVersions, p.Info.Capabilities, p.Info.Description
					p.Kill()
				}
				rows = append(rows, r)
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

func newJournalCmd(g *globals) *cobra.Command {
	var asJSON, last bool
	c := &cobra.Command{
		Use:   "journal",
		Short: "Print the pad's journal: every session's stages, timings and events",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			p, err := openPad(cfg)
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
			out := cmd.OutOrStdout()
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

func newConfigCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Check a config file, or print the built-in default config",
	}
	c.AddCommand(&cobra.Command{
		Use:   "check [FILE]",
		Short: "Validate a site config (FILE, else --config, else the built-in one)",
		Long: `Validate a site config: HCL syntax, unknown keys, values out of range, and
SOULPAD_* environment overrides. Each problem names the file, the line and
key, and what would be valid. Exit status 1 when it is not valid.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := g.configPath
			if len(args) == 1 {
				path = args[0]
			}
			cfg, err := config.Load(path)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return exitError(1)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (pad %s, crypt %s, vmm %s)\n", cfg.Source, cfg.Pad.Path, cfg.Plugins.Crypt, cfg.Plugins.VMM)
			return nil
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "default",
		Short: "Print the built-in default config",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := os.Stdout.Write(config.DefaultHCL())
			return err
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "env",
		Short: "List the SOULPAD_* environment variables that override config keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, n := range config.EnvNames() {
				fmt.Fprintln(cmd.OutOrStdout(), n)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "SOULPAD_CONFIG (the config file, like --config)")
			return nil
		},
	})
	return c
}
