// Command soulpad carries a whole computer — an encrypted virtual machine,
// suspended mid-session — on a pad: walk up to any PC, unlock it, resume
// where you left off, suspend and walk away.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/lifecycle"
	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/internal/padimage"
	"github.com/soulpad/soulpad/internal/progress"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/secmem"
)

// version is set at build time.
var version = "0.1.0-dev"

type globals struct {
	configPath   string
	logLevel     string
	quiet        bool
	progressMode string
}

// shower shows the progress of long steps on out in the --progress mode
// (none with -q).
func (g *globals) shower(out io.Writer) lifecycle.ProgressFunc {
	if g.quiet || g.progressMode == progress.None {
		return func(lifecycle.Progress) {}
	}
	s, err := progress.New(out, g.progressMode)
	if err != nil {
		return nil
	}
	return s.Report
}

// progress is where a command's progress goes: out, or nowhere with -q.
func (g *globals) progressOut(out io.Writer) io.Writer {
	if g.quiet {
		return io.Discard
	}
	return out
}

func main() {
	// soulpad reads passphrases and key files: no core dump, no ptrace by
	// other users, and (as root) no page of it in swap.
	secmem.Harden()
	root := newRoot()
	if err := unknownBesideHelp(root, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "soulpad: %s\n", withUsage(err))
		os.Exit(exitConfig)
	}
	if err := root.Execute(); err != nil {
		var ex exitError
		if errors.As(err, &ex) {
			os.Exit(int(ex))
		}
		msg := withUsage(err)
		if errors.Is(err, pad.ErrNotAPad) && !configGiven(os.Args[1:]) {
			msg += "\n(no --config or SOULPAD_CONFIG was given, so the built-in config was used: 'soulpad config default' prints it)"
		}
		fmt.Fprintf(os.Stderr, "soulpad: %s\n", cleanText(msg))
		os.Exit(exitCode(err))
	}
}

// Exit statuses (documented in `soulpad run --help`).
const (
	exitFailed         = 1
	exitConfig         = 2 // the config, a flag or an argument is wrong
	exitPadInUse       = 3
	exitPluginDied     = 4
	exitWrongPass      = 5
	exitPointRefused   = 6
	exitPluginsChanged = 7 // or a bootable pad's boot partitions
	exitUnplugged      = 8
	exitInterrupted    = 130 // Ctrl-C or SIGTERM stopped the command (as shells count it)
)

// exitCode tells scripts what kind of failure ended the command.
func exitCode(err error) int {
	var cfgErr *config.Error
	var uErr usageError
	var noPoint *pad.NoPointError
	var imgErr *lifecycle.ImageError
	switch {
	case errors.Is(err, pad.ErrUnplugged):
		return exitUnplugged // whatever failed after it, failed for it
	case errors.As(err, &cfgErr) || errors.As(err, &uErr) || isUsage(err) || errors.As(err, &noPoint) || errors.As(err, &imgErr):
		return exitConfig
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.Is(err, pad.ErrPadLocked), errors.Is(err, sdk.ErrBusy):
		return exitPadInUse // here, or checked out on the store by another PC
	case errors.Is(err, sdk.ErrPluginExited):
		return exitPluginDied
	case errors.Is(err, sdk.ErrWrongPassphrase):
		return exitWrongPass
	case errors.Is(err, lifecycle.ErrRefusedPoint):
		return exitPointRefused
	case errors.Is(err, pad.ErrPluginsChanged), errors.Is(err, padimage.ErrBootChanged):
		return exitPluginsChanged
	}
	return exitFailed
}

// usageError is a wrong flag or argument found by a command itself
// (exit status 2, as cobra's own refusals).
type usageError struct{ error }

func usageErr(err error) error { return usageError{err} }

func (e usageError) Unwrap() error { return e.error }

// exitError exits with a status and no message (already printed).
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "soulpad",
		Short: "Carry your whole computer on a pad and resume it on any PC",
		Long: `SoulPad keeps a virtual machine — its disk, its suspended memory, its
settings — encrypted on a pad (a USB disk, a partition or a directory).
On any PC: unlock it, resume exactly where you left off, then suspend and
walk away with everything on the pad.

Typical use:
  soulpad init --config site.hcl     create a pad (vault + machine)
  soulpad run  --config site.hcl     unlock, resume, work; Ctrl-C suspends
  soulpad status --config site.hcl   the pad, its suspend points, timings

Without --config (or SOULPAD_CONFIG) the built-in default config is used
(see 'soulpad config default'); every key can be overridden by a SOULPAD_*
environment variable (see 'soulpad config env').`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if _, err := progress.New(io.Discard, g.progressMode); err != nil {
				return usageErr(fmt.Errorf("--%w", err))
			}
			switch g.logLevel {
			case "", "trace", "debug", "info", "warn", "error":
				return nil
			}
			return fmt.Errorf("--log-level %q: want one of trace, debug, info, warn, error", g.logLevel)
		},
	}
	root.PersistentFlags().StringVarP(&g.configPath, "config", "c", os.Getenv("SOULPAD_CONFIG"), "site config file (HCL); default: $SOULPAD_CONFIG, else the built-in config")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "", "log level on stderr: trace, debug, info, warn, error (default: log.level in the config)")
	root.PersistentFlags().BoolVarP(&g.quiet, "quiet", "q", false, "print results and errors only: no progress, no stage table, log level error")
	root.PersistentFlags().StringVar(&g.progressMode, "progress", progress.Auto, "how long steps show progress: auto (a bar on a terminal, a line every 2 s otherwise), bar, plain, json (one object per line), none")
	root.AddCommand(newInitCmd(g), newRunCmd(g), newSuspendCmd(g), newCheckpointCmd(g), newStatusCmd(g), newPluginsCmd(g), newJournalCmd(g), newConfigCmd(g), newConsoleCmd(g), newCredentialCmd(g), newBackupCmd(g), newBackupsCmd(g), newRestoreCmd(g), newPointsCmd(g), newBreakLockCmd(g), newStoreCmd(g), newImageCmd(g), newViewCmd(g), newBenchCmd(g), newMediaCmd(g), newDiskCmd(g))
	root.AddCommand(newManCmd(root))
	root.SetHelpCommand(newHelpCmd(root))
	return root
}

