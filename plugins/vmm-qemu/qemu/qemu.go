// Package qemu implements vmm-qemu, the SoulPad VMM plugin that drives
// qemu-system-x86_64 over QMP.
//
// Suspend stops the guest and streams its memory and device state over a
// file descriptor passed to QEMU (migrate to "fd:") straight into the
// state directory inside the vault, then fsyncs it. Resume starts QEMU with
// the same machine and "-incoming defer", feeds the state file back the same
// way, and continues. QEMU is a child that cannot outlive the plugin
// (Pdeathsig) and its stderr goes to the plugin's log.
package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/eventhub"
	"github.com/soulpad/soulpad/sdk/vmm"
	"github.com/soulpad/soulpad/sdk/vmm/diskchain"
	"github.com/soulpad/soulpad/sdk/vmm/x86cpu"
)

// Version is the plugin's version.
const Version = "0.1.0"

// StateFile holds the memory and device state in a suspend point.
const StateFile = "memory.state"

// Plugin is vmm-qemu.
type Plugin struct {
	// History keeps and collects disk states (vmm.DiskHistory).
	diskchain.History
	log hclog.Logger

	mu          sync.Mutex
	cfg         Config
	qemuPath    string
	imgPath     string
	version     string
	machineType string
	vm          *proc
	events      eventhub.Hub
	prog        progress // not under mu: Progress answers while Suspend runs

	displaysOnce sync.Once
	displays     map[string]bool // QEMU's display backends
}

// New returns the plugin, logging to log (nil: nowhere).
func New(log hclog.Logger) *Plugin {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	p := &Plugin{log: log}
	p.History = diskchain.History{Chain: p.chain, Hold: func() (bool, func()) { p.mu.Lock(); return p.vm != nil, p.mu.Unlock }}
	return p
}

var (
	_ vmm.VMM           = (*Plugin)(nil)
	_ vmm.EventStreamer = (*Plugin)(nil)
	_ vmm.DiskHistory   = (*Plugin)(nil)
	_ sdk.Shutdowner    = (*Plugin)(nil)
)

// Info implements sdk.Plugin.
func (p *Plugin) Info(context.Context, sdk.InfoRequest) (sdk.InfoResponse, error) {
	return sdk.InfoResponse{Name: "vmm-qemu", Kind: sdk.KindVMM, Version: Version, APIVersions: []int{vmm.APIVersion},
		Capabilities: []string{vmm.CapEvents, vmm.CapKVM, vmm.CapDiskHistory, vmm.CapProgress, vmm.CapCheckpoint,
			vmm.CapDiskFormatPrefix + "qcow2", vmm.CapDiskFormatPrefix + "raw", vmm.CapNetworkPrefix + "user", vmm.CapNetworkPrefix + "none",
			vmm.CapFirmwarePrefix + vmm.FirmwareBIOS, vmm.CapFirmwarePrefix + vmm.FirmwareUEFI, vmm.CapMedia},
		Description: "QEMU over QMP: KVM when /dev/kvm is usable, TCG otherwise"}, nil
}

// Configure implements sdk.Plugin.
func (p *Plugin) Configure(ctx context.Context, req sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	var c Config
	if err := req.Decode(&c); err != nil {
		return sdk.ConfigureResponse{}, fmt.Errorf("vmm-qemu: %w", err)
	}
	switch c.Memory {
	case "":
		c.Memory = memoryAuto
	case memoryAuto, memoryMapped, memoryStream:
	default:
		return sdk.ConfigureResponse{}, fmt.Errorf("vmm-qemu: memory = %q: want auto, mapped or stream: %w", c.Memory, sdk.ErrInvalidConfig)
	}
	if c.MaxBandwidthMiBps < 0 {
		return sdk.ConfigureResponse{}, fmt.Errorf("vmm-qemu: max_bandwidth_mibps must not be negative: %w", sdk.ErrInvalidConfig)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg = c
	p.qemuPath = ""
	return sdk.ConfigureResponse{}, nil
}

// check validates spec against this host; p.mu is held.
func (p *Plugin) check(ctx context.Context, spec vmm.Spec, machineDir string) error {
	if err := p.probe(ctx); err != nil {
		return err
	}
	if spec.MemoryMiB == 0 || spec.VCPUs < 1 {
		return fmt.Errorf("vmm-qemu: memory_mib and vcpus must be positive: %w", sdk.ErrInvalidArgument)
	}
	if spec.Accelerator == "kvm" && !kvmUsable() {
		return fmt.Errorf("vmm-qemu: KVM asked for but /dev/kvm is not usable here: %w", sdk.ErrIncompatibleHost)
	}
	if _, err := spec.MediaPath(machineDir); err != nil {
		return fmt.Errorf("vmm-qemu: %w", err)
	}
	for _, f := range []string{spec.Kernel, spec.Initrd} {
		if f == "" {
			continue
		}
		if !filepath.IsAbs(f) {
			f = filepath.Join(machineDir, f)
		}
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("vmm-qemu: %s: %w", f, sdk.ErrNotFound)
		}
	}
	return nil
}

