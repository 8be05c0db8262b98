// Package counter is a test VMM plugin. Its "machine" is a counter that a
// goroutine increments every few milliseconds — the running program whose
// state must survive suspend and resume. Memory is the counter; the disk
// is a file in the machine directory that records the last value written.
// Suspend writes memory.json into the state directory; Resume reads it and
// goes on counting from there.
//
// Faults can be injected from its config block to test the core's
// cleanups: fail_start, fail_resume, fail_suspend_times, power_off_after_ms,
// crash_after_ms. A spec's extra "power_off_after_ms" is a guest that
// powers itself off. Status's detail is "counter=N" (the guest's progress).
package counter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/eventhub"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// Config is the plugin's block.
type Config struct {
	TickMS           int  `json:"tick_ms"`
	FailStart        bool `json:"fail_start"`
	FailResume       bool `json:"fail_resume"`
	FailSuspendTimes int  `json:"fail_suspend_times"`
	PowerOffAfterMS  int  `json:"power_off_after_ms"`
	// CrashAfterMS makes the whole plugin process exit this long after the
	// machine starts, as a VMM that died would.
	CrashAfterMS int `json:"crash_after_ms"`
	// MappedMiB adds a "RAM" file of this size to each point, marked
	// Mapped (as vmm-qemu's mapped memory is): the core checks it beside
	// the running machine, not before it. Its bytes are never read back.
	MappedMiB int `json:"mapped_mib"`
}

// Memory is what Suspend writes.
type Memory struct {
	Counter     uint64 `json:"counter"`
	MemoryMiB   uint64 `json:"memory_mib"`
	Description string `json:"description"`
}

// Plugin is the counter VMM.
type Plugin struct {
	mu      sync.Mutex
	cfg     Config
	running bool
	counter uint64
	spec    vmm.Spec
	dir     string
	stop    chan struct{}
	done    chan struct{}
	events  eventhub.Hub
}

// New returns the plugin.
func New() *Plugin { return &Plugin{cfg: Config{TickMS: 5}} }

var (
	_ vmm.VMM           = (*Plugin)(nil)
	_ vmm.EventStreamer = (*Plugin)(nil)
)

// Info implements sdk.Plugin.
func (p *Plugin) Info(context.Context, sdk.InfoRequest) (sdk.InfoResponse, error) {
	return sdk.InfoResponse{Name: "vmm-counter", Kind: sdk.KindVMM, Version: "0.1.0", APIVersions: []int{vmm.APIVersion},
		Capabilities: []string{vmm.CapEvents, vmm.CapNetworkPrefix + "user"}, Description: "test VMM: the machine is a counter in memory"}, nil
}

// Configure implements sdk.Plugin.
func (p *Plugin) Configure(_ context.Context, req sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	cfg := Config{TickMS: 5}
	if err := req.Decode(&cfg); err != nil {
		return sdk.ConfigureResponse{}, err
	}
	if cfg.TickMS <= 0 {
		return sdk.ConfigureResponse{}, fmt.Errorf("vmm-counter: tick_ms must be positive: %w", sdk.ErrInvalidConfig)
	}
	p.mu.Lock()
	p.cfg = cfg
	p.mu.Unlock()
	return sdk.ConfigureResponse{}, nil
}

func description(s vmm.Spec) string {
	return fmt.Sprintf("counter-machine/1 memory=%d vcpus=%d cpu=%s", s.MemoryMiB, s.VCPUs, s.CPUModel)
}

// Start implements vmm.VMM.
func (p *Plugin) Start(_ context.Context, req vmm.StartRequest) (vmm.StartResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running {
		return vmm.StartResponse{}, fmt.Errorf("vmm-counter: start: %w", sdk.ErrBusy)
	}
	if p.cfg.FailStart {
		return vmm.StartResponse{}, errors.New("vmm-counter: start: injected failure (fail_start)")
	}
	if req.Spec.MemoryMiB == 0 {
		return vmm.StartResponse{}, fmt.Errorf("vmm-counter: start: memory_mib is 0: %w", sdk.ErrInvalidArgument)
	}
	p.begin(req.Spec, req.MachineDir, 0)
	return vmm.StartResponse{Description: description(req.Spec)}, nil
}

// begin starts counting from n; p.mu is held.
func (p *Plugin) begin(spec vmm.Spec, dir string, n uint64) {
	p.spec, p.dir, p.counter, p.running = spec, dir, n, true
	p.events.Reset()
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	tick := time.Duration(p.cfg.TickMS) * time.Millisecond
	offAfter := time.Duration(p.cfg.PowerOffAfterMS) * time.Millisecond
	if ms, err := strconv.Atoi(spec.Extra["power_off_after_ms"]); err == nil && ms > 0 {
		offAfter = time.Duration(ms) * time.Millisecond // the guest's own plan
	}
	go p.loop(p.stop, p.done, tick, offAfter)
	if p.cfg.CrashAfterMS > 0 {
		time.AfterFunc(time.Duration(p.cfg.CrashAfterMS)*time.Millisecond, func() { os.Exit(3) })
	}
}