// load reads the config named by --config.
func (g *globals) load() (*config.Config, error) {
	return config.Load(g.configPath)
}

// logger logs to stderr at the configured level.
func (g *globals) logger(cfg *config.Config) hclog.Logger {
	level := g.logLevel
	if level == "" && g.quiet {
		level = "error"
	}
	if level == "" && cfg != nil {
		level = cfg.Log.Level
	}
	if level == "" {
		level = "info"
	}
	return hclog.New(&hclog.LoggerOptions{Name: "soulpad", Level: hclog.LevelFromString(level), Output: os.Stderr})
}

// isUsage says whether cobra refused the command line (a flag or an
// argument).
func isUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown flag", "unknown shorthand flag", "unknown command", "accepts ", "requires at least", "invalid argument", "flag needs an argument", "--log-level "} {
		if strings.HasPrefix(msg, p) || strings.Contains(msg, " "+p) {
			return true
		}
	}
	return false
}

// withUsage is err's message with the way out it carries, worded as
// soulpad's commands: the core's errors say what happened, the CLI what
// to type.
func withUsage(err error) string {
	text := errText(err)
	if strings.HasPrefix(text, "unknown command") || strings.HasPrefix(text, "unknown help topic") {
		return strings.TrimRight(text, "\n") + "\n'soulpad --help' lists the commands"
	}
	w, ok := lifecycle.WayOutOf(err)
	if !ok {
		return text
	}
	switch w.Kind {
	case lifecycle.WayOutOtherPoint:
		return text + ". `soulpad points` lists the points: `soulpad run --point ID` resumes an older one, `soulpad run --cold-boot` boots the latest disk"
	case lifecycle.WayOutSuspendFirst:
		return text + ": suspend it first (`soulpad suspend`)"
	case lifecycle.WayOutInit:
		return text + ": make one with `soulpad init`"
	}
	return text
}

// errText is err's message without the kind that classifies it for the
// exit status (": invalid argument", ": not found", ...) at its end, where
// the words before it say it already (a clause of four words or more):
// "…needs at least 20 characters (or use a key file): invalid argument"
// loses its tail, "machine soul: already exists" keeps it.
func errText(err error) string {
	text, t := err.Error(), err.Error()
	for cut := true; cut; {
		cut = false
		for _, kind := range []error{sdk.ErrInvalidArgument, sdk.ErrNotFound, sdk.ErrAlreadyExists, sdk.ErrInvalidConfig, sdk.ErrBusy} {
			if rest, ok := strings.CutSuffix(t, ": "+kind.Error()); ok && errors.Is(err, kind) {
				t, cut = rest, true
			}
		}
	}
	if len(strings.Fields(t[strings.LastIndex(t, ": ")+1:])) < 4 {
		return text
	}
	return t
}

// unknownBesideHelp refuses a help request for a command that does not
// exist ("soulpad --help frobnicate"), which cobra would answer with the
// root's help and exit status 0.
func unknownBesideHelp(root *cobra.Command, args []string) error {
	var rest []string
	help := false
	for _, a := range args {
		if a == "-h" || a == "--help" {
			help = true
			continue
		}
		rest = append(rest, a)
	}
	if !help {
		return nil
	}
	c, left, err := root.Find(rest)
	if err != nil {
		return err
	}
	if c == root || !c.Runnable() { // a group of commands: an argument names one
		for _, a := range left {
			if !strings.HasPrefix(a, "-") {
				return usageErr(fmt.Errorf("unknown command %q for %q", a, c.CommandPath()))
			}
		}
	}
	return nil
}

// newHelpCmd is `soulpad help [command]`: an unknown topic is a wrong
// argument (exit status 2), not a help page.
func newHelpCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		RunE: func(_ *cobra.Command, args []string) error {
			c, _, err := root.Find(args)
			if err != nil || (c == root && len(args) > 0) {
				return usageErr(fmt.Errorf("unknown help topic %q", strings.Join(args, " ")))
			}
			return c.Help()
		},
	}
}

// configGiven says whether the command line or the environment names a
// config file.
func configGiven(args []string) bool {
	if os.Getenv("SOULPAD_CONFIG") != "" {
		return true
	}
	for _, a := range args {
		if a == "--config" || a == "-c" || strings.HasPrefix(a, "--config=") || strings.HasPrefix(a, "-c=") {
			return true
		}
	}
	return false
}
