package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/soulpad/soulpad/core/config"
)

func newConfigCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Check a config file, or print the built-in default config",
	}
	var noPlugins bool
	check := &cobra.Command{
		Use:   "check [FILE]",
		Short: "Validate a site config (FILE, else --config, else the built-in one)",
		Long: `Validate a site config: HCL syntax, unknown keys, values out of range, and
SOULPAD_* environment overrides (SOULPAD_PLUGIN_<PLUGIN>_<KEY> for a key
of a plugin's block). Then each plugin the config names (plugins.crypt,
plugins.vmm, … and every plugin "…" block) is started and handed its
block, as 'soulpad run' would: a plugin that is not installed, or that
refuses its block (an unknown key, a value out of range), is a problem
too, with "did you mean" where a name is close. Each problem names the
file and line (or the environment variable), the key, and what would be
valid. Exit status 2 when it is not valid.

--no-plugins checks the file alone.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := g.configPath
			if len(args) == 1 {
				path = args[0]
			}
			cfg, err := config.Load(path)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return exitError(exitConfig)
			}
			if errs := cfg.CheckFiles(true); len(errs) > 0 {
				for _, e := range errs {
					fmt.Fprintln(cmd.ErrOrStderr(), e)
				}
				return exitError(exitConfig)
			}
			if !noPlugins {
				if errs := checkPlugins(cmd.Context(), cfg); len(errs) > 0 {
					for _, e := range errs {
						fmt.Fprintln(cmd.ErrOrStderr(), e)
					}
					return exitError(exitConfig)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (pad %s, crypt %s, vmm %s)\n", cfg.Source, cfg.Pad.Path, cfg.Plugins.Crypt, cfg.Plugins.VMM)
			return nil
		},
	}
	check.Flags().BoolVar(&noPlugins, "no-plugins", false, "check the file only, without starting the plugins")
	c.AddCommand(check)
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
