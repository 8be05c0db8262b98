package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/lifecycle"
)

func configArg(g *globals) string {
	if g.configPath == "" {
		return ""
	}
	return " --config " + g.configPath
}

func newRunCmd(g *globals) *cobra.Command {
	var cf credFlags
	var coldBoot, acceptPlugins, acceptBoot bool
	var storeVersion uint64
	var point string
	c := &cobra.Command{
		Use:   "run",
		Short: "Unlock the pad, resume the machine (or boot it), and suspend it at the end",
		Long: `Run the whole session: boot (plugins), detect (this host), unlock (the
vault), resume (the latest suspend point, or a cold boot with the reason),
run, suspend (a new sealed suspend point) and shutdown (lock the vault, stop
the plugins). Each stage is timed; the table is printed at the end and kept
in the pad's journal.

Ctrl-C, SIGTERM, or 'soulpad suspend' from another terminal asks for a
suspend — never a kill. If the guest powers off, the session ends without a
suspend point and the next run boots the disk.

--cold-boot boots the latest disk even if a suspend point exists (the point
is kept), e.g. after a point was refused on this host. --point ID resumes
an older suspend point with the disk it was taken with (see 'soulpad
points'), or boots a disk point; the disk's newer state is kept as a point
of its own first, so nothing is lost.

If the last session ended without suspending (soulpad, a plugin or QEMU
was killed, or the power went), the newest sealed point is resumed with
its own disk, the output says what work was lost, and the disk that
session left is kept as a disk point ('soulpad run --point ID' boots it).

One pad runs one session: the pad is locked from the start (before the
passphrase) to the end, and the lock goes with the process if it dies.

A passphrase typed at the prompt may be retyped twice when wrong.

The vault records the plugins carried on the pad each time it is locked;
if one changed while the pad was locked (someone who held it could have
replaced it to read the passphrase), the run stops right after unlock and
says which. Plugins that others could write are never started. On a
bootable pad (soulpad image), the vault also records the boot partitions
(boot code, partition table, GRUB, kernel, initramfs, the host OS), and
a run whose pad is on a disk where they changed stops after unlock, before
the machine resumes.

Exit status (every soulpad command): 0 suspended or powered off (or done);
1 an error; 2 the config, a flag or an argument is wrong; 3 the pad is in
use (here, or checked out on the store by another PC); 4 a plugin died and the session was stopped; 5 wrong passphrase; 6
the suspend point was refused (nothing was changed); 7 a plugin on the pad,
or a bootable pad's boot partitions, changed while the pad was locked; 8
the pad was unplugged while the machine ran (it was stopped as by a power
cut; the next run resumes the newest point); 130 interrupted (Ctrl-C during a command
other than run, where Ctrl-C suspends).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			if err := cf.check(cfg); err != nil {
				return err
			}
			return runSession(g, cfg, cmd.OutOrStdout(), lifecycle.Options{
				Credential: cf.credential(cfg, false), CredentialTries: cf.tries(cfg), ColdBoot: coldBoot, Point: point,
				AcceptPadPlugins: acceptPlugins, AcceptBootChange: acceptBoot, StoreVersion: storeVersion,
			})
		},
	}
	c.Flags().StringVar(&cf.passphraseFile, "passphrase-file", "", "read the passphrase from this file (first line)")
	c.Flags().StringVar(&cf.keyFile, "key-file", "", "use this file's bytes as the key (e.g. on a second USB key)")
	c.Flags().BoolVar(&coldBoot, "cold-boot", false, "boot the latest disk instead of resuming (the suspend point is kept)")
	c.Flags().StringVar(&point, "point", "", "resume this suspend point (ID or unique prefix, see 'soulpad points') with its own disk")
	c.Flags().Uint64Var(&storeVersion, "store-version", 0, "with a store: copy in this version instead of the newest (a rollback; see 'soulpad store versions')")
	c.Flags().BoolVar(&acceptPlugins, "accept-pad-plugins", false, "take the plugins now on the pad as good after you replaced them yourself (otherwise a change stops the run)")
	c.Flags().BoolVar(&acceptBoot, "accept-boot-change", false, "on a bootable pad: record its boot partitions as they are now, after you changed them yourself (otherwise a change stops the run)")
	c.MarkFlagsMutuallyExclusive("cold-boot", "point")
	_ = c.RegisterFlagCompletionFunc("point", completePoints(g))
	return c
}

// printTimings prints the stage table: nothing when no stage but the
// shutdown got anywhere (a pad in use, a missing pad: the error says it
// all). failed: the session's error, printed after the table, says why
// its stage failed, so the table does not say it again.
func printTimings(w io.Writer, r lifecycle.Result, failed bool) {
	done := false
	for _, t := range r.Timings {
		done = done || (t.Err == nil && t.Stage != lifecycle.StageShutdown)
	}
	if !done {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tTIME\tRESULT")
	var total time.Duration
	for _, t := range r.Timings {
		res := "ok"
		if t.Note != "" {
			res = t.Note
		}
		switch {
		case t.Err != nil && failed:
			res = "FAILED (see below)"
		case t.Err != nil:
			res = "FAILED: " + firstLine(t.Err.Error())
		}
		if t.Stage != lifecycle.StageRun {
			total += t.Duration // the time the user waited, not worked
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Stage, fmtDur(t.Duration), res)
	}
	fmt.Fprintf(tw, "total\t%s\t(all but run)\n", fmtDur(total))
	tw.Flush()
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.3f s", d.Seconds())
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

// runSession runs one session with the CLI's output, config and logs: a
// signal asks for a suspend (or skips the backup after it), and the
// result is printed.
func runSession(g *globals, cfg *config.Config, out io.Writer, opts lifecycle.Options) error {
	opts.Config, opts.Log, opts.Out, opts.Progress, opts.Control = cfg, g.logger(cfg), g.progressOut(out), g.shower(out), true
	sess := lifecycle.New(opts)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		for s := range sigs {
			switch {
			case sess.Stage() == lifecycle.StageBackup:
				if sess.RequestSuspend() {
					fmt.Fprintf(out, "\n%s: skipping the backup…\n", s)
				}
			case sess.RequestSuspend():
				fmt.Fprintf(out, "\n%s: suspending…\n", s)
			default:
				fmt.Fprintf(out, "\n%s: a suspend is already on its way; the machine is being saved, please wait\n", s)
			}
		}
	}()
	res, err := sess.Run(context.Background())
	printTimings(g.progressOut(out), res, err != nil)
	if err != nil {
		return err
	}
	switch res.Outcome {
	case lifecycle.OutcomeSuspended:
		if len(res.Pruned) > 0 {
			fmt.Fprintf(out, "\nremoved the oldest suspend point(s) %s (session.keep_points = %d)", strings.Join(res.Pruned, ", "), cfg.Session.KeepPoints)
		}
		fmt.Fprintf(out, "\nsuspended to point %s; the pad can be unplugged.\n", res.Point)
	case lifecycle.OutcomePoweredOff:
		fmt.Fprintln(out, "\nthe guest powered off; the next run boots the disk. The pad can be unplugged.")
	}
	return nil
}
