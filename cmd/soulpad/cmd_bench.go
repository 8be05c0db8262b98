package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulpad/soulpad/internal/bench"
)

// benchFlags are `soulpad bench`'s flags.
type benchFlags struct {
	quick                                           bool
	sizes, speeds, crypts, outDir, scratch, osImage string
	reps                                            int
}

// benchLong is `soulpad bench --help`.
const benchLong = `Measure what the SoulPad paper (MobiSys 2005) measured, on this PC, through
soulpad itself, and print our figures beside the published ones:

  Table 2     resume and suspend latency by guest memory and pad speed
              (USB 2.0: resume 116–141 s, suspend 10–30 s for 256 MB)
  Tables 3–4  where the time goes, stage by stage, from the pad's journal
  Table 5     what encryption costs (+10 s resume, +6 s suspend)

Each cell makes a pad on a loop device of its own (XFS with reflink, or
ext4), throttled to the pad speed (usb2 35 MiB/s, usb3 400 MiB/s, none)
with the kernel's block throttling (cgroup blkio, or io.max with cgroup
v2), and runs the configured machine with the configured plugins and the
crypt plugin of the cell: soulpad init; run (cold boot; the demo guest
fills half its RAM, soulpad.dirty_mib); suspend --wait (timed); unplug
and plug the pad (nothing cached); run (the resume, timed to "running"
and to the guest's next tick); suspend --wait again (what changed). The
bytes that reached the pad are counted at its loop device.

Each cell also measures its pad (48 MiB written and read back, direct,
as throttled) and sets each step beside what that pad needs for the
bytes the step moved: the second suspend ÷ (its writes ÷ the pad's write
speed), goal ≤ 1.5; the resume to the guest's tick, less the cold boot's
time to a running machine, ÷ (the bytes read before the tick ÷ the read
speed), goal ≤ 1.5; and all the resumed session read from the pad ÷ the
RAM the guest had touched, goal ≤ 1.1. The second table prints them.

The machine must boot a kernel directly (machine.kernel and initrd: the
demo guest, examples/guest/build.sh). Needs root (loop devices and
throttling). --quick (256 MiB, usb2 and none, the configured crypt
plugin, once) takes about two minutes here; the full run says how long
it will take first.

Writes results.csv (every run), results.json (runs, medians and the
paper's numbers) and latency.svg (a chart) to --out.

--os IMAGE measures a real operating system instead, and the paper's
third category, application response time. IMAGE is a disk (any format
'soulpad init --disk' takes) whose system shows a login prompt on the
serial console that lets root in without a password and prints
"soulpad-counter N" there as it runs: scripts/debian-image.sh builds
such a Debian 12 system. Each run imports it (soulpad init --disk),
boots it to the login prompt, logs in and types a workload that builds,
reads back and deletes a tree of 150 MB of files on the guest's disk
(this PC's page cache dropped first), then suspends, resumes and
suspends again; then boots the same image from this PC's disk, outside
any vault, with QEMU alone (same machine type and CPU) and runs the same
workload. The goal for the workload: at most 1.1× the time outside the
vault with crypt-plain, 1.3× with crypt-luks. Sizes default to 1G,2G and
the pad to none; writes realos.json. A run takes about 4 minutes here.`

