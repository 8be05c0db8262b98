package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/lifecycle"
	"github.com/soulpad/soulpad/core/pad"
)

func newPointsCmd(g *globals) *cobra.Command {
	var cf credFlags
	var asJSON bool
	openVault := func(cmd *cobra.Command, withVMM bool) (*config.Config, *lifecycle.OpenedVault, error) {
		cfg, err := g.load()
		if err != nil {
			return nil, nil, err
		}
		if err := cf.check(cfg); err != nil {
			return nil, nil, err
		}
		v, err := lifecycle.OpenVault(cmd.Context(), lifecycle.VaultOptions{Config: cfg, Log: g.logger(cfg), Out: cmd.ErrOrStderr(),
			Command: "points", Credential: cf.credential(cfg, false), CredentialTries: cf.tries(cfg), WithVMM: withVMM})
		return cfg, v, err
	}
	c := &cobra.Command{
		Use:   "points",
		Short: "List the pad's suspend points (unlocks the vault); rm and prune remove them",
		Long: `List the suspend points in the pad's vault, oldest first: their ID, when
they were taken, the point they came from (parent), the disk generation
they hold, their size, and the VMM, CPU model, accelerator and host they
were taken with. The vault is unlocked to read them (the passphrase is
asked as for 'soulpad run') and locked again; while a 'soulpad run' holds
the pad, they are listed from the pad's journal instead (as 'soulpad
status' does).

A point of kind "memory" resumes the running machine with the disk it was
taken with. A point of kind "disk" is a disk state alone, kept when a
session ended without suspending and an older point was resumed instead;
'soulpad run --point ID' boots it.

The point marked "next" is the one 'soulpad run' resumes; 'soulpad run
--point ID' resumes another. After each suspend the oldest points beyond
session.keep_points (default 3) are removed; disk points stay until you
remove them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return listPoints(g, cmd, asJSON, openVault)
		},
	}
	c.PersistentFlags().StringVar(&cf.passphraseFile, "passphrase-file", "", "read the passphrase from this file (first line)")
	c.PersistentFlags().StringVar(&cf.keyFile, "key-file", "", "use this file's bytes as the key (e.g. on a second USB key)")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	c.AddCommand(newPointsRmCmd(g, openVault), newPointsPruneCmd(openVault))
	return c
}

// pointsVault opens the pad's vault for a points command (with the VMM
// plugin when withVMM).
type pointsVault func(cmd *cobra.Command, withVMM bool) (*config.Config, *lifecycle.OpenedVault, error)

func newPointsRmCmd(g *globals, openVault pointsVault) *cobra.Command {
	rm := &cobra.Command{
		Use:   "rm ID...",
		Short: "Remove suspend points (and the disk state only they need)",
		Long: `Remove the named suspend points (IDs or unique prefixes, see 'soulpad
points'). The disk state that only they needed goes too; what a remaining
point or the latest disk needs always stays. The newest memory point can
only be removed with --force: without it the next run cold-boots.`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completePoints(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			force, _ := cmd.Flags().GetBool("force")
			_, v, err := openVault(cmd, true)
			if err != nil {
				return err
			}
			ids, err := removeNamed(cmd.Context(), v, args, force)
			err = errors.Join(err, v.Close())
			if len(ids) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", strings.Join(ids, ", "))
			}
			return err
		},
	}
	rm.Flags().Bool("force", false, "also remove the newest memory point")
	return rm
}

func newPointsPruneCmd(openVault pointsVault) *cobra.Command {
	var keep int
	var disks bool
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Remove the oldest suspend points beyond session.keep_points (or --keep N)",
		Long: `Keep the newest N memory points (session.keep_points, or --keep N) and
remove the older ones with the disk state only they needed. Disk points
(kept after a crash) are removed only with --disks.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, v, err := openVault(cmd, true)
			if err != nil {
				return err
			}
			n := cfg.Session.KeepPoints
			if cmd.Flags().Changed("keep") {
				n = keep
			}
			if n < 1 {
				return errors.Join(fmt.Errorf("--keep %d: at least the newest point is kept; use 'soulpad points rm --force' to remove it", n), v.Close())
			}
			ids, err := lifecycle.Prune(cmd.Context(), v.Journal(), v.Machine(), v.VMM, v.Spec(), n, disks)
			err = errors.Join(err, v.Close())
			if len(ids) == 0 && err == nil {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to prune")
			} else if len(ids) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", strings.Join(ids, ", "))
			}
			return err
		},
	}
	prune.Flags().IntVar(&keep, "keep", 0, "memory points to keep (default session.keep_points)")
	prune.Flags().BoolVar(&disks, "disks", false, "also remove every disk point")
	return prune
}

