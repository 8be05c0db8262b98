package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulpad/soulpad/core/control"
)

func newCheckpointCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "checkpoint",
		Short: "Ask the running 'soulpad run' of this pad to take a checkpoint now",
		Long: `Tell the 'soulpad run' that is running the configured pad, over its local
control socket, to take a checkpoint now: a point taken while the machine
goes on running (paused only for its device state and the clone of its
RAM file), which a crash, a kill or an unplugged pad resumes. Sessions
take them on their own every session.checkpoint_minutes (default 10);
this one does not move the next. It returns once the request is
delivered; the session prints the checkpoint's line. Refused where the
machine's memory is streamed (crypt-gocryptfs): 'soulpad status' says why.`,
		Example: `  soulpad checkpoint   # before something risky in the machine`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, p, err := g.loadPad()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			resp, err := control.Send(ctx, p.Meta.ID, control.Request{Command: "checkpoint"})
			if err != nil {
				return fmt.Errorf("pad %s: %w", p.Dir, err)
			}
			if !resp.OK {
				return fmt.Errorf("the session refused: %s", cleanText(resp.Message))
			}
			fmt.Fprintln(cmd.OutOrStdout(), "checkpoint asked for; the session prints it when sealed")
			return nil
		},
	}
}
