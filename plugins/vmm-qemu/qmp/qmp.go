// Package qmp is a small client of QEMU's machine protocol over a unix
// socket: commands, events, and file descriptors passed with SCM_RIGHTS.
package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Event is an asynchronous QMP event.
type Event struct {
	Name string          `json:"event"`
	Data json.RawMessage `json:"data"`
	Time time.Time       `json:"-"`
}

// Error is an error QEMU returned for a command.
type Error struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *Error) Error() string { return e.Class + ": " + e.Desc }

// ErrClosed: the connection is gone (QEMU exited).
var ErrClosed = errors.New("qmp: connection closed")

type reply struct {
	Return json.RawMessage `json:"return"`
	Error  *Error          `json:"error"`
	ID     string          `json:"id"`
	Event  string          `json:"event"`
	Data   json.RawMessage `json:"data"`
	TS     *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// Conn is a QMP connection.
type Conn struct {
	c   *net.UnixConn
	cmd sync.Mutex // one command in flight

	mu      sync.Mutex
	waiting map[string]chan reply
	next    int
	closed  bool
	err     error

	events chan Event
	done   chan struct{}
}

// Dial connects to the QMP socket at path, retrying until ctx is done (QEMU
// may not have created it yet), and negotiates capabilities.
func Dial(ctx context.Context, path string) (*Conn, error) {
	var c net.Conn
	var err error
	for {
		var d net.Dialer
		c, err = d.DialContext(ctx, "unix", path)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qmp: connect %s: %w", path, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	q := &Conn{c: c.(*net.UnixConn), waiting: map[string]chan reply{}, events: make(chan Event, 256), done: make(chan struct{})}
	r := bufio.NewReaderSize(q.c, 64<<10)
	// Greeting.
	_ = q.c.SetReadDeadline(deadline(ctx))
	line, err := readLine(r)
	if err != nil {
		q.c.Close()
		return nil, fmt.Errorf("qmp: greeting: %w", err)
	}
	var greet struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if json.Unmarshal(line, &greet) != nil || greet.QMP == nil {
		q.c.Close()
		return nil, fmt.Errorf("qmp: unexpected greeting %q", line)
	}
	_ = q.c.SetReadDeadline(time.Time{})
	go q.read(r)
	if err := q.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		q.Close()
		return nil, err
	}
	return q, nil
}

// MaxLine bounds one QMP message: a QEMU that sends more without a
// newline is treated as broken, not buffered without end.
const MaxLine = 16 << 20

// ErrLineTooLong: a QMP message over MaxLine.
var ErrLineTooLong = errors.New("qmp: message longer than 16 MiB")

// readLine reads one newline-terminated message of at most MaxLine bytes.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(line)+len(frag) > MaxLine {
			return nil, ErrLineTooLong
		}
		line = append(line, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		return line, err
	}
}

func deadline(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(30 * time.Second)
}

func (q *Conn) read(r *bufio.Reader) {
	defer close(q.done)
	defer close(q.events)
	for {
		line, err := readLine(r)
		if err != nil {
			q.mu.Lock()
			q.closed, q.err = true, err
			for id, ch := range q.waiting {
				close(ch)
				delete(q.waiting, id)
			}
			q.mu.Unlock()
			return
		}
		var m reply
		if json.Unmarshal(line, &m) != nil {
			continue
		}
		if m.Event != "" {
			ev := Event{Name: m.Event, Data: m.Data, Time: time.Now()}
			if m.TS != nil {
				ev.Time = time.Unix(m.TS.Seconds, m.TS.Microseconds*1000)
			}
			select {
			case q.events <- ev:
			default: // nobody listens; drop
			}
			continue
		}
		q.mu.Lock()
		ch := q.waiting[m.ID]
		delete(q.waiting, m.ID)
		q.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
}

// Events delivers QMP events; the channel closes with the connection.
func (q *Conn) Events() <-chan Event { return q.events }

// Done is closed when the connection ends.
func (q *Conn) Done() <-chan struct{} { return q.done }

// Execute runs a command; args and out are JSON-encoded/decoded (nil for
// none).
func (q *Conn) Execute(ctx context.Context, cmd string, args, out any) error {
	return q.execute(ctx, cmd, args, out, -1)
}

// ExecuteWithFD runs a command and passes fd along with it (for getfd and
// add-fd).
func (q *Conn) ExecuteWithFD(ctx context.Context, cmd string, args any, fd int) error {
	return q.execute(ctx, cmd, args, nil, fd)
}

func (q *Conn) execute(ctx context.Context, cmd string, args, out any, fd int) error {
	q.cmd.Lock()
	defer q.cmd.Unlock()
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return fmt.Errorf("qmp: %s: %w", cmd, ErrClosed)
	}
	q.next++
	id := strconv.Itoa(q.next)
	ch := make(chan reply, 1)
	q.waiting[id] = ch
	q.mu.Unlock()

	msg := map[string]any{"execute": cmd, "id": id}
	if args != nil {
		msg["arguments"] = args
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_ = q.c.SetWriteDeadline(deadline(ctx))
	if fd >= 0 {
		_, _, err = q.c.WriteMsgUnix(b, syscall.UnixRights(fd), nil)
	} else {
		_, err = q.c.Write(b)
	}
	if err != nil {
		q.mu.Lock()
		delete(q.waiting, id)
		q.mu.Unlock()
		return fmt.Errorf("qmp: %s: %w", cmd, err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return fmt.Errorf("qmp: %s: %w", cmd, ErrClosed)
		}
		if m.Error != nil {
			return fmt.Errorf("qmp: %s: %w", cmd, m.Error)
		}
		if out != nil && len(m.Return) > 0 {
			if err := json.Unmarshal(m.Return, out); err != nil {
				return fmt.Errorf("qmp: %s: decode reply: %w", cmd, err)
			}
		}
		return nil
	case <-ctx.Done():
		q.mu.Lock()
		delete(q.waiting, id)
		q.mu.Unlock()
		return fmt.Errorf("qmp: %s: %w", cmd, ctx.Err())
	}
}

// Close closes the connection.
func (q *Conn) Close() error { return q.c.Close() }