// Start implements vmm.VMM.
func (p *Plugin) Start(ctx context.Context, req vmm.StartRequest) (vmm.StartResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.vm != nil {
		return vmm.StartResponse{}, fmt.Errorf("vmm-qemu: start: machine %s is running: %w", p.vm.spec.Name, sdk.ErrBusy)
	}
	if err := p.check(ctx, req.Spec, req.MachineDir); err != nil {
		return vmm.StartResponse{}, err
	}
	if _, _, err := p.firmwareFiles(hardwareOf(req.Spec)); err != nil {
		return vmm.StartResponse{}, err
	}
	if err := p.prepareVars(req.Spec, req.MachineDir); err != nil {
		return vmm.StartResponse{}, fmt.Errorf("vmm-qemu: start: UEFI variables: %w", err)
	}
	tops, err := p.chain().BootTops(ctx, req.MachineDir, diskchain.Disks(req.Spec), req.From)
	if err != nil {
		return vmm.StartResponse{}, err
	}
	v := p.newProc(req.Spec, req.MachineDir, p.expected(req.Spec), tops)
	mode, err := p.memoryMode(req.MachineDir)
	if err != nil {
		p.dropOverlays(v)
		return vmm.StartResponse{}, err
	}
	if mode == memoryMapped {
		if err := prepareRAM(ctx, v, ""); err != nil {
			p.dropOverlays(v)
			return vmm.StartResponse{}, fmt.Errorf("vmm-qemu: start: %w", err)
		}
	}
	if err := p.launch(ctx, v, false); err != nil {
		return vmm.StartResponse{}, err
	}
	if err := p.commitTops(v); err != nil {
		v.quit(ctx)
		return vmm.StartResponse{}, err
	}
	p.vm = v
	go p.tendGuest(v, false)
	out := vmm.StartResponse{Description: v.desc.String(), Console: v.console(), CPUFeatures: x86cpu.Needed(req.Spec.CPUModel, nil)}
	if mode == memoryMapped {
		// The core may hash it while the guest runs.
		out.RunningFiles = map[string]string{RAMFile: v.ramFile}
	}
	return out, nil
}

// newProc is a machine about to be launched by this plugin.
func (p *Plugin) newProc(spec vmm.Spec, machineDir string, desc Description, tops map[string]string) *proc {
	hw, err := parseHardware(desc.Devices)
	if err != nil {
		hw = hardwareOf(spec) // desc is this plugin's own, from expected
	}
	return &proc{spec: spec, machineDir: machineDir, desc: desc, hw: hw, tops: tops, log: p.log, emit: p.events.Publish,
		gone: func(v *proc) {
			p.mu.Lock()
			if p.vm == v {
				p.vm = nil
			}
			p.mu.Unlock()
		}}
}

// launch starts QEMU for v (paused for an incoming state when incoming);
// a machine that did not start leaves neither overlays nor a RAM file.
// p.mu is held.
func (p *Plugin) launch(ctx context.Context, v *proc, incoming bool) error {
	p.events.Reset()
	err := v.launch(ctx, p.qemuPath, func(string) ([]string, error) { return p.args(v, incoming) })
	if err != nil {
		p.dropOverlays(v)
		if v.ramFile != "" {
			os.Remove(v.ramFile)
		}
	}
	return err
}

// commitTops makes v's overlays the disks' current state.
func (p *Plugin) commitTops(v *proc) error {
	return p.chain().Commit(v.machineDir, diskchain.Disks(v.spec), v.tops)
}

// dropOverlays removes overlays made for a machine that did not start.
func (p *Plugin) dropOverlays(v *proc) { diskchain.Drop(v.machineDir, diskchain.Disks(v.spec), v.tops) }

