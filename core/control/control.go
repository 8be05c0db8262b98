// Package control is the local control socket of a running `soulpad run`:
// `soulpad suspend` (and `soulpad status`) talk to it. One JSON line in,
// one JSON line out.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// ErrNoSession: nothing is running for that pad.
var ErrNoSession = errors.New("no `soulpad run` is running for this pad")

// Request is a command to the running session.
type Request struct {
	// Command is "suspend", "status" or "console".
	Command string `json:"command"`
}

// Response is the session's answer.
type Response struct {
	OK      bool   `json:"ok"`
	Message string `json:"message,omitempty"`
	Stage   string `json:"stage,omitempty"`
	// ConsoleSocket and ConsoleLog locate the machine's serial console.
	ConsoleSocket string `json:"console_socket,omitempty"`
	ConsoleLog    string `json:"console_log,omitempty"`
}

// SocketPath is where the session of the pad with this ID listens.
func SocketPath(padID string) string {
	base := os.Getenv("XDG_RUNTIME_DIR")
	if base == "" {
		base = filepath.Join(os.TempDir(), "soulpad-"+strconv.Itoa(os.Getuid()))
	} else {
		base = filepath.Join(base, "soulpad")
	}
	return filepath.Join(base, padID+".sock")
}

// Handler answers a request.
type Handler func(Request) Response

// Server listens on a pad's socket.
type Server struct {
	ln   net.Listener
	path string
}

// Listen starts serving padID's socket. It fails if another session of the
// same pad is live; a stale socket from a crash is replaced.
func Listen(padID string, h Handler) (*Server, error) {
	path := SocketPath(padID)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another `soulpad run` is already running this pad", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	_ = os.Chmod(path, 0o600)
	s := &Server{ln: ln, path: path}
	go s.serve(h)
	return s, nil
}

func (s *Server) serve(h Handler) {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			var req Request
			line, err := bufio.NewReader(c).ReadBytes('\n')
			resp := Response{Message: "bad request"}
			if err == nil && json.Unmarshal(line, &req) == nil {
				resp = h(req)
			}
			b, _ := json.Marshal(resp)
			_, _ = c.Write(append(b, '\n'))
		}()
	}
}

// Close stops serving and removes the socket.
func (s *Server) Close() error {
	err := s.ln.Close()
	_ = os.Remove(s.path)
	return err
}

// Send sends one request to padID's session.
func Send(ctx context.Context, padID string, req Request) (Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", SocketPath(padID))
	if err != nil {
		return Response{}, ErrNoSession
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	b, _ := json.Marshal(req)
	if _, err := c.Write(append(b, '\n')); err != nil {
		return Response{}, fmt.Errorf("control socket: %w", err)
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return Response{}, fmt.Errorf("control socket: %w", err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return Response{}, fmt.Errorf("control socket: %w", err)
	}
	return resp, nil
}
