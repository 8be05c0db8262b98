package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/control"
	"github.com/soulpad/soulpad/core/pad"
)

func newConsoleCmd(g *globals) *cobra.Command {
	var dump bool
	c := &cobra.Command{
		Use:   "console",
		Short: "Attach to the running machine's serial console",
		Long: `Show the serial console of the machine that 'soulpad run' is running for
the configured pad: everything it printed since it started or resumed, then
what it prints next. What you type goes to the console. Ctrl-] detaches
(the machine keeps running).

From a pipe, what comes through it is typed into the console, and a
second after the pipe ends the command detaches:
  printf 'root\n' | soulpad console

--dump prints what the console has printed so far and exits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, p, resp, err := runningMachine(cmd, g)
			if err != nil {
				return err
			}
			if resp.ConsoleLog == "" {
				return fmt.Errorf("the machine has no serial console (or is not running yet: stage %s)", resp.Stage)
			}
			out := cmd.OutOrStdout()
			if dump {
				b, err := os.ReadFile(resp.ConsoleLog)
				if err != nil {
					return fmt.Errorf("console: %w", err)
				}
				_, err = out.Write(b)
				return err
			}
			return follow(cmd.Context(), out, resp, p.Meta.ID)
		},
	}
	c.Flags().BoolVar(&dump, "dump", false, "print what the console printed so far and exit")
	return c
}

// runningMachine asks the session running the configured pad where its
// machine's console and screen are.
func runningMachine(cmd *cobra.Command, g *globals) (*config.Config, *pad.Pad, control.Response, error) {
	cfg, p, err := g.loadPad()
	if err != nil {
		return nil, nil, control.Response{}, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
	defer cancel()
	resp, err := control.Send(ctx, p.Meta.ID, control.Request{Command: "console"})
	if err != nil {
		return nil, nil, control.Response{}, fmt.Errorf("pad %s: %w", p.Dir, err)
	}
	return cfg, p, resp, nil
}

// follow prints the console log as it grows and sends stdin to the
// console socket, until Ctrl-], or the machine stops.
func follow(ctx context.Context, out io.Writer, resp control.Response, padID string) error {
	f, err := os.Open(resp.ConsoleLog)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	defer f.Close()
	stop := make(chan struct{})
	if resp.ConsoleSocket != "" {
		restore, err := typeInto(resp.ConsoleSocket, out, stop)
		if err != nil {
			return err
		}
		defer restore()
	}
	buf := make([]byte, 32<<10)
	idle := 0
	for {
		n, err := f.Read(buf)
		if n > 0 {
			idle = 0
			if _, werr := out.Write(buf[:n]); werr != nil {
				return werr
			}
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
		if idle++; idle%20 == 0 {
			// Still running? The log goes away with the machine.
			if _, err := os.Stat(resp.ConsoleLog); err != nil {
				return nil
			}
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := control.Send(cctx, padID, control.Request{Command: "status"})
			cancel()
			if err != nil {
				return nil
			}
		}
	}
}

// typeInto sends what comes in on stdin to the console's socket: from a
// terminal in raw mode until Ctrl-]; from a pipe until it ends, and a
// second later (the machine's answer shown) it closes stop. restore puts
// the terminal back.
func typeInto(socket string, out io.Writer, stop chan struct{}) (restore func(), err error) {
	in := int(os.Stdin.Fd())
	tty := term.IsTerminal(in)
	if fi, err := os.Stdin.Stat(); !tty && (err != nil || fi.Mode()&(os.ModeNamedPipe|os.ModeSocket) == 0) {
		return func() {}, nil // /dev/null or a file: nothing is typed
	}
	conn, err := net.Dial("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("console: the machine's console does not take input: %w", err)
	}
	restore = func() {}
	go io.Copy(io.Discard, conn) // its output is read from the log
	if tty {
		if st, err := term.MakeRaw(in); err == nil {
			restore = func() { term.Restore(in, st) }
		}
		fmt.Fprint(out, "[console attached; Ctrl-] detaches]\r\n")
	}
	go func() {
		defer conn.Close()
		buf := make([]byte, 256)
		for {
			n, err := os.Stdin.Read(buf)
			if i := bytes.IndexByte(buf[:n], 0x1d); tty && i >= 0 { // Ctrl-]
				close(stop)
				return
			}
			if n > 0 {
				if _, werr := conn.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				if !tty {
					time.Sleep(time.Second)
					close(stop)
				}
				return
			}
		}
	}()
	return restore, nil
}