// Suspend implements vmm.VMM: the machine stops, its state (and its RAM,
// unless the RAM is a mapped file) is saved into the state directory,
// the RAM file and the disks' overlays become the point's, and QEMU
// quits. On failure the guest goes on running.
func (p *Plugin) Suspend(ctx context.Context, req vmm.SuspendRequest) (vmm.SuspendResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.prog.reset()
	v := p.vm
	if v == nil || !v.alive() {
		return vmm.SuspendResponse{}, fmt.Errorf("vmm-qemu: suspend: %w", sdk.ErrNotRunning)
	}
	if req.Checkpoint {
		return p.checkpoint(ctx, v, req.StateDir)
	}
	// A suspend that was asked for finishes even if the caller dies now
	// (its context then ends): the response is left in the state
	// directory, for the next run to seal. The caller's deadline holds.
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Minute)
	}
	ctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	out, err := p.suspend(ctx, v, req)
	if err == nil {
		if werr := vmm.WriteResult(req.StateDir, out); werr != nil {
			p.log.Warn("the suspend's result could not be left beside it", "error", werr)
		}
	}
	return out, err
}

// suspend is Suspend's work (not a checkpoint's).
func (p *Plugin) suspend(ctx context.Context, v *proc, req vmm.SuspendRequest) (vmm.SuspendResponse, error) {
	fail := func(err error) (vmm.SuspendResponse, error) {
		// Keep the session: the guest goes on running.
		if v.alive() {
			_ = v.qmp.Execute(context.WithoutCancel(ctx), "cont", nil, nil)
		}
		_ = os.Remove(filepath.Join(req.StateDir, StateFile))
		_ = os.Remove(filepath.Join(req.StateDir, RAMFile))
		return vmm.SuspendResponse{}, fmt.Errorf("vmm-qemu: suspend: %w", err)
	}
	timer := vmm.NewTimer()
	if err := v.qmp.Execute(ctx, "stop", nil, nil); err != nil {
		return fail(err)
	}
	timer.Mark("stop")
	// Mapped RAM stays out of the stream: it is in the file already
	// (unless memory = "stream" now: then all of it goes in the stream).
	mapped := v.ramFile != "" && p.cfg.Memory != memoryStream
	stateSum, err := p.saveState(ctx, v, req.StateDir, mapped)
	if err != nil {
		return fail(err)
	}
	timer.Mark("state")
	if err := syncFile(filepath.Join(req.StateDir, StateFile)); err != nil {
		return fail(err)
	}
	if mapped {
		if err := keepRAM(ctx, v, req.StateDir, timer); err != nil {
			return fail(err)
		}
	} else {
		timer.Mark("sync")
	}
	v.quit(ctx)
	timer.Mark("quit")
	return p.sealable(v, req.StateDir, mapped, stateSum, timer)
}

// sealable freezes the disks' overlays into the point and says what the
// core seals: the files, their sums, the machine's description.
func (p *Plugin) sealable(v *proc, dir string, mapped bool, stateSum vmm.FileSum, timer *vmm.Timer) (vmm.SuspendResponse, error) {
	desc := v.desc
	if !mapped {
		desc.Memory = ""
	}
	files, frozen, err := p.chain().Freeze(v.machineDir, dir, diskchain.Disks(v.spec), v.tops)
	if err != nil {
		return vmm.SuspendResponse{}, err
	}
	timer.Mark("disks")
	desc.Disks = frozen
	p.vm = nil
	// The state is checked as it is loaded, at resume (OnLoad).
	stateSum.OnLoad = true
	sums := []vmm.FileSum{stateSum}
	head := []string{StateFile}
	if mapped {
		// Resume maps it: the core checks it beside the running guest.
		sums = append(sums, vmm.FileSum{Name: RAMFile, Mapped: true})
		head = append(head, RAMFile)
	}
	return vmm.SuspendResponse{Files: append(head, files...), Description: desc.String(), Sums: sums, Phases: timer.Phases(),
		Machine: fmt.Sprintf("QEMU %s, %s", desc.QEMUVersion, desc.MachineType)}, nil
}

