package main

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/soulpad/soulpad/core/pad"
)

func newBreakLockCmd(g *globals) *cobra.Command {
	var yes bool
	c := &cobra.Command{
		Use:   "break-lock",
		Short: "Take over a pad left locked by a session on another host that is gone",
		Long: `A pad is locked while a command works on it. If the process dies the
lock goes with it, and the next run on the same host takes over by itself.
A session on another host, though, cannot be seen from here: if the pad
was unplugged mid-session (or that host went down), the pad stays marked
as in use by it, and 'soulpad run' refuses it.

break-lock clears that mark once you are sure that session is gone. It
asks for confirmation (or takes --yes); a lock a live process on this
host holds is never broken. The next 'soulpad run' resumes the pad's last
sealed suspend point and keeps the disk that session left as a disk point.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, p, err := g.loadPad()
			if err != nil {
				return err
			}
			st, err := pad.PeekLock(p.Dir)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch {
			case st.Held:
				return &pad.LockedError{Pad: p.Dir, Holder: *st.Holder, Live: true}
			case st.Holder == nil:
				fmt.Fprintf(out, "pad %s is not locked; nothing to do\n", p.Dir)
				return nil
			}
			fmt.Fprintf(out, "pad %s is marked as in use by %s.\n", p.Dir, *st.Holder)
			if !yes {
				fmt.Fprint(out, "Is that session gone for good (the pad unplugged, that host off)? Type yes to take the pad over: ")
				line, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if strings.TrimSpace(line) != "yes" {
					return errors.New("not confirmed; nothing was changed")
				}
			}
			if _, err := pad.BreakLock(p.Dir); err != nil {
				return err
			}
			fmt.Fprintf(out, "the lock is cleared; next: soulpad run%s\n", configArg(g))
			return nil
		},
	}
	c.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation")
	return c
}