// removeNamed removes the points named by ids (or unique prefixes).
func removeNamed(ctx context.Context, v *lifecycle.OpenedVault, ids []string, force bool) ([]string, error) {
	pts, err := v.Machine().Points()
	if err != nil {
		return nil, err
	}
	latest, hasLatest, err := v.Machine().Latest()
	if err != nil {
		return nil, err
	}
	var doomed []pad.Point
	for _, id := range ids {
		p, err := pad.FindPoint(pts, id)
		if err != nil {
			return nil, err
		}
		if hasLatest && p.Manifest.ID == latest.Manifest.ID && !force {
			return nil, fmt.Errorf("point %s is the newest with memory: the next run resumes it. Nothing was removed; add --force to remove it anyway (the next run then resumes the one before, or cold-boots)", p.Manifest.ID)
		}
		doomed = append(doomed, p)
	}
	return lifecycle.RemovePoints(ctx, v.Journal(), v.Machine(), v.VMM, v.Spec(), doomed)
}

func printPoints(w io.Writer, infos []lifecycle.PointInfo) {
	if len(infos) == 0 {
		fmt.Fprintln(w, "no suspend points yet")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tTAKEN\tPARENT\tGEN\tSIZE\tVMM\tCPU\tACCEL\tHOST")
	var total int64
	unchecked := false
	for _, p := range infos {
		parent := p.Parent
		if parent == "" {
			parent = "-"
		}
		if len(p.Unchecked) > 0 {
			parent += " *"
			unchecked = true
		}
		id := p.ID
		if p.Latest {
			id += " (next)"
		}
		total += p.Bytes
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", id, p.Kind, p.Taken.Local().Format("2006-01-02 15:04:05"), parent,
			p.Generation, lifecycle.HumanBytes(p.Bytes), strings.TrimSpace(p.VMM.Name+" "+p.VMM.Version), p.CPUModel, p.Accelerator, p.Host)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d point(s), %s (disk files shared between points are counted in each)\n", len(infos), lifecycle.HumanBytes(total))
	if unchecked {
		fmt.Fprintln(w, "* sealed before the check of the memory it derives from had finished: its resume checks that memory too (`--json`: \"unchecked\")")
	}
}

// journalInfos lists the pad's sealed points from its journal, without
// the vault (newest last, the newest marked as the next to resume).
func journalInfos(g *globals) ([]lifecycle.PointInfo, error) {
	_, p, err := g.loadPad()
	if err != nil {
		return nil, err
	}
	es, err := journalPoints(p)
	if err != nil {
		return nil, err
	}
	out := make([]lifecycle.PointInfo, 0, len(es))
	for i, e := range es {
		str := func(k string) string { s, _ := e.Fields[k].(string); return s }
		bytes, _ := e.Fields["bytes"].(float64)
		kind := pad.KindMemory
		if str("kind") == pad.KindCheckpoint {
			kind = pad.KindCheckpoint
		}
		out = append(out, lifecycle.PointInfo{ID: str("point"), Kind: kind, Taken: e.Time, Session: e.Session, Bytes: int64(bytes),
			VMM: p.Meta.VMM, CPUModel: str("cpu_model"), Accelerator: str("accelerator"), Host: str("host"), Latest: i == len(es)-1})
	}
	return out, nil
}

// listPoints lists the points in the vault, or, while a run holds the
// pad (and its vault), as the journal has them.
func listPoints(g *globals, cmd *cobra.Command, asJSON bool, openVault pointsVault) error {
	_, v, err := openVault(cmd, false)
	var infos []lifecycle.PointInfo
	var le *pad.LockedError
	switch {
	case errors.As(err, &le) && le.Live && le.Holder.Command == "run":
		// The vault is the running session's: the points as its
		// journal has them, as status shows them.
		if infos, err = journalInfos(g); err != nil {
			return err
		}
		fmt.Fprintln(cmd.ErrOrStderr(), "a session is running this pad: its points as the pad's journal lists them (the vault stays with the session)")
	case err != nil:
		return err
	default:
		pts, err := v.Machine().Points()
		if err = errors.Join(err, v.Close()); err != nil {
			return err
		}
		infos = lifecycle.Infos(pts)
	}
	if asJSON {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(infos)
	}
	printPoints(termSafe(cmd.OutOrStdout()), infos)
	return nil
}
