package lifecycle

import (
	"context"
	"fmt"
	"time"

	"github.com/soulpad/soulpad/core/pad"
)

// unplugPoll is how often the pad's device is looked at while the
// machine runs (a sysfs read: nothing reaches the pad).
const unplugPoll = 250 * time.Millisecond

// watchUnplug starts watching the pad's block device for the rest of
// the session (until ctx ends). Nothing is watched when the pad is not
// on a block device.
func (s *Session) watchUnplug(ctx context.Context) {
	w, ok := pad.WatchDevice(s.pad.Dir)
	if !ok || ctx == nil {
		return
	}
	gone := make(chan struct{})
	s.padDevice, s.unplugged = w, gone
	go func() {
		t := time.NewTicker(unplugPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if w.Gone() {
					close(gone)
					return
				}
			}
		}
	}()
}

// padGone reports whether the pad's device is gone now.
func (s *Session) padGone() bool {
	return s.unplugged != nil && s.padDevice.Gone()
}

// cancelOnUnplug is ctx, cancelled too when the pad's device goes.
func (s *Session) cancelOnUnplug(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if s.unplugged != nil {
		go func() {
			select {
			case <-s.unplugged:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	return ctx, cancel
}

// padUnplugged ends a session whose pad was pulled out: as a power cut
// would, the machine stops at once, without a suspend point (nothing can
// reach the pad any more), and the vault's mount is detached. Plugged in
// again, the next run resumes the newest point and says what was lost.
func (s *Session) padUnplugged() error {
	s.Vault.unplugged = true
	s.r.progress("  the pad was unplugged: stopping the machine, as a power cut would (nothing can reach the pad any more)")
	s.stopNow()
	newest := "the newest point"
	if s.parent != "" {
		newest = "its newest point, " + s.parent + ","
	}
	return fmt.Errorf("%w while the machine ran, so it was stopped without a suspend point; plug the pad in and run it again: it resumes %s and says what was lost", pad.ErrUnplugged, newest)
}
