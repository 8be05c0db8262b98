package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/isr"
	"github.com/soulpad/soulpad/core/lifecycle"
	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/sdk/store"
)

func newStoreCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "store",
		Short: "The pad's versions on a remote store (Internet Suspend/Resume)",
		Long: `With plugins.store and store.name set, 'soulpad run' checks the pad out
of the store (a lease: one PC at a time), copies in the chunks of the newest
version that the local pad lacks (a PC with no pad starts from an empty
directory), and after the suspend copies out the chunks that changed and
the version's manifest, then checks the pad in. The store sees only the
locked pad's cipher text.

These commands do the same steps by hand, list versions, and clean up.`,
	}
	c.AddCommand(newStoreVersionsCmd(g), newStorePullCmd(g), newStorePushCmd(g), newStoreBreakLeaseCmd(g), newStoreGCCmd(g))
	return c
}

// withStore loads the config and starts the store plugin.
func withStore(g *globals, fn func(ctx context.Context, cfg *config.Config, st store.Store) error) error {
	cfg, err := g.load()
	if err != nil {
		return err
	}
	ctx := context.Background()
	host, st, err := lifecycle.OpenStore(ctx, cfg, g.logger(cfg))
	if err != nil {
		return err
	}
	defer host.Close()
	return fn(ctx, cfg, st)
}

func newStoreVersionsCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "versions",
		Short: "List the pad's versions on the store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(g, func(ctx context.Context, cfg *config.Config, st store.Store) error {
				vs, err := st.Versions(ctx, store.VersionsRequest{Name: cfg.Store.Name})
				if err != nil {
					return err
				}
				state, _ := isr.LoadState(cfg.Pad.Path)
				type row struct {
					Version       uint64    `json:"version"`
					Created       time.Time `json:"created"`
					PadBytes      int64     `json:"pad_bytes"`
					ManifestBytes uint64    `json:"manifest_bytes"`
					Local         bool      `json:"local"`
				}
				rows := []row{}
				for _, v := range vs.Versions {
					r := row{Version: v.Seq, Created: v.Created, ManifestBytes: v.ManifestBytes, Local: state != nil && state.Seq == v.Seq}
					if mb, err := st.GetVersion(ctx, store.GetVersionRequest{Name: cfg.Store.Name, Seq: v.Seq}); err == nil {
						if m, err := isr.ParseManifest(mb.Manifest); err == nil {
							r.PadBytes, r.Created = m.Bytes(), m.Created
						}
					}
					rows = append(rows, r)
				}
				out := termSafe(cmd.OutOrStdout())
				if asJSON {
					enc := json.NewEncoder(out)
					enc.SetIndent("", "  ")
					return enc.Encode(map[string]any{"name": cfg.Store.Name, "versions": rows})
				}
				if len(rows) == 0 {
					fmt.Fprintf(out, "the store has no version of %s yet; the first 'soulpad run' (or 'soulpad store push') after 'soulpad init' makes one\n", cfg.Store.Name)
					return nil
				}
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "VERSION\tCREATED\tPAD SIZE\t")
				for _, r := range rows {
					mark := ""
					if r.Local {
						mark = "← this pad"
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", r.Version, r.Created.Local().Format("2006-01-02 15:04:05"), lifecycle.HumanBytes(r.PadBytes), mark)
				}
				return tw.Flush()
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// checkedOut loads the config and runs fn with the local pad locked for
// command and checked out of the store (lifecycle.CheckedOut).
func checkedOut(g *globals, cmd *cobra.Command, command string, fn func(ctx context.Context, cfg *config.Config, st store.Store) (keep bool, err error)) error {
	cfg, err := g.load()
	if err != nil {
		return err
	}
	return lifecycle.CheckedOut(cmd.Context(), lifecycle.VaultOptions{Config: cfg, Log: g.logger(cfg), Out: cmd.OutOrStdout(), Command: command},
		func(ctx context.Context, st store.Store) (bool, error) { return fn(ctx, cfg, st) })
}

func printer(cmd *cobra.Command) func(string, ...any) {
	return func(f string, a ...any) { fmt.Fprintf(cmd.OutOrStdout(), f+"\n", a...) }
}

// isrProgress shows a copy-in's or copy-out's progress.
func isrProgress(show lifecycle.ProgressFunc) isr.Progress {
	return func(phase string, p store.Progress) {
		if p.BytesTotal > 0 && show != nil {
			show(lifecycle.Progress{Step: phase, Done: p.BytesDone, Total: p.BytesTotal, Final: p.BytesDone >= p.BytesTotal})
		}
	}
}

func newStorePullCmd(g *globals) *cobra.Command {
	var version uint64
	var force bool
	c := &cobra.Command{
		Use:   "pull",
		Short: "Copy in the store's newest version (or --version N) to the local pad",
		Long: `Makes the local pad (pad.path; created if missing) the store's newest
version, or version N (a rollback: 'soulpad run' then resumes it), fetching
only the chunks the pad lacks. A pad with changes the store lacks is left
alone (copy them out with 'soulpad store push'), unless --force discards them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := printer(cmd)
			return checkedOut(g, cmd, "store", func(ctx context.Context, cfg *config.Config, st store.Store) (bool, error) {
				res, err := isr.Pull(ctx, st, cfg.Pad.Path, cfg.Store.Name, version, force, isrProgress(g.shower(cmd.OutOrStdout())))
				if err != nil {
					return false, err
				}
				if res.Ahead {
					out("the pad has changes the store lacks (since version %d); nothing was copied in: 'soulpad store push' copies them out", res.Seq)
					return false, nil
				}
				out("the pad is version %d of %s: copied in %s of %s", res.Seq, cfg.Store.Name, lifecycle.HumanBytes(res.Fetched), lifecycle.HumanBytes(res.PadBytes))
				return false, nil
			})
		},
	}
	c.Flags().Uint64Var(&version, "version", 0, "copy in this version instead of the newest")
	c.Flags().BoolVar(&force, "force", false, "discard local changes the store lacks")
	return c
}

func newStorePushCmd(g *globals) *cobra.Command {
	var cf credFlags
	c := &cobra.Command{
		Use:   "push",
		Short: "Copy the local pad out to the store as a new version",
		Long: `Sends the chunks of the locked pad that the store lacks, then the new
version's manifest (last, so a cut-short push never becomes a version; the
next push reuses what was sent). Refused when the store has a version newer
than the one the pad came from.

The version is sealed with a key that only the vault holds, so the vault
is opened for a moment first (the passphrase or key file, as for run):
a version the vault did not seal is refused by the next run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			if _, err := pad.Open(cfg.Pad.Path); err != nil {
				return err // before the pad is locked (and its directory made) or checked out
			}
			if err := cf.check(cfg); err != nil {
				return err
			}
			key, err := lifecycle.SealKey(cmd.Context(), lifecycle.VaultOptions{Config: cfg, Log: g.logger(cfg), Out: cmd.ErrOrStderr(),
				Command: "store", Credential: cf.credential(cfg, false), CredentialTries: cf.tries(cfg)})
			if err != nil {
				return err
			}
			defer clear(key)
			out := printer(cmd)
			return checkedOut(g, cmd, "store", func(ctx context.Context, cfg *config.Config, st store.Store) (bool, error) {
				res, err := isr.Push(ctx, st, cfg.Pad.Path, cfg.Store.Name, key, isrProgress(g.shower(cmd.OutOrStdout())))
				if err != nil {
					return !errors.Is(err, isr.ErrConflict), err
				}
				if res.Seq == 0 {
					out("the store has the pad already; nothing to copy out")
					return false, nil
				}
				out("copied out version %d of %s: sent %s of %s", res.Seq, cfg.Store.Name, lifecycle.HumanBytes(res.Uploaded), lifecycle.HumanBytes(res.PadBytes))
				return false, nil
			})
		},
	}
	c.Flags().StringVar(&cf.passphraseFile, "passphrase-file", "", "read the passphrase from this file (first line)")
	c.Flags().StringVar(&cf.keyFile, "key-file", "", "use this file's bytes as the key (e.g. on a second USB key)")
	return c
}