// Resume implements vmm.VMM: QEMU starts paused with the point's machine,
// loads the state (checking it on the way when the core gave its sum),
// maps a mapped point's RAM, and continues.
func (p *Plugin) Resume(ctx context.Context, req vmm.ResumeRequest) (vmm.ResumeResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.prog.reset()
	if p.vm != nil {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-qemu: resume: machine %s is running: %w", p.vm.spec.Name, sdk.ErrBusy)
	}
	if err := p.check(ctx, req.Spec, req.MachineDir); err != nil {
		return vmm.ResumeResponse{}, err
	}
	desc, want, spec, note, err := p.pointMachine(ctx, req)
	if err != nil {
		return vmm.ResumeResponse{}, err
	}
	saved := p.machineType
	p.machineType = desc.MachineType
	defer func() { p.machineType = saved }()

	timer := vmm.NewTimer()
	tops, err := p.chain().ResumeTops(ctx, req.MachineDir, req.StateDir, diskchain.Disks(spec), desc.Disks)
	if err != nil {
		return vmm.ResumeResponse{}, err
	}
	v := p.newProc(spec, req.MachineDir, want, tops)
	if err := p.resumeMemory(ctx, v, req.StateDir, desc); err != nil {
		p.dropOverlays(v)
		return vmm.ResumeResponse{}, err
	}
	timer.Mark("prepare")
	if err := p.launch(ctx, v, true); err != nil {
		return vmm.ResumeResponse{}, err
	}
	timer.Mark("launch")
	if err := p.loadState(ctx, v, req, desc.Memory == memoryMapped); err != nil {
		return p.failResume(ctx, v, err)
	}
	timer.Mark("state")
	if err := v.qmp.Execute(ctx, "cont", nil, nil); err != nil {
		return p.failResume(ctx, v, err)
	}
	timer.Mark("cont")
	if err := p.commitTops(v); err != nil {
		return p.failResume(ctx, v, err)
	}
	if desc.Memory == memoryMapped {
		// The guest faults its pages in as it touches them; read the rest
		// ahead, so that it does not wait for each.
		v.startPrefetch()
	}
	p.vm = v
	go p.tendGuest(v, true)
	out := vmm.ResumeResponse{Console: v.console(), CPUFeatures: x86cpu.Needed(req.Spec.CPUModel, nil), Phases: timer.Phases()}
	if desc.Memory == memoryMapped {
		// The core checks the point's RAM through this clone: one page
		// cache, so the pad's bytes are read once.
		out.RunningCopies = map[string]string{RAMFile: v.ramFile}
	}
	if note != "" {
		out.Notes = append(out.Notes, "the machine's devices changed since this point ("+note+"); the change takes effect at the next cold boot (soulpad run --cold-boot)")
	}
	return out, nil
}

// PowerOff implements vmm.VMM.
func (p *Plugin) PowerOff(ctx context.Context, req vmm.PowerOffRequest) (vmm.PowerOffResponse, error) {
	p.mu.Lock()
	v := p.vm
	p.mu.Unlock()
	if v == nil || !v.alive() {
		return vmm.PowerOffResponse{}, nil
	}
	if !req.Force {
		_ = v.qmp.Execute(ctx, "system_powerdown", nil, nil)
		select {
		case <-v.exited:
		case <-time.After(30 * time.Second):
		case <-ctx.Done():
		}
	}
	v.quit(ctx)
	p.mu.Lock()
	if p.vm == v {
		p.vm = nil
	}
	p.mu.Unlock()
	return vmm.PowerOffResponse{}, nil
}

// Status implements vmm.VMM.
func (p *Plugin) Status(ctx context.Context, _ vmm.StatusRequest) (vmm.StatusResponse, error) {
	p.mu.Lock()
	v := p.vm
	p.mu.Unlock()
	if v == nil || !v.alive() {
		return vmm.StatusResponse{State: vmm.StateStopped}, nil
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := v.qmp.Execute(ctx, "query-status", nil, &st); err != nil {
		return vmm.StatusResponse{State: vmm.StateStopped, Detail: err.Error()}, nil
	}
	if st.Status == "running" {
		return vmm.StatusResponse{State: vmm.StateRunning, Detail: "qemu " + st.Status, NoCheckpoint: p.noCheckpoint(v)}, nil
	}
	return vmm.StatusResponse{State: vmm.StatePaused, Detail: "qemu " + st.Status, NoCheckpoint: p.noCheckpoint(v)}, nil
}

// Events implements vmm.EventStreamer.
func (p *Plugin) Events(ctx context.Context, _ vmm.EventsRequest) (<-chan vmm.Event, error) {
	return p.events.Subscribe(ctx), nil
}

// Shutdown implements sdk.Shutdowner: a machine still running when the
// plugin ends (its host died) goes with it, and so does its run directory
// with the guest's console log.
func (p *Plugin) Shutdown() {
	p.mu.Lock()
	v := p.vm
	p.mu.Unlock()
	if v == nil {
		return
	}
	if v.alive() {
		v.kill()
		select {
		case <-v.exited:
		case <-time.After(5 * time.Second):
		}
	}
	// reap would remove it too, but the process may end first.
	_ = os.RemoveAll(v.runDir)
}
