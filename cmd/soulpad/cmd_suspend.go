package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulpad/soulpad/core/control"
	"github.com/soulpad/soulpad/core/pad"
)

func newSuspendCmd(g *globals) *cobra.Command {
	var wait bool
	c := &cobra.Command{
		Use:   "suspend",
		Short: "Ask the running 'soulpad run' of this pad to suspend",
		Long: `Tell the 'soulpad run' that is running the configured pad, over its local
control socket, to suspend the machine. It returns once the request is
delivered; the running session prints its progress and stage table.

--wait returns only when the pad can be unplugged: the session has sealed
its suspend point, locked the vault, copied the pad out to the store if it
has one, and ended. It then prints the new point, or why the session
ended without one (exit status 1). Ctrl-C stops waiting; the suspend goes
on.`,
		Example: `  soulpad suspend --wait && echo "unplug the pad now"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, p, err := g.loadPad()
			if err != nil {
				return err
			}
			lock, _ := pad.PeekLock(p.Dir)
			asked := time.Now()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			resp, err := control.Send(ctx, p.Meta.ID, control.Request{Command: "suspend"})
			if err != nil {
				return fmt.Errorf("pad %s: %w", p.Dir, err)
			}
			if !resp.OK {
				return fmt.Errorf("the session refused: %s", resp.Message)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "suspend requested (session was in stage %s)\n", resp.Stage)
			if !wait {
				return nil
			}
			fmt.Fprintln(out, "waiting for the session to end…")
			pid := 0
			if lock.Held && lock.Holder != nil && !lock.Foreign {
				pid = lock.Holder.PID
			}
			for {
				st, err := pad.PeekLock(p.Dir)
				if err != nil {
					return err
				}
				gone := pid == 0 || procGone(pid)
				if !st.Held && gone {
					break
				}
				select {
				case <-cmd.Context().Done():
					return fmt.Errorf("stopped waiting (the suspend goes on): %w", cmd.Context().Err())
				case <-time.After(20 * time.Millisecond): // the moment it can be unplugged
				}
			}
			point, why := sessionOutcome(p, asked)
			if point == "" {
				return fmt.Errorf("the session ended without a new suspend point: %s (see 'soulpad journal')", why)
			}
			fmt.Fprintf(out, "suspended to point %s; the pad can be unplugged.\n", point)
			return nil
		},
	}
	c.Flags().BoolVar(&wait, "wait", false, "return when the pad can be unplugged (the session has ended)")
	return c
}

// procGone says whether process pid has ended (a zombie not yet reaped by
// its parent has).
func procGone(pid int) bool {
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state …: the state follows the last ')'.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] == 'Z' || b[i+2] == 'X'
	}
	return false
}

// sessionOutcome reads the journal for a point sealed since t, or the
// failure that ended the last session.
func sessionOutcome(p *pad.Pad, t time.Time) (point, why string) {
	all, err := pad.ReadJournal(p.JournalDir())
	if err != nil {
		return "", err.Error()
	}
	for _, e := range all {
		if e.Time.Before(t.Add(-time.Second)) {
			continue
		}
		if e.Event == "info" && e.Message == "suspend point sealed" && e.Fields != nil && e.Fields["point"] != nil {
			point = fmt.Sprint(e.Fields["point"])
		}
		if e.Event == "fail" && why == "" {
			why = e.Stage + ": " + e.Error
		}
	}
	if why == "" {
		why = "no stage failed; the machine may have powered off"
	}
	return point, why
}
