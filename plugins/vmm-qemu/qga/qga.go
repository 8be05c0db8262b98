// Package qga speaks to QEMU's guest agent (qemu-guest-agent in the
// guest) over the machine's virtio-serial channel: it waits for the agent
// to answer and sets the guest's clock, as VMware Tools did for the
// SoulPad and ISR papers' guests after a resume.
package qga

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"
)

// maxLine bounds one reply from the guest (the guest is not trusted).
const maxLine = 64 << 10

// Reply is one message from the agent.
type Reply struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
}

// ParseReply reads one line from the agent; the 0xFF bytes that delimit
// a guest-sync-delimited reply are dropped. An empty line is no reply.
func ParseReply(line []byte) (Reply, bool, error) {
	line = bytes.TrimSpace(bytes.ReplaceAll(line, []byte{0xff}, nil))
	var r Reply
	if len(line) == 0 {
		return r, false, nil
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return r, false, fmt.Errorf("the guest agent said what is not JSON: %v", err)
	}
	if r.Return == nil && r.Error == nil {
		return r, false, errors.New("the guest agent said neither return nor error")
	}
	return r, true, nil
}

// Conn is a connection to the agent.
type Conn struct {
	c net.Conn
	r *bufio.Reader
}

// Dial connects to the agent's chardev socket (the VMM's end of the
// channel), retrying until ctx ends while the VMM is starting.
func Dial(ctx context.Context, socket string) (*Conn, error) {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "unix", socket)
		if err == nil {
			return &Conn{c: c, r: bufio.NewReaderSize(c, 4096)}, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("guest agent channel %s: %w", socket, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

func (c *Conn) send(cmd string, args any) error {
	msg := map[string]any{"execute": cmd}
	if args != nil {
		msg["arguments"] = args
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if cmd == "guest-sync-delimited" {
		// The 0xFF resets the agent's parser after a half-sent message.
		b = append([]byte{0xff}, b...)
	}
	_, err = c.c.Write(append(b, '\n'))
	return err
}

// next reads one reply, waiting until deadline.
func (c *Conn) next(deadline time.Time) (Reply, error) {
	_ = c.c.SetReadDeadline(deadline)
	for {
		line, err := c.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A reply longer than this client reads: skip it whole.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = c.r.ReadSlice('\n')
			}
			if err == nil {
				continue
			}
		}
		if err != nil {
			return Reply{}, err
		}
		r, ok, perr := ParseReply(line)
		if perr != nil || !ok {
			continue
		}
		return r, nil
	}
}

// Sync waits until the agent answers (the guest may still be booting, or
// have no agent: then ctx ends first), and drops older replies.
func (c *Conn) Sync(ctx context.Context) error {
	for {
		id := rand.Int64N(1 << 52)
		if err := c.send("guest-sync-delimited", map[string]any{"id": id}); err != nil {
			return err
		}
		until := time.Now().Add(time.Second)
		for {
			r, err := c.next(until)
			if err != nil {
				break // no answer in a second: ask again
			}
			var got int64
			if json.Unmarshal(r.Return, &got) == nil && got == id {
				return nil
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("no guest agent answered: %w", ctx.Err())
		}
	}
}

// Call runs a command and returns its reply's return value.
func (c *Conn) Call(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	if err := c.send(cmd, args); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	r, err := c.next(deadline)
	if err != nil {
		return nil, fmt.Errorf("guest agent %s: %w", cmd, err)
	}
	if r.Error != nil {
		return nil, fmt.Errorf("guest agent %s: %s: %s", cmd, r.Error.Class, r.Error.Desc)
	}
	return r.Return, nil
}

// SetTime sets the guest's clock to now (and, through the agent, its
// hardware clock).
func (c *Conn) SetTime(ctx context.Context, now time.Time) error {
	_, err := c.Call(ctx, "guest-set-time", map[string]any{"time": now.UnixNano()})
	return err
}

// GetTime is the guest's clock.
func (c *Conn) GetTime(ctx context.Context) (time.Time, error) {
	b, err := c.Call(ctx, "guest-get-time", nil)
	if err != nil {
		return time.Time{}, err
	}
	var ns int64
	if err := json.Unmarshal(b, &ns); err != nil {
		return time.Time{}, fmt.Errorf("guest agent guest-get-time: %v", err)
	}
	return time.Unix(0, ns), nil
}
