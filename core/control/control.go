// Package control is the local control socket of a running `soulpad run`:
// `soulpad suspend` (and `soulpad status`) talk to it. One JSON line in,
// one JSON line out.
package control

import (
	"syscall"

	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/sdk"
)

// ErrNoSession: nothing is running for that pad.
var ErrNoSession = errors.New("no `soulpad run` is running for this pad")

// Request is a command to the running session.
type Request struct {
	// Command is "suspend", "status" or "console" (which also says where
	// the screen is).
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
	// Screen is the machine's screen (a VNC unix socket), if it has one.
	Screen string `json:"screen,omitempty"`
	// Guest is what the VMM said of the guest's agent.
	Guest string `json:"guest,omitempty"`
	// SafeSince is when the newest state a crash would resume was taken
	// (the last checkpoint, or the resume); Checkpoints says when the
	// next checkpoint comes, or why none does.
	SafeSince   time.Time `json:"safe_since,omitempty"`
	Checkpoints string    `json:"checkpoints,omitempty"`
	// Memory says how much of the running memory is hashed ahead of the
	// suspend ("" when the memory is not mapped).
	Memory string `json:"memory,omitempty"`
}

// Dir is the directory of this user's control sockets (see
// sdk.RuntimeDir for where): /run/soulpad for root. It never depends on
// TMPDIR, so every shell of the user finds the same sockets.
func Dir() string { return dirFor() }

// dirFor is a variable so that tests can move the sockets.
var dirFor = sdk.RuntimeDirPath

// SocketPath is where the session of the pad with this ID listens.
func SocketPath(padID string) string {
	return filepath.Join(Dir(), padID+".sock")
}

// ownDir makes dir or checks the one that is there (sdk.MakePrivateDir):
// another local user could have made it to answer in this session's place.
func ownDir(dir string) error {
	if err := sdk.MakePrivateDir(dir); err != nil {
		return fmt.Errorf("control socket directory: %w", err)
	}
	return nil
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
	if !pad.ValidID(padID) {
		return nil, fmt.Errorf("control socket: pad ID %q is not a pad ID", padID)
	}
	path := SocketPath(padID)
	if err := ownDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	sweepStale(filepath.Dir(path), path)
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another `soulpad run` is already running this pad", path)
	}
	_ = os.Remove(path)
	old := syscall.Umask(0o177) // the socket is born 0600
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
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
	if !pad.ValidID(padID) {
		return Response{}, ErrNoSession
	}
	// Only a directory of this user's own is trusted to hold the session.
	if _, err := os.Lstat(Dir()); err != nil {
		return Response{}, ErrNoSession
	}
	if err := sdk.CheckPrivateDir(Dir()); err != nil {
		return Response{}, fmt.Errorf("control socket directory, not trusted: %w", err)
	}
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

// sweepStale removes the sockets that sessions killed outright left in
// dir (nobody answers them), so they do not pile up on the host; keep is
// handled by Listen itself.
func sweepStale(dir, keep string) {
	socks, _ := filepath.Glob(filepath.Join(dir, "*.sock"))
	for _, s := range socks {
		if s == keep {
			continue
		}
		c, err := net.DialTimeout("unix", s, 200*time.Millisecond)
		if err == nil {
			c.Close()
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			_ = os.Remove(s)
		}
	}
}
