package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync/atomic"
	"time"

	"github.com/soulpad/soulpad/core/pad"
)

// Hashing ahead. A point's mapped memory is sealed in chunk sums, and a
// suspend hashes every chunk not shared with a point it knows: after a
// cold boot, all the RAM the guest touched, while the guest stands
// stopped. So while the machine runs, the session hashes its running
// RAM file now and then (pad.Presum: a reflink clone, then the chunks
// changed since the last round, read from the page cache), and the
// suspend or checkpoint takes those sums for every chunk the guest has
// not written since. A round writes back what the guest changed (the
// clone needs it on the pad), which the kernel would do within about
// 30 s anyway; rounds come at least 10 s apart, and further apart when a
// round takes long (a slow pad), so that the pad is not kept busy with
// pages the guest writes again and again. They use one CPU fewer than
// the host has, leaving the guest its own.

const (
	presumFirst = 3 * time.Second  // after the machine starts running
	presumMin   = 10 * time.Second // between rounds, at least
	presumMax   = 60 * time.Second // and at most
	// presumDir holds the shadows, in the machine's directory (the
	// running RAM file's file system).
	presumDir = ".presum"
)

// presummer hashes a running machine's mapped files ahead of its
// suspend. Its methods are called from the run stage's goroutine; the
// rounds run on one of their own between start and halt.
type presummer struct {
	m     *pad.Machine
	files map[string]string // the point's file name → the running file
	dir   string
	ram   int64
	// refs are the newest round's shadows, by file name.
	refs   map[string]pad.Ref
	seq    int
	off    string // why rounds stopped for good ("" while they go on)
	rounds int
	hashed int64 // bytes hashed ahead
	cancel context.CancelFunc
	done   chan struct{}
	warn   func(string)
	// said is what status shows (read from the control socket's
	// goroutine).
	said atomic.Pointer[string]
}

// newPresummer is the hashing ahead of the running files (nil: none);
// what an earlier session left in its directory is removed.
func newPresummer(m *pad.Machine, files map[string]string, ramBytes int64, warn func(string)) *presummer {
	dir := filepath.Join(m.Dir, presumDir)
	_ = os.RemoveAll(dir)
	if len(files) == 0 {
		return nil
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		warn(fmt.Sprintf("no hashing ahead of the suspend: %v", err))
		return nil
	}
	return &presummer{m: m, files: files, dir: dir, ram: ramBytes, refs: map[string]pad.Ref{}, warn: warn}
}

// start begins rounds (parent: the point the machine's files derive
// from, whose sums a round takes too).
func (p *presummer) start(ctx context.Context, parent string) {
	p.halt()
	if p == nil || p.off != "" {
		return
	}
	ctx, p.cancel = context.WithCancel(ctx)
	p.done = make(chan struct{})
	go p.loop(ctx, parent)
}

// stop ends the rounds without waiting for the one under way (a suspend
// must not wait for it to reach the VMM plugin); halt waits.
func (p *presummer) stop() {
	if p != nil && p.cancel != nil {
		p.cancel()
	}
}

// halt stops rounds and waits for the one under way to stop.
func (p *presummer) halt() {
	if p == nil || p.cancel == nil {
		return
	}
	p.cancel()
	<-p.done
	p.cancel = nil
}

// lend gives pend the newest round's shadows (call after halt; they stay
// until clear).
func (p *presummer) lend(pend *pad.Pending) {
	if p == nil {
		return
	}
	for name, r := range p.refs {
		pend.Beside(name, r)
	}
}

// clear removes the shadows (call after halt).
func (p *presummer) clear() {
	if p == nil {
		return
	}
	p.refs = map[string]pad.Ref{}
	_ = os.RemoveAll(p.dir)
}

func (p *presummer) loop(ctx context.Context, parent string) {
	defer close(p.done)
	wait := presumFirst
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		t := time.Now()
		err := p.round(ctx, parent)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, pad.ErrNoClone):
			p.off = err.Error()
			p.dropShadows()
			p.say("not hashed ahead of the suspend: " + p.off)
			return
		case err != nil:
			p.warn(fmt.Sprintf("hashing the running memory ahead of the suspend: %v (tried again in %s)", err, presumMax))
			wait = presumMax
		default:
			wait = min(max(5*time.Since(t), presumMin), presumMax)
		}
	}
}

// round hashes each running file once. Short of room in the vault, it
// drops the shadows instead (each pins the blocks the guest has changed
// since its clone).
func (p *presummer) round(ctx context.Context, parent string) error {
	if free, _, ok := vaultSpace(p.dir); !ok || free < p.ram+roomMargin {
		p.dropShadows()
		p.say(fmt.Sprintf("not hashed ahead of the suspend while the vault has %s free (under the RAM's size and a margin)", humanBytes(free)))
		return nil
	}
	names := make([]string, 0, len(p.files))
	for name := range p.files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p.seq++
		shadow := filepath.Join(p.dir, fmt.Sprintf("%s-%d", name, p.seq))
		refs := p.m.PointRef(parent, name)
		if old, ok := p.refs[name]; ok {
			refs = append(refs, old)
		}
		ref, hashed, err := pad.Presum(ctx, p.files[name], shadow, refs, max(runtime.GOMAXPROCS(0)-1, 1))
		p.hashed += hashed
		if err != nil {
			return err
		}
		if old, ok := p.refs[name]; ok {
			_ = os.Remove(old.Path)
		}
		p.refs[name] = ref
	}
	p.rounds++
	p.say(fmt.Sprintf("%s hashed ahead of the suspend in %d round(s), the last at %s: a suspend hashes only what changed since",
		humanBytes(p.hashed), p.rounds, time.Now().Local().Format("15:04:05")))
	return nil
}

func (p *presummer) say(s string) { p.said.Store(&s) }

// status is what status shows of the hashing ahead ("" for none).
func (p *presummer) status() string {
	if p == nil {
		return ""
	}
	if s := p.said.Load(); s != nil {
		return *s
	}
	return "not hashed ahead yet (the first round comes moments after the machine starts)"
}

func (p *presummer) dropShadows() {
	for name, r := range p.refs {
		_ = os.Remove(r.Path)
		delete(p.refs, name)
	}
}

// fields are the journal's figures of the hashing ahead.
func (p *presummer) fields() map[string]any {
	if p == nil {
		return nil
	}
	f := map[string]any{"hashed_ahead_bytes": p.hashed, "hash_rounds": p.rounds}
	if p.off != "" {
		f["hashed_ahead_off"] = p.off
	}
	return f
}
