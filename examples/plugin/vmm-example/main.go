// Command vmm-example is a complete SoulPad VMM plugin in one file, for
// integrators to copy. Its "machine" is a clock that ticks in memory: the
// running program whose state must survive a suspend, a walk to another
// PC and a resume. A real VMM keeps the same shape with a hypervisor
// process where the ticker is.
//
// Build it into a plugin directory and point the config at it:
//
//	go build -o /opt/soulpad/plugins/vmm-example ./examples/plugin/vmm-example
//
//	plugins {
//	  dirs = ["/opt/soulpad/plugins"]
//	  vmm  = "vmm-example"
//	}
//	plugin "vmm-example" {
//	  tick_ms = 10   # optional: how often the machine ticks
//	}
//
// What makes a VMM plugin:
//   - Info (who it is, and the capabilities it really has: the core and
//     the conformance suite hold it to them) and Configure (its block,
//     decoded into a typed struct);
//   - Start, Suspend, Resume, PowerOff and Status (vmm.VMM). Suspend
//     writes everything Resume needs into the state directory it is
//     given; the core then fsyncs, checksums and seals those files as a
//     suspend point. Resume never changes that directory, and refuses a
//     state of another machine (sdk.ErrIncompatibleHost) or a damaged one
//     (sdk.ErrCorrupt) with nothing left running;
//   - optional interfaces, each announced as a capability: here the
//     machine's events (vmm.EventStreamer, vmm.CapEvents), so that a
//     guest that powers itself off ends the session;
//   - sdk.Shutdowner, for what must not outlive the plugin's process.
//
// main is one line around sdk.Serve. Run the kind's conformance suite
// against the plugin in-process and as a binary (see main_test.go).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/atomicfile"
	"github.com/soulpad/soulpad/sdk/eventhub"
	"github.com/soulpad/soulpad/sdk/vmm"
)

func main() { sdk.Serve(New()) }

// Config is this plugin's block in site.hcl.
type Config struct {
	TickMS int `json:"tick_ms"`
}

// StateFile is the one file of a suspend point: the machine's memory.
const StateFile = "memory.json"

// state is what Suspend writes and Resume reads.
type state struct {
	Ticks   uint64 `json:"ticks"`
	Machine string `json:"machine"`
}

// Plugin is the example VMM. It runs at most one machine.
type Plugin struct {
	mu     sync.Mutex
	cfg    Config
	m      *machine // nil when nothing runs
	events eventhub.Hub
}

// New returns the plugin.
func New() *Plugin { return &Plugin{cfg: Config{TickMS: 10}} }

var (
	_ vmm.VMM           = (*Plugin)(nil)
	_ vmm.EventStreamer = (*Plugin)(nil)
	_ sdk.Shutdowner    = (*Plugin)(nil)
)

// Info implements sdk.Plugin.
func (p *Plugin) Info(context.Context, sdk.InfoRequest) (sdk.InfoResponse, error) {
	return sdk.InfoResponse{Name: "vmm-example", Kind: sdk.KindVMM, Version: "0.1.0", APIVersions: []int{vmm.APIVersion},
		Capabilities: []string{vmm.CapEvents}, Description: "example VMM: the machine is a clock that ticks in memory"}, nil
}

// Configure implements sdk.Plugin.
func (p *Plugin) Configure(_ context.Context, req sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	cfg := Config{TickMS: 10}
	if err := req.Decode(&cfg); err != nil {
		return sdk.ConfigureResponse{}, fmt.Errorf("vmm-example: %w", err)
	}
	if cfg.TickMS <= 0 {
		return sdk.ConfigureResponse{}, fmt.Errorf("vmm-example: tick_ms must be positive: %w", sdk.ErrInvalidConfig)
	}
	p.mu.Lock()
	p.cfg = cfg
	p.mu.Unlock()
	return sdk.ConfigureResponse{}, nil
}

// describe is the machine a spec makes: a point resumes only on the same.
func describe(s vmm.Spec) string {
	return fmt.Sprintf("vmm-example/1 memory=%d vcpus=%d cpu=%s", s.MemoryMiB, s.VCPUs, s.CPUModel)
}

// Start implements vmm.VMM.
func (p *Plugin) Start(_ context.Context, req vmm.StartRequest) (vmm.StartResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m != nil {
		return vmm.StartResponse{}, fmt.Errorf("vmm-example: start: machine %s is running: %w", p.m.spec.Name, sdk.ErrBusy)
	}
	if req.Spec.MemoryMiB == 0 || req.Spec.VCPUs < 1 {
		return vmm.StartResponse{}, fmt.Errorf("vmm-example: start: memory_mib and vcpus must be positive: %w", sdk.ErrInvalidArgument)
	}
	p.run(req.Spec, 0)
	return vmm.StartResponse{Description: describe(req.Spec)}, nil
}

