package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulpad/soulpad/internal/fbview"
	"github.com/soulpad/soulpad/internal/rfb"
	"github.com/soulpad/soulpad/sdk/atomicfile"
)

// viewers are the VNC viewers `soulpad view` starts, in order of
// preference, each with how it takes a unix socket.
var viewers = []struct {
	bin  string
	args func(sock string) []string
	pkg  string
}{
	{"remote-viewer", func(s string) []string { return []string{"vnc+unix://" + s} }, "virt-viewer"},
	{"vncviewer", func(s string) []string { return []string{s} }, "tigervnc-viewer"},
}

func newViewCmd(g *globals) *cobra.Command {
	var shot, fbPath, tty string
	var noKeys bool
	c := &cobra.Command{
		Use:   "view",
		Short: "Show the running machine's screen (or save a screenshot)",
		Long: `Show the screen of the machine that 'soulpad run' is running for the
configured pad, in a VNC viewer: remote-viewer (Debian: virt-viewer) or
TigerVNC's vncviewer, whichever is installed. The screen is served on a
unix socket in a directory only you can enter, without a port or a
password that others could reach; the machine keeps running when the
viewer closes.

--screenshot FILE saves the screen as a PNG instead (- for stdout), with
no viewer.

--fb /dev/fb0 shows the screen full-screen on a Linux framebuffer (a PC's
screen without a desktop: the bootable pad's host OS does this) and sends
the PC's keyboards and mice (touchpads, touch screens) to the machine: keys
by scan code, the pointer to its USB tablet. They are grabbed: the console
gets none of it until the machine stops or the view ends. It ends when the
machine stops.

The machine has a screen when machine.display is "vnc" or "auto" ("auto"
also opens a window of its own when the host has a desktop).`,
		Example: `  soulpad view
  soulpad view --screenshot screen.png`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, resp, err := runningMachine(cmd, g)
			if err != nil {
				return err
			}
			if resp.Screen == "" {
				if resp.ConsoleLog == "" {
					return fmt.Errorf("the machine is not running yet (stage %s)", resp.Stage)
				}
				return fmt.Errorf("the machine has no screen (machine.display is %q; set it to \"vnc\" or \"auto\", and it takes effect at the next run)", cfg.Machine.Display)
			}
			if shot != "" {
				return screenshot(resp.Screen, shot, cmd)
			}
			if fbPath != "" {
				return framebuffer(cmd.Context(), resp.Screen, fbPath, tty, !noKeys)
			}
			for _, v := range viewers {
				if path, err := exec.LookPath(v.bin); err == nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "soulpad: the screen in %s (closing it leaves the machine running)\n", v.bin)
					vc := exec.CommandContext(cmd.Context(), path, v.args(resp.Screen)...)
					vc.Stdout, vc.Stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
					return vc.Run()
				}
			}
			return fmt.Errorf("no VNC viewer found: install virt-viewer (remote-viewer) or tigervnc-viewer (vncviewer), or save a screenshot with --screenshot FILE; the screen is the VNC unix socket %s", resp.Screen)
		},
	}
	c.Flags().StringVar(&shot, "screenshot", "", "save the screen as a PNG to FILE (- for stdout) instead of showing it")
	c.Flags().StringVar(&fbPath, "fb", "", "show the screen full-screen on this framebuffer device (e.g. /dev/fb0)")
	c.Flags().StringVar(&tty, "tty", "/dev/tty0", "with --fb: the console to switch to graphics while the screen is shown")
	c.Flags().BoolVar(&noKeys, "no-keyboard", false, "with --fb: leave the keyboards and mice to the console")
	return c
}

func framebuffer(ctx context.Context, sock, fbPath, tty string, keys bool) error {
	fb, err := fbview.OpenFramebuffer(fbPath)
	if err != nil {
		return err
	}
	defer fb.Close()
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return fmt.Errorf("the screen: %w", err)
	}
	defer conn.Close()
	cl, err := rfb.Dial(conn)
	if err != nil {
		return fmt.Errorf("the screen: %w", err)
	}
	if restore, err := fbview.Console(tty); err == nil {
		defer restore()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); conn.Close() }()
	if keys {
		go fbview.Inputs(ctx, cl)
	}
	if err := fbview.Show(ctx, cl, fb, 30*time.Millisecond); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("the screen: %w", err)
	}
	return nil
}

func screenshot(sock, to string, cmd *cobra.Command) error {
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return fmt.Errorf("the screen: %w", err)
	}
	defer conn.Close()
	img, err := rfb.Capture(conn, 30*time.Second)
	if err != nil {
		return fmt.Errorf("the screen: %w", err)
	}
	if to == "-" {
		return png.Encode(cmd.OutOrStdout(), img)
	}
	if fi, err := os.Stat(to); err == nil && fi.IsDir() {
		return usageErr(fmt.Errorf("--screenshot %s is a directory: name the PNG file", to))
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(to, buf.Bytes(), 0o600); err != nil {
		return err
	}
	abs, _ := filepath.Abs(to)
	fmt.Fprintf(cmd.OutOrStdout(), "saved the screen (%dx%d) to %s\n", img.Bounds().Dx(), img.Bounds().Dy(), abs)
	return nil
}
