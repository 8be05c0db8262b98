package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"sync"
	"syscall"
	"time"
)

// serial is a machine's serial console: what it printed, and a way to
// type at it.
type serial struct {
	mu    sync.Mutex
	out   []byte
	seen  int // wait looks past here
	w     io.Writer
	close func()
}

func newSerial(r io.Reader, w io.Writer, closer func()) *serial {
	s := &serial{w: w}
	var once sync.Once
	s.close = func() { once.Do(closer) }
	go func() {
		br := bufio.NewReader(r)
		buf := make([]byte, 4096)
		for {
			n, err := br.Read(buf)
			s.mu.Lock()
			s.out = append(s.out, buf[:n]...)
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return s
}

// attachConsole follows the running machine's console through `soulpad
// console`, typing what is sent through its standard input.
func attachConsole(ctx context.Context, soulpad string, env []string) (*serial, error) {
	cmd := exec.CommandContext(ctx, soulpad, "console")
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return newSerial(out, in, func() {
		in.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}), nil
}

func (s *serial) send(text string) error {
	_, err := io.WriteString(s.w, text)
	return err
}

// wait waits until what the console printed since the last match
// matches re, and returns the match's groups.
func (s *serial) wait(ctx context.Context, re *regexp.Regexp, d time.Duration) ([]string, error) {
	end := time.Now().Add(d)
	for {
		s.mu.Lock()
		loc := re.FindSubmatchIndex(s.out[s.seen:])
		var m []string
		if loc != nil {
			for i := 0; i+1 < len(loc); i += 2 {
				if loc[i] >= 0 {
					m = append(m, string(s.out[s.seen+loc[i]:s.seen+loc[i+1]]))
				} else {
					m = append(m, "")
				}
			}
			s.seen += loc[1]
		}
		tail := lastLine(string(s.out[max(0, len(s.out)-400):]))
		s.mu.Unlock()
		if m != nil {
			return m, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Now().After(end) {
			return nil, fmt.Errorf("the console did not show %q in %s (its last line: %q)", re, d, tail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
