package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulpad/soulpad/core/control"
)

func newSuspendCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "suspend",
		Short: "Ask the running 'soulpad run' of this pad to suspend",
		Long: `Tell the 'soulpad run' that is running the configured pad, over its local
control socket, to suspend the machine. It returns once the request is
delivered; the running session prints its progress and stage table.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, p, err := g.loadPad()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			resp, err := control.Send(ctx, p.Meta.ID, control.Request{Command: "suspend"})
			if err != nil {
				return fmt.Errorf("pad %s: %w", p.Dir, err)
			}
			if !resp.OK {
				return fmt.Errorf("the session refused: %s", resp.Message)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "suspend requested (session was in stage %s)\n", resp.Stage)
			return nil
		},
	}
}