func newBenchCmd(g *globals) *cobra.Command {
	var fl benchFlags
	c := &cobra.Command{
		Use:   "bench",
		Short: "Measure suspend and resume here, beside the SoulPad paper's tables",
		Long:  benchLong,
		Example: `  soulpad bench --quick --config site.hcl
  soulpad bench --os .cache/debian/debian.raw --crypts crypt-plain,crypt-luks
  soulpad bench --sizes 256M,1G --speeds usb2,none --crypts crypt-plain,crypt-luks --reps 3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			plan, err := benchPlan(cmd, g, &fl)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(fl.outDir, 0o755); err != nil {
				return err
			}
			for _, s := range bench.SweepStale(plan.Dir) {
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s, left by a bench that was stopped\n", s)
			}
			if fl.osImage != "" {
				return runOSBench(cmd, bench.OSPlan{Plan: plan, Image: fl.osImage}, fl.outDir)
			}
			return runGuestBench(cmd, plan, fl)
		},
	}
	c.Flags().BoolVar(&fl.quick, "quick", false, "256 MiB, usb2 and none, the configured crypt plugin, once (flags given beside it win): about two minutes; with --os 1 GiB on an unthrottled pad")
	c.Flags().StringVar(&fl.sizes, "sizes", "256M,512M,1G,2G", "guest memory sizes")
	c.Flags().StringVar(&fl.speeds, "speeds", "usb2,usb3,none", "pad speeds: usb2 (35 MiB/s), usb3 (400 MiB/s), none")
	c.Flags().StringVar(&fl.crypts, "crypts", "", "crypt plugins (default: the configured one), e.g. crypt-plain,crypt-gocryptfs,crypt-luks")
	c.Flags().IntVar(&fl.reps, "reps", 3, "runs of each cell (the tables show medians)")
	c.Flags().StringVar(&fl.outDir, "out", "", "where results.csv, results.json and latency.svg go (default soulpad-bench-<time>)")
	c.Flags().StringVar(&fl.osImage, "os", "", "measure this real OS's disk image instead of the demo guest (see above)")
	c.Flags().StringVar(&fl.scratch, "dir", os.TempDir(), "scratch space for the pads' images (3× memory + 1 GiB each, sparse)")
	return c
}

// runOSBench is `soulpad bench --os`: the real OS's cells, their table and
// realos.json in outDir.
func runOSBench(cmd *cobra.Command, plan bench.OSPlan, outDir string) error {
	w := cmd.OutOrStdout()
	n := len(plan.SizesMiB) * len(plan.Speeds) * len(plan.Crypts) * plan.Reps
	fmt.Fprintf(w, "%d runs of %s (memory %v MiB; %d pad speeds; %s; %d each): about %s here\n",
		n, plan.Image, plan.SizesMiB, len(plan.Speeds), strings.Join(plan.Crypts, ","), plan.Reps, plan.OSEstimate().Round(time.Minute))
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	cells := plan.Run(ctx, func(i, n int, c bench.OSCell) {
		left := time.Duration(float64(time.Since(start)) / float64(i) * float64(n-i)).Round(time.Second)
		if c.Error != "" {
			fmt.Fprintf(w, "[%d/%d] %d MiB, %s pad, %s: FAILED: %s\n", i, n, c.MemoryMiB, c.Speed, c.Crypt, c.Error)
			return
		}
		fmt.Fprintf(w, "[%d/%d] %d MiB, %s pad, %s: boot to login %.1f s (by hand %.1f s); work %.1f s, %.1f CPU-s (by hand %.1f s, %.1f CPU-s: %.2f×); suspend %.2f s, resume to tick %.2f s; about %s left\n",
			i, n, c.MemoryMiB, c.Speed, c.Crypt, c.Boot, c.HandBoot, c.Work, c.WorkCPU, c.HandWork, c.HandWorkCPU, c.WorkRatio, c.Suspend1, c.ResumeTick, left)
	})
	med := bench.OSMedian(cells)
	fmt.Fprintln(w)
	bench.OSTable(w, plan.Image, med)
	if err := bench.WriteOSJSON(filepath.Join(outDir, "realos.json"), plan.Image, cells, med); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nwrote %s/realos.json in %s\n", outDir, time.Since(start).Round(time.Second))
	failed := 0
	for _, c := range cells {
		if c.Error != "" {
			failed++
		}
	}
	return benchOutcome(ctx, len(cells), failed, n, "realos.json")
}

// benchOutcome is the bench's error: interrupted, or some runs failed
// (their errors are in file).
func benchOutcome(ctx context.Context, ran, failed, n int, file string) error {
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted after %d of %d runs: %w", ran, n, ctx.Err())
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d runs failed (see above and %s)", failed, n, file)
	}
	return nil
}

// benchPlan checks the flags and the config and makes the plan: what
// --quick and --os mean for the flags not given.
func benchPlan(cmd *cobra.Command, g *globals, fl *benchFlags) (bench.Plan, error) {
	cfg, err := g.load()
	if err != nil {
		return bench.Plan{}, err
	}
	f := cmd.Flags()
	if fl.osImage != "" {
		if _, err := os.Stat(fl.osImage); err != nil {
			return bench.Plan{}, usageErr(fmt.Errorf("--os: %w", err))
		}
		if !f.Changed("sizes") {
			fl.sizes = "1G,2G"
		}
		if !f.Changed("speeds") {
			fl.speeds = "none"
		}
	} else if cfg.Machine.Kernel == "" {
		return bench.Plan{}, usageErr(errors.New("soulpad bench runs a machine that boots a kernel directly: set machine.kernel and machine.initrd (the demo guest: examples/guest/build.sh, then its .cache/guest/vmlinuz and initrd.img), or measure a disk image with --os"))
	}
	if os.Geteuid() != 0 {
		return bench.Plan{}, errors.New("soulpad bench needs root: its pads are loop devices it throttles")
	}
	if fl.quick { // what is not given on the command line
		if !f.Changed("sizes") {
			fl.sizes = "256M"
			if fl.osImage != "" {
				fl.sizes = "1G"
			}
		}
		if !f.Changed("speeds") && fl.osImage == "" {
			fl.speeds = "usb2,none"
		}
		if !f.Changed("reps") {
			fl.reps = 1
		}
	}
	if fl.crypts == "" {
		fl.crypts = cfg.Plugins.Crypt
	}
	plan := bench.Plan{Config: g.configPath, Cmdline: cfg.Machine.Cmdline, Reps: fl.reps, Dir: fl.scratch}
	if plan.Cmdline == "" {
		plan.Cmdline = "console=ttyS0 quiet panic=-1"
	}
	if plan.Soulpad, err = os.Executable(); err != nil {
		return bench.Plan{}, err
	}
	for _, s := range strings.Split(fl.sizes, ",") {
		mib, err := parseSizeMiB(s)
		if err != nil || mib < 64 {
			return bench.Plan{}, usageErr(fmt.Errorf("--sizes %q: %q is not a memory size of 64M or more", fl.sizes, s))
		}
		plan.SizesMiB = append(plan.SizesMiB, mib)
	}
	for _, s := range strings.Split(fl.speeds, ",") {
		sp, ok := bench.Speeds[strings.TrimSpace(s)]
		if !ok {
			return bench.Plan{}, usageErr(fmt.Errorf("--speeds: %q: want usb2, usb3 or none", s))
		}
		plan.Speeds = append(plan.Speeds, sp)
	}
	for _, c := range strings.Split(fl.crypts, ",") {
		plan.Crypts = append(plan.Crypts, strings.TrimSpace(c))
	}
	if fl.reps < 1 {
		return bench.Plan{}, usageErr(errors.New("--reps: at least 1"))
	}
	if fl.outDir == "" {
		fl.outDir = "soulpad-bench-" + time.Now().Format("20060102-150405")
	}
	return plan, nil
}

// runGuestBench is `soulpad bench` on the demo guest: its cells, the
// paper's tables, and the results' files in fl.outDir.
func runGuestBench(cmd *cobra.Command, plan bench.Plan, fl benchFlags) error {
	w, outDir := cmd.OutOrStdout(), fl.outDir
	n := len(plan.SizesMiB) * len(plan.Speeds) * len(plan.Crypts) * plan.Reps
	fmt.Fprintf(w, "%d runs (memory %s; pads %s; %s; %d each): about %s here\n", n, fl.sizes, fl.speeds, fl.crypts, plan.Reps, plan.Estimate().Round(time.Minute))
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	cells := plan.Run(ctx, func(i, n int, c bench.Cell) {
		left := time.Duration(float64(time.Since(start)) / float64(i) * float64(n-i)).Round(time.Second)
		if c.Error != "" {
			fmt.Fprintf(w, "[%d/%d] %d MiB, %s pad, %s: FAILED: %s\n", i, n, c.MemoryMiB, c.Speed, c.Crypt, c.Error)
			return
		}
		fmt.Fprintf(w, "[%d/%d] %d MiB, %s pad, %s: suspend %.2f s (%.2f CPU-s), resume %.2f s (tick %.2f s, %.2f CPU-s), 2nd suspend %.2f s (%.2f CPU-s); to the pad's limit: 2nd suspend %.2f×, tick %.2f×, reads %.2f× the RAM touched; about %s left\n",
			i, n, c.MemoryMiB, c.Speed, c.Crypt, c.Suspend1, c.Suspend1CPU, c.Resume, c.ResumeTick, c.ResumeTickCPU, c.Suspend2, c.Suspend2CPU, c.Suspend2Ratio, c.TickRatio, c.ReadsRatio, left)
	})
	med := bench.Median(cells)
	fmt.Fprintln(w)
	bench.Table(w, med)
	fmt.Fprintln(w)
	bench.GoalTable(w, med)
	errs := []error{
		bench.WriteCSV(filepath.Join(outDir, "results.csv"), cells),
		bench.WriteJSON(filepath.Join(outDir, "results.json"), cells, med),
	}
	if len(med) > 0 {
		errs = append(errs, bench.WriteChart(filepath.Join(outDir, "latency.svg"), med), bench.WriteChart(filepath.Join(outDir, "latency.png"), med))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nwrote %s/results.csv, results.json and latency.svg (and .png) in %s\n", outDir, time.Since(start).Round(time.Second))
	failed := 0
	for _, c := range cells {
		if c.Error != "" {
			failed++
		}
	}
	return benchOutcome(ctx, len(cells), failed, n, "results.csv")
}
