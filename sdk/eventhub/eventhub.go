// Package eventhub fans a VMM plugin's machine events out to subscribers
// as vmm.EventStreamer asks: events nobody can take are dropped, except
// the last power-off and the last word on the guest agent, which a
// subscriber that arrives later still gets until the next machine starts.
package eventhub

import (
	"context"
	"sync"

	"github.com/soulpad/soulpad/sdk/vmm"
)

// Hub is safe for concurrent use; the zero value is ready.
type Hub struct {
	mu        sync.Mutex
	subs      []chan vmm.Event
	lastOff   *vmm.Event
	lastGuest *vmm.Event
}

// Publish sends e to every subscriber that has room.
func (h *Hub) Publish(e vmm.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch e.Type {
	case vmm.EventPoweredOff:
		h.lastOff = &e
	case vmm.EventGuestAgent, vmm.EventNoGuestAgent:
		h.lastGuest = &e
	}
	for _, s := range h.subs {
		select {
		case s <- e:
		default:
		}
	}
}

// Reset forgets the last power-off: a new machine runs.
func (h *Hub) Reset() {
	h.mu.Lock()
	h.lastOff, h.lastGuest = nil, nil
	h.mu.Unlock()
}

// Subscribe returns the events from now until ctx is done, then closes
// the channel.
func (h *Hub) Subscribe(ctx context.Context) <-chan vmm.Event {
	in := make(chan vmm.Event, 8)
	out := make(chan vmm.Event, 8)
	h.mu.Lock()
	h.subs = append(h.subs, in)
	if h.lastGuest != nil {
		in <- *h.lastGuest
	}
	if h.lastOff != nil {
		in <- *h.lastOff
	}
	h.mu.Unlock()
	go func() {
		defer close(out)
		defer func() {
			h.mu.Lock()
			for i, s := range h.subs {
				if s == in {
					h.subs = append(h.subs[:i], h.subs[i+1:]...)
					break
				}
			}
			h.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-in:
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}