func newStoreBreakLeaseCmd(g *globals) *cobra.Command {
	var yes bool
	c := &cobra.Command{
		Use:   "break-lease",
		Short: "Take over the store's lease from a PC that is gone",
		Long: `A PC that checked the pad out and never checked it in (it crashed, or lost
the network) keeps the lease, and every other PC is refused. Once you are
sure it is gone, break-lease gives the lease to this pad. Whatever that PC
did after its last copy-out is lost to the store.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(g, func(ctx context.Context, cfg *config.Config, st store.Store) error {
				out := termSafe(cmd.OutOrStdout())
				if !yes {
					fmt.Fprintf(out, "Is the PC holding %s's lease gone for good? Type yes to take the lease over: ", cfg.Store.Name)
					line, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
					if strings.TrimSpace(line) != "yes" {
						return errors.New("not confirmed; nothing was changed")
					}
				}
				if err := os.MkdirAll(cfg.Pad.Path, 0o700); err != nil {
					return err
				}
				host, _ := os.Hostname()
				res, err := isr.Checkout(ctx, st, cfg.Pad.Path, cfg.Store.Name, host, cfg.Store.LeaseTerm(), true)
				if err != nil {
					return err
				}
				if res.Replaced != nil {
					fmt.Fprintf(out, "the lease of %s, held by %s since %s, is broken\n", cfg.Store.Name, res.Replaced.Host, res.Replaced.Acquired.Local().Format(time.RFC3339))
				} else {
					fmt.Fprintf(out, "nobody else held the lease of %s\n", cfg.Store.Name)
				}
				if err := isr.Checkin(ctx, st, cfg.Pad.Path, cfg.Store.Name); err != nil {
					return err
				}
				fmt.Fprintf(out, "next: soulpad run%s\n", configArg(g))
				return nil
			})
		},
	}
	c.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation")
	return c
}

func newStoreGCCmd(g *globals) *cobra.Command {
	var keep int
	c := &cobra.Command{
		Use:   "gc",
		Short: "Remove old versions (--keep N) and the chunks no version uses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := printer(cmd)
			// Under the lease: no copy-out is half done meanwhile.
			return checkedOut(g, cmd, "store", func(ctx context.Context, cfg *config.Config, st store.Store) (bool, error) {
				if keep > 0 {
					vs, err := st.Versions(ctx, store.VersionsRequest{Name: cfg.Store.Name})
					if err != nil {
						return false, err
					}
					if n := len(vs.Versions) - keep; n > 0 {
						var old []uint64
						for _, v := range vs.Versions[:n] {
							old = append(old, v.Seq)
						}
						if _, err := st.Delete(ctx, store.DeleteRequest{Name: cfg.Store.Name, Versions: old}); err != nil {
							return false, err
						}
						out("removed %d old versions (%d to %d)", n, old[0], old[n-1])
					}
				}
				n, err := isr.GC(ctx, st, cfg.Store.Name)
				if err != nil {
					return false, err
				}
				out("removed %d chunks no version uses", n)
				return false, nil
			})
		},
	}
	c.Flags().IntVar(&keep, "keep", 0, "also remove all but the newest N versions")
	return c
}
