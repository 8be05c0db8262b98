package lv

import (
	"time"

	"github.com/soulpad/soulpad/sdk/vmm"
	"libvirt.org/go/libvirt"
)

// How long the guest's agent has to answer (as vmm-qemu).
const (
	agentWaitResume = 20 * time.Second
	agentWaitBoot   = 3 * time.Minute
)

// domainOf returns a reference to m's domain while m is the running
// machine (the caller frees it), or nil.
func (p *Plugin) domainOf(m *machine) *libvirt.Domain {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.vm != m || m.dom == nil {
		return nil
	}
	d := *m.dom
	if d.Ref() != nil {
		return nil
	}
	return &d
}

// tendGuest is vmm-qemu's tendGuest through libvirt's own agent
// connection: once the machine runs it waits for the guest agent to
// answer and, after a resume, sets the guest's clock (which stood still
// while the pad slept); it says whether the agent answers.
func (p *Plugin) tendGuest(m *machine, resumed bool) {
	wait := agentWaitBoot
	if resumed {
		wait = agentWaitResume
	}
	deadline := time.Now().Add(wait)
	var err error
	for {
		d := p.domainOf(m)
		if d == nil {
			return // the machine is gone
		}
		if resumed {
			now := time.Now()
			err = d.SetTime(now.Unix(), uint(now.Nanosecond()), 0)
		} else {
			_, _, err = d.GetTime(0)
		}
		d.Free()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	e := vmm.Event{Type: vmm.EventGuestAgent, Message: "the guest agent answers", Time: time.Now()}
	switch {
	case err != nil:
		e.Type, e.Message = vmm.EventNoGuestAgent, "no guest agent answers (install qemu-guest-agent in the guest)"
		if resumed {
			e.Message += ": the guest's clock stays behind by the time the pad slept"
		}
	case resumed:
		e.Message += "; the guest's clock is set to this PC's"
	}
	d := p.domainOf(m)
	if d == nil {
		return // the machine went meanwhile
	}
	d.Free()
	p.events.Publish(e)
}
