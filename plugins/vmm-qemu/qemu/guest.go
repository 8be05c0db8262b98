package qemu

import (
	"context"
	"path/filepath"
	"time"

	"github.com/soulpad/soulpad/plugins/vmm-qemu/qga"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// How long the guest's agent has to answer: a resumed guest's agent is
// already running; a booting guest's starts with its system.
const (
	agentWaitResume = 20 * time.Second
	agentWaitBoot   = 3 * time.Minute
)

// tendGuest does what VMware Tools did for the papers' guests, once the
// machine runs: after a resume it tells the guest that its network may
// have changed (the link goes down and up, so the guest asks for an
// address again) and sets its clock, which stood still while the pad
// slept. It says whether the guest's agent answers (EventGuestAgent or
// EventNoGuestAgent). It ends when the machine does.
func (p *Plugin) tendGuest(v *proc, resumed bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-v.exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	if resumed && v.hw.net != "" {
		_ = v.qmp.Execute(ctx, "set_link", map[string]any{"name": "net0", "up": false}, nil)
		time.Sleep(200 * time.Millisecond)
		_ = v.qmp.Execute(ctx, "set_link", map[string]any{"name": "net0", "up": true}, nil)
	}
	if !v.hw.agent {
		return
	}
	wait := agentWaitBoot
	if resumed {
		wait = agentWaitResume
	}
	sctx, scancel := context.WithTimeout(ctx, wait)
	defer scancel()
	c, err := qga.Dial(sctx, filepath.Join(v.runDir, "agent.sock"))
	if err == nil {
		defer c.Close()
		err = c.Sync(sctx)
	}
	if ctx.Err() != nil {
		return // the machine is gone
	}
	if err != nil {
		msg := "no guest agent answers (install qemu-guest-agent in the guest)"
		if resumed {
			msg += ": the guest's clock stays behind by the time the pad slept"
		}
		v.emit(vmm.Event{Type: vmm.EventNoGuestAgent, Message: msg, Time: time.Now()})
		return
	}
	msg := "the guest agent answers"
	if resumed {
		if err := c.SetTime(ctx, time.Now()); err != nil {
			msg += ", but its clock was not set: " + err.Error()
		} else {
			msg += "; the guest's clock is set to this PC's and its network renewed"
		}
	}
	v.emit(vmm.Event{Type: vmm.EventGuestAgent, Message: msg, Time: time.Now()})
}