// Suspend implements vmm.VMM.
func (p *Plugin) Suspend(_ context.Context, req vmm.SuspendRequest) (vmm.SuspendResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		return vmm.SuspendResponse{}, fmt.Errorf("vmm-example: suspend: %w", sdk.ErrNotRunning)
	}
	m := p.m
	ticks := m.stop()
	b, _ := json.Marshal(state{Ticks: ticks, Machine: describe(m.spec)})
	if err := atomicfile.WriteFile(filepath.Join(req.StateDir, StateFile), b, 0o600); err != nil {
		p.run(m.spec, ticks) // the machine goes on: nothing is lost
		return vmm.SuspendResponse{}, fmt.Errorf("vmm-example: suspend: %w", err)
	}
	p.m = nil
	return vmm.SuspendResponse{Files: []string{StateFile}, Description: describe(m.spec), Machine: "a clock at tick " + fmt.Sprint(ticks)}, nil
}

// Resume implements vmm.VMM.
func (p *Plugin) Resume(_ context.Context, req vmm.ResumeRequest) (vmm.ResumeResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m != nil {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-example: resume: machine %s is running: %w", p.m.spec.Name, sdk.ErrBusy)
	}
	b, err := os.ReadFile(filepath.Join(req.StateDir, StateFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-example: resume: no %s in %s: %w", StateFile, req.StateDir, sdk.ErrNotFound)
	case err != nil:
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-example: resume: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil || st.Machine == "" {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-example: resume: %s is not a state this plugin wrote: %w", StateFile, sdk.ErrCorrupt)
	}
	if st.Machine != describe(req.Spec) {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-example: resume: the state is of %q, the machine is %q: %w", st.Machine, describe(req.Spec), sdk.ErrIncompatibleHost)
	}
	p.run(req.Spec, st.Ticks)
	return vmm.ResumeResponse{}, nil
}

// PowerOff implements vmm.VMM.
func (p *Plugin) PowerOff(context.Context, vmm.PowerOffRequest) (vmm.PowerOffResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m != nil {
		p.m.stop()
		p.m = nil
	}
	return vmm.PowerOffResponse{}, nil
}

// Status implements vmm.VMM. Detail carries the guest's progress, which
// the conformance suite reads to tell a resumed machine from a rebooted
// one.
func (p *Plugin) Status(context.Context, vmm.StatusRequest) (vmm.StatusResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		return vmm.StatusResponse{State: vmm.StateStopped}, nil
	}
	return vmm.StatusResponse{State: vmm.StateRunning, Detail: fmt.Sprintf("ticks=%d", p.m.read())}, nil
}

// Events implements vmm.EventStreamer.
func (p *Plugin) Events(ctx context.Context, _ vmm.EventsRequest) (<-chan vmm.Event, error) {
	return p.events.Subscribe(ctx), nil
}

// Shutdown implements sdk.Shutdowner: the machine goes with the plugin.
func (p *Plugin) Shutdown() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m != nil {
		p.m.stop()
		p.m = nil
	}
}

// run starts a machine of spec at ticks; p.mu is held. A spec whose
// Extra asks for it ("power_off_after_ms") is a guest that powers itself
// off: the plugin reports it as a real VMM reports its guest's power-off.
func (p *Plugin) run(spec vmm.Spec, ticks uint64) {
	p.events.Reset()
	var off time.Duration
	if ms, err := time.ParseDuration(spec.Extra["power_off_after_ms"] + "ms"); err == nil {
		off = ms
	}
	m := &machine{spec: spec, ticks: ticks, halt: make(chan struct{}), done: make(chan struct{})}
	p.m = m
	go m.tick(time.Duration(p.cfg.TickMS)*time.Millisecond, off, func() {
		p.mu.Lock()
		if p.m == m {
			p.m = nil
			p.events.Publish(vmm.Event{Type: vmm.EventPoweredOff, Message: "the guest powered off", Time: time.Now()})
		}
		p.mu.Unlock()
	})
}

// machine is one running machine. It owns its ticker: tick runs it,
// stop ends it.
type machine struct {
	spec vmm.Spec

	mu    sync.Mutex
	ticks uint64

	halt chan struct{}
	done chan struct{}
	once sync.Once
}

// tick runs the machine until stop, or until off has passed (then
// poweredOff is called).
func (m *machine) tick(every, off time.Duration, poweredOff func()) {
	defer close(m.done)
	t := time.NewTicker(every)
	defer t.Stop()
	var offC <-chan time.Time
	if off > 0 {
		offC = time.After(off)
	}
	for {
		select {
		case <-m.halt:
			return
		case <-offC:
			go poweredOff()
			return
		case <-t.C:
			m.mu.Lock()
			m.ticks++
			m.mu.Unlock()
		}
	}
}

func (m *machine) read() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ticks
}

// stop ends the machine and returns where it got to.
func (m *machine) stop() uint64 {
	m.once.Do(func() { close(m.halt) })
	<-m.done
	return m.read()
}
