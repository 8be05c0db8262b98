package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/soulpad/soulpad/core/lifecycle"
	"github.com/soulpad/soulpad/sdk/crypt"
)

func newInitCmd(g *globals) *cobra.Command {
	var cf credFlags
	var noCarry bool
	var disk, diskFormat, iso string
	c := &cobra.Command{
		Use:   "init",
		Short: "Create a pad: its vault (through the crypt plugin) and the machine inside",
		Long: `Create a new pad at pad.path from the config: pad.json, an encrypted vault
made by the configured crypt plugin, and the machine spec (machine { … })
inside the vault. The configured plugins are copied onto the pad's plugins/
so a host without them can still run it.

The passphrase is asked on the terminal (twice, without echo), or read from
--passphrase-file; --key-file uses the bytes of a file (e.g. on a second
USB key) instead. Secrets are never taken from the command line.

Bring your own computer onto the pad with --disk: a disk image it already
has (qcow2, raw, VMware's VMDK, VirtualBox's VDI, Hyper-V's VHDX or VHD,
or the disk inside an OVA) is checked with qemu-img and converted straight
into the vault (never unpacked on this PC's disk; zeros are not written).
An image that is not a disk, is truncated, leans on a backing file or does
not fit the vault is refused, saying which. Without --disk the machine gets
an empty disk of machine.disk_size_mib.

Install it from the vendor's installer with --iso: the ISO goes into the
vault and into the machine's CD-ROM drive beside the empty disk, and the
machine boots from it until 'soulpad media eject'.

The directory must be new or empty; on any failure nothing is left behind.`,
		Example: `  soulpad init
  soulpad init --disk ~/VirtualBox\ VMs/debian/debian.vdi
  soulpad init --disk exported.ova --passphrase-file /media/key/pass
  soulpad init --iso debian-12.8.0-amd64-netinst.iso`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			// Once the passphrase is in, Ctrl-C stops the creation and
			// removes what was made instead of killing soulpad half-way
			// (before, it leaves the prompt as usual).
			ctx, arm, stop := interruptible(cmd.Context(), cmd.ErrOrStderr())
			defer stop()
			if err := cf.check(cfg); err != nil {
				return err
			}
			cred := cf.credential(cfg, true)
			p, err := lifecycle.Init(ctx, lifecycle.InitOptions{
				Config: cfg, Log: g.logger(cfg), Out: g.progressOut(cmd.OutOrStdout()), Progress: g.shower(cmd.OutOrStdout()),
				Credential: func(ctx context.Context) (crypt.Credential, error) {
					c, err := cred(ctx)
					arm()
					return c, err
				},
				CarryPlugins: !noCarry,
				Disk:         disk, DiskFormat: diskFormat, ISO: iso,
			})
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("interrupted: the pad was not created and nothing of it is left (%w)", err)
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pad %s created at %s (machine %q)\nnext: soulpad run%s\n", p.Meta.ID, p.Dir, p.Meta.Machine, configArg(g))
			return nil
		},
	}
	c.Flags().StringVar(&cf.passphraseFile, "passphrase-file", "", "read the passphrase from this file (first line)")
	c.Flags().StringVar(&cf.keyFile, "key-file", "", "use this file's bytes as the key (e.g. on a second USB key)")
	c.Flags().BoolVar(&noCarry, "no-carry-plugins", false, "do not copy the plugins onto the pad")
	c.Flags().StringVar(&disk, "disk", "", "import this disk image (qcow2, raw, vmdk, vdi, vhdx, vhd, ova) as the machine's disk")
	c.Flags().StringVar(&iso, "iso", "", "put this installer ISO in the machine's CD-ROM drive, beside an empty disk")
	c.Flags().StringVar(&diskFormat, "disk-format", "", "the --disk image's format, when qemu-img cannot tell (raw without a partition table)")
	return c
}

// interruptible returns a context that Ctrl-C or SIGTERM cancels once arm
// has been called, saying so on w; stop lets go of the signals.
func interruptible(parent context.Context, w io.Writer) (ctx context.Context, arm, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 1)
	var once sync.Once
	arm = func() {
		once.Do(func() {
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
			go func() {
				select {
				case s := <-sigs:
					fmt.Fprintf(w, "\n%s: stopping and cleaning up…\n", s)
					cancel()
				case <-ctx.Done():
				}
			}()
		})
	}
	return ctx, arm, func() { signal.Stop(sigs); cancel() }
}
