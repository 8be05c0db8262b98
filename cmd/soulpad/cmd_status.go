package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/control"
	"github.com/soulpad/soulpad/core/lifecycle"
	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/sdk/detect"
)

func openPad(cfg *config.Config) (*pad.Pad, error) {
	return pad.Open(cfg.Pad.Path)
}

// loadPad loads the config named by --config and opens its pad.
func (g *globals) loadPad() (*config.Config, *pad.Pad, error) {
	cfg, err := g.load()
	if err != nil {
		return nil, nil, err
	}
	p, err := openPad(cfg)
	return cfg, p, err
}

// StatusReport is `soulpad status --json`.
type StatusReport struct {
	Pad          pad.Meta `json:"pad"`
	Dir          string   `json:"dir"`
	Running      bool     `json:"running"`
	RunningStage string   `json:"running_stage,omitempty"`
	// Guest is what the VMM said of the guest's agent while it runs.
	Guest string `json:"guest,omitempty"`
	// SafeSince is when the state a crash would resume now was taken
	// (the last checkpoint, or the resume), while a session runs;
	// Checkpoints says when the next comes, or why none do.
	SafeSince   *time.Time `json:"safe_since,omitempty"`
	Checkpoints string     `json:"checkpoints,omitempty"`
	// Memory says how much of the running machine's memory a suspend
	// now would find hashed already (mapped memory only).
	Memory string `json:"memory,omitempty"`
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
	Kind        string    `json:"kind,omitempty"` // "checkpoint", or a suspend point
	Time        time.Time `json:"taken"`
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
			cfg, p, err := g.loadPad()
			if err != nil {
				return err
			}
			rep, err := statusReport(cmd.Context(), g, cfg, p)
			if err != nil {
				return err
			}
			out := termSafe(cmd.OutOrStdout())
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return printStatus(out, p, rep)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// statusReport gathers what status shows: the running session (asked
// over its control socket), the lock, the journal's points and last
// session, and this host.
func statusReport(ctx context.Context, g *globals, cfg *config.Config, p *pad.Pad) (StatusReport, error) {
	rep := StatusReport{Pad: p.Meta, Dir: p.Dir, Points: []PointInfo{}, LastSession: []StageTiming{}} // [] not null, for scripts
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if r, err := control.Send(ctx, p.Meta.ID, control.Request{Command: "status"}); err == nil && r.OK {
		rep.Running, rep.RunningStage, rep.Guest, rep.Checkpoints, rep.Memory = true, r.Stage, r.Guest, r.Checkpoints, r.Memory
		if !r.SafeSince.IsZero() {
			rep.SafeSince = &r.SafeSince
		}
	}
	var err error
	if rep.Lock, err = pad.PeekLock(p.Dir); err != nil {
		return rep, err
	}
	sealed, err := journalPoints(p)
	if err != nil {
		return rep, err
	}
	for _, e := range sealed {
		pi := PointInfo{ID: fmt.Sprint(e.Fields["point"]), Kind: str(e.Fields["kind"]), Time: e.Time, CPUModel: str(e.Fields["cpu_model"]), Accelerator: str(e.Fields["accelerator"]), Host: str(e.Fields["host"]), HostSummary: str(e.Fields["host_summary"])}
		if n, ok := e.Fields["bytes"].(float64); ok {
			pi.Bytes = int64(n)
		}
		rep.Points = append(rep.Points, pi)
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
	return rep, nil
}

// printStatus prints the report as text.
func printStatus(out io.Writer, p *pad.Pad, rep StatusReport) error {
	fmt.Fprintf(out, "pad        %s\nid         %s (format %d, created %s)\nmachine    %s\nplugins    crypt %s, vmm %s\n",
		p.Dir, p.Meta.ID, p.Meta.Format, p.Meta.Created.Local().Format(time.DateTime), p.Meta.Machine, p.Meta.Crypt.Name, p.Meta.VMM.Name)
	fmt.Fprintf(out, "this host  %s\n", rep.ThisHostSummary)
	if rep.Running {
		fmt.Fprintf(out, "running    yes, stage %s\n", rep.RunningStage)
		if rep.Guest != "" {
			fmt.Fprintf(out, "guest      %s\n", rep.Guest)
		}
		if rep.SafeSince != nil {
			fmt.Fprintf(out, "crash now  loses %s of work (since %s); %s\n", time.Since(*rep.SafeSince).Round(time.Second),
				rep.SafeSince.Local().Format("15:04:05"), cleanText(rep.Checkpoints))
		}
		if rep.Memory != "" {
			fmt.Fprintf(out, "memory     %s\n", cleanText(rep.Memory))
		}
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
		printStatusPoints(out, rep.Points)
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

// printStatusPoints prints one line a point; the newest is the one the
// next run resumes (as `soulpad points` marks it).
func printStatusPoints(out io.Writer, pts []PointInfo) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tTAKEN\tSIZE\tCPU MODEL\tACCEL\tTAKEN ON\t")
	for i, pi := range pts {
		mark, on := "", pi.HostSummary
		if pi.Kind == pad.KindCheckpoint {
			mark = "checkpoint "
		}
		if i == len(pts)-1 {
			mark += "← next"
		}
		if on == "" {
			on = pi.Host
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", pi.ID, pi.Time.Local().Format(time.DateTime), human(pi.Bytes), pi.CPUModel, pi.Accelerator, on, mark)
	}
	tw.Flush()
}