func (p *Plugin) loop(stop, done chan struct{}, tick, offAfter time.Duration) {
	defer close(done)
	t := time.NewTicker(tick)
	defer t.Stop()
	var off <-chan time.Time
	if offAfter > 0 {
		off = time.After(offAfter)
	}
	for {
		select {
		case <-stop:
			return
		case <-off:
			p.mu.Lock()
			p.writeDisk()
			p.running = false
			p.emit(vmm.Event{Type: vmm.EventPoweredOff, Message: "the guest powered off", Time: time.Now()})
			p.mu.Unlock()
			return
		case <-t.C:
			p.mu.Lock()
			p.counter++
			if p.counter%50 == 0 {
				p.writeDisk()
			}
			p.mu.Unlock()
		}
	}
}

// writeDisk records the counter on the machine's "disk"; p.mu is held.
func (p *Plugin) writeDisk() {
	if p.dir != "" {
		_ = os.WriteFile(filepath.Join(p.dir, "disk"), []byte(strconv.FormatUint(p.counter, 10)+"\n"), 0o600)
	}
}

// emit sends ev to subscribers; p.mu is held.
func (p *Plugin) emit(ev vmm.Event) { p.events.Publish(ev) }

// halt stops the loop; p.mu is held and is released while waiting.
func (p *Plugin) halt() {
	if p.stop == nil {
		return
	}
	close(p.stop)
	done := p.done
	p.stop = nil
	p.mu.Unlock()
	<-done
	p.mu.Lock()
}

// Suspend implements vmm.VMM.
func (p *Plugin) Suspend(_ context.Context, req vmm.SuspendRequest) (vmm.SuspendResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		return vmm.SuspendResponse{}, fmt.Errorf("vmm-counter: suspend: %w", sdk.ErrNotRunning)
	}
	if p.cfg.FailSuspendTimes != 0 {
		if p.cfg.FailSuspendTimes > 0 {
			p.cfg.FailSuspendTimes--
		}
		// Write a partial file, as a real VMM that failed half-way would.
		_ = os.WriteFile(filepath.Join(req.StateDir, "memory.json"), []byte(`{"counter":`), 0o600)
		return vmm.SuspendResponse{}, errors.New("vmm-counter: suspend: injected failure (fail_suspend_times)")
	}
	p.halt()
	p.writeDisk()
	m := Memory{Counter: p.counter, MemoryMiB: p.spec.MemoryMiB, Description: description(p.spec)}
	b, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(req.StateDir, "memory.json"), b, 0o600); err != nil {
		p.begin(p.spec, p.dir, p.counter)
		return vmm.SuspendResponse{}, fmt.Errorf("vmm-counter: suspend: %w", err)
	}
	p.running = false
	resp := vmm.SuspendResponse{Files: []string{"memory.json"}, Description: m.Description, Machine: "a counter that ticks"}
	if p.cfg.MappedMiB > 0 {
		if err := writeMapped(filepath.Join(req.StateDir, MappedFile), byte(p.counter), int64(p.cfg.MappedMiB)<<20); err != nil {
			return vmm.SuspendResponse{}, fmt.Errorf("vmm-counter: suspend: %w", err)
		}
		resp.Files = append(resp.Files, MappedFile)
		resp.Sums = []vmm.FileSum{{Name: MappedFile, Mapped: true}}
	}
	return resp, nil
}

// MappedFile is the point's mapped file (Config.MappedMiB).
const MappedFile = "memory.ram"

// writeMapped writes a mapped file of size bytes: its first MiB (at
// most) holds the counter's byte, the rest is a hole (zeros that take no
// room, so a large one is quick to write and slow only to check).
func writeMapped(path string, b byte, size int64) error {
	head := bytes.Repeat([]byte{b}, int(min(size, 1<<20)))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(head)
	if err == nil {
		err = f.Truncate(size)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Resume implements vmm.VMM.
func (p *Plugin) Resume(_ context.Context, req vmm.ResumeRequest) (vmm.ResumeResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-counter: resume: %w", sdk.ErrBusy)
	}
	if p.cfg.FailResume {
		return vmm.ResumeResponse{}, errors.New("vmm-counter: resume: injected failure (fail_resume)")
	}
	b, err := os.ReadFile(filepath.Join(req.StateDir, "memory.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-counter: resume: no memory.json in %s: %w", req.StateDir, sdk.ErrNotFound)
	}
	if err != nil {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-counter: resume: %w", err)
	}
	var m Memory
	if err := json.Unmarshal(b, &m); err != nil {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-counter: resume: memory.json: %v: %w", err, sdk.ErrCorrupt)
	}
	if m.Description != description(req.Spec) {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-counter: resume: state is for %q, the spec is %q: %w", m.Description, description(req.Spec), sdk.ErrIncompatibleHost)
	}
	p.begin(req.Spec, req.MachineDir, m.Counter)
	return vmm.ResumeResponse{}, nil
}

// PowerOff implements vmm.VMM.
func (p *Plugin) PowerOff(context.Context, vmm.PowerOffRequest) (vmm.PowerOffResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		return vmm.PowerOffResponse{}, nil
	}
	p.halt()
	p.writeDisk()
	p.running = false
	return vmm.PowerOffResponse{}, nil
}

// Status implements vmm.VMM.
func (p *Plugin) Status(context.Context, vmm.StatusRequest) (vmm.StatusResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running {
		return vmm.StatusResponse{State: vmm.StateRunning, Detail: fmt.Sprintf("counter=%d", p.counter)}, nil
	}
	return vmm.StatusResponse{State: vmm.StateStopped}, nil
}

// Events implements vmm.EventStreamer.
func (p *Plugin) Events(ctx context.Context, _ vmm.EventsRequest) (<-chan vmm.Event, error) {
	return p.events.Subscribe(ctx), nil
}
