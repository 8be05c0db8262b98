package qemu

import (
	"context"
	"io"
	"sync"
	"sync/atomic"

	"github.com/soulpad/soulpad/sdk/vmm"
)

// progress is how far the running (or the last) suspend or resume has
// moved the state through the plugin (a streamed state; mapped memory is
// not counted).
type progress struct {
	mu    sync.Mutex
	step  string
	total uint64
	done  atomic.Uint64
}

func (p *progress) start(step string, total uint64) {
	p.mu.Lock()
	p.step, p.total = step, total
	p.mu.Unlock()
	p.done.Store(0)
}

// reset forgets the last step's figures: a Suspend or Resume begins.
func (p *progress) reset() { p.start("", 0) }

// counter counts what goes through w into p.
func (p *progress) counter(w io.Writer) io.Writer { return countWriter{w, &p.done} }

type countWriter struct {
	w io.Writer
	n *atomic.Uint64
}

func (c countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(uint64(n))
	return n, err
}

// Progress implements vmm.ProgressReporter.
func (p *Plugin) Progress(context.Context, vmm.ProgressRequest) (vmm.ProgressResponse, error) {
	p.prog.mu.Lock()
	defer p.prog.mu.Unlock()
	return vmm.ProgressResponse{Step: p.prog.step, Done: p.prog.done.Load(), Total: p.prog.total}, nil
}
