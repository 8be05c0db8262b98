// Package lv implements vmm-libvirt: the machine spec run as a transient
// libvirt domain. Disks are the same qcow2 overlay chains as vmm-qemu's
// (package diskchain), so a suspend point pairs with its disk state; the
// memory and device state is libvirt's save image, written into the vault
// with virDomainSaveFlags and read back with virDomainRestoreFlags.
package lv

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/eventhub"
	"github.com/soulpad/soulpad/sdk/vmm"
	"github.com/soulpad/soulpad/sdk/vmm/diskchain"
	"github.com/soulpad/soulpad/sdk/vmm/x86cpu"
)

// Version is the plugin's version.
const Version = "0.1.0"

// StateFile is libvirt's save image inside a suspend point.
const StateFile = "state.libvirt"

// Config is the plugin's block in site.hcl.
type Config struct {
	// URI is the libvirt connection (default qemu:///system).
	URI string `json:"uri"`
	// BypassCache saves and restores without the host's page cache.
	BypassCache bool `json:"bypass_cache"`
	// MachineType is the domain's machine type (default "q35"; libvirt
	// records the versioned type in the save image).
	MachineType string `json:"machine_type"`
	// QEMUImg makes the disk overlays (default qemu-img from PATH).
	QEMUImg string `json:"qemu_img"`
}

// Description is what a suspend point records, as JSON.
type Description struct {
	Format     int               `json:"format"`
	Plugin     string            `json:"plugin"`
	Libvirt    uint32            `json:"libvirt_version"`
	CPU        string            `json:"cpu"`
	MemoryMiB  uint64            `json:"memory_mib"`
	VCPUs      int               `json:"vcpus"`
	Disks      map[string]string `json:"disks,omitempty"`
	MachineDir string            `json:"machine_dir,omitempty"`
	RunDir     string            `json:"run_dir,omitempty"`
}

func (d Description) String() string { b, _ := json.Marshal(d); return string(b) }

// Plugin is vmm-libvirt.
type Plugin struct {
	// History keeps and collects disk states (vmm.DiskHistory).
	diskchain.History
	mu     sync.Mutex
	cfg    Config
	conn   *libvirt.Connect
	cbID   int
	vm     *machine
	events eventhub.Hub
}

type machine struct {
	spec       vmm.Spec
	machineDir string
	runDir     string
	name       string
	dom        *libvirt.Domain
	tops       map[string]string
	// stopping is set while the plugin itself stops the domain (save,
	// power off), so the stop is not reported as the guest's.
	stopping bool
	// screen: the domain serves its screen on screen.sock.
	screen bool
}

// New returns the plugin.
func New() *Plugin {
	p := &Plugin{cfg: defaults()}
	p.History = diskchain.History{Chain: p.chain, Hold: func() (bool, func()) { p.mu.Lock(); return p.vm != nil, p.mu.Unlock }}
	return p
}

func defaults() Config {
	return Config{URI: "qemu:///system", MachineType: "q35", QEMUImg: "qemu-img"}
}

var (
	_ vmm.VMM           = (*Plugin)(nil)
	_ vmm.EventStreamer = (*Plugin)(nil)
	_ vmm.DiskHistory   = (*Plugin)(nil)
)

// Info implements sdk.Plugin.
func (p *Plugin) Info(context.Context, sdk.InfoRequest) (sdk.InfoResponse, error) {
	return sdk.InfoResponse{Name: "vmm-libvirt", Kind: sdk.KindVMM, Version: Version, APIVersions: []int{vmm.APIVersion},
		Capabilities: []string{vmm.CapEvents, vmm.CapDiskHistory,
			vmm.CapDiskFormatPrefix + "qcow2", vmm.CapDiskFormatPrefix + "raw", vmm.CapNetworkPrefix + "user", vmm.CapNetworkPrefix + "none",
			vmm.CapFirmwarePrefix + vmm.FirmwareBIOS, vmm.CapMedia},
		Description: "libvirt domains: save into the vault with virDomainSaveFlags, restore with virDomainRestoreFlags"}, nil
}

// Configure implements sdk.Plugin.
func (p *Plugin) Configure(_ context.Context, req sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	c := defaults()
	if err := req.Decode(&c); err != nil {
		return sdk.ConfigureResponse{}, fmt.Errorf("vmm-libvirt: %w", err)
	}
	if c.URI == "" {
		return sdk.ConfigureResponse{}, fmt.Errorf("vmm-libvirt: uri is empty (e.g. \"qemu:///system\"): %w", sdk.ErrInvalidConfig)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil && c.URI != p.cfg.URI {
		p.closeConn()
	}
	p.cfg = c
	return sdk.ConfigureResponse{}, nil
}

func (p *Plugin) chain() diskchain.Chain {
	return diskchain.Chain{QemuImg: p.cfg.QEMUImg, Plugin: "vmm-libvirt"}
}

func (p *Plugin) expected(spec vmm.Spec, lvVersion uint32) Description {
	cpu := spec.CPUModel
	if cpu == "" {
		cpu = "portable"
	}
	return Description{Format: 1, Plugin: "vmm-libvirt", Libvirt: lvVersion, CPU: cpu, MemoryMiB: spec.MemoryMiB, VCPUs: spec.VCPUs}
}

func (p *Plugin) check(spec vmm.Spec, machineDir string) error {
	if spec.Name == "" || spec.MemoryMiB == 0 {
		return fmt.Errorf("vmm-libvirt: the spec needs a name and memory: %w", sdk.ErrInvalidArgument)
	}
	if st, err := os.Stat(machineDir); err != nil || !st.IsDir() {
		return fmt.Errorf("vmm-libvirt: machine directory %s: %w", machineDir, sdk.ErrNotFound)
	}
	if _, err := spec.MediaPath(machineDir); err != nil {
		return fmt.Errorf("vmm-libvirt: %w", err)
	}
	if _, err := exec.LookPath(p.cfg.QEMUImg); err != nil {
		return fmt.Errorf("vmm-libvirt: %s not found (install qemu-utils): %w", p.cfg.QEMUImg, sdk.ErrIncompatibleHost)
	}
	return nil
}

func (p *Plugin) dropOverlays(m *machine) {
	diskchain.Drop(m.machineDir, diskchain.Disks(m.spec), m.tops)
}

func (p *Plugin) commitTops(m *machine) error {
	return p.chain().Commit(m.machineDir, diskchain.Disks(m.spec), m.tops)
}

func newMachine(spec vmm.Spec, machineDir string) (*machine, error) {
	// The console socket and log: on tmpfs, not the host's disk.
	run, err := vmm.RunDir("libvirt-", "console.sock")
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("soulpad-%s-%d", spec.Name, time.Now().UnixNano())
	return &machine{spec: spec, machineDir: machineDir, runDir: run, name: name, tops: map[string]string{}, screen: hasScreen(spec)}, nil
}

// Start implements vmm.VMM.
func (p *Plugin) Start(ctx context.Context, req vmm.StartRequest) (vmm.StartResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.vm != nil {
		return vmm.StartResponse{}, fmt.Errorf("vmm-libvirt: start: machine %s is running: %w", p.vm.spec.Name, sdk.ErrBusy)
	}
	if err := p.check(req.Spec, req.MachineDir); err != nil {
		return vmm.StartResponse{}, err
	}
	if err := p.connect(); err != nil {
		return vmm.StartResponse{}, err
	}
	m, err := newMachine(req.Spec, req.MachineDir)
	if err != nil {
		return vmm.StartResponse{}, err
	}
	fail := func(err error) (vmm.StartResponse, error) {
		p.dropOverlays(m)
		os.RemoveAll(m.runDir)
		return vmm.StartResponse{}, err
	}
	if m.tops, err = p.chain().BootTops(ctx, req.MachineDir, diskchain.Disks(req.Spec), req.From); err != nil {
		return fail(err)
	}
	if err := writeMachineConf(m.runDir, req.Spec); err != nil {
		return fail(err)
	}
	p.events.Reset()
	p.vm = m // events for this domain find it from here on
	dom, err := p.conn.DomainCreateXML(p.xml(m), 0)
	removeMachineConf(m.runDir)
	if err != nil {
		p.vm = nil
		return fail(fmt.Errorf("vmm-libvirt: start %s: %s: %w", req.Spec.Name, lverr(err), sdk.ErrIncompatibleHost))
	}
	m.dom = dom
	if err := p.commitTops(m); err != nil {
		_ = dom.Destroy()
		p.vm = nil
		return fail(err)
	}
	go p.tendGuest(m, false)
	ver, _ := p.conn.GetLibVersion()
	return vmm.StartResponse{Description: p.expected(req.Spec, ver).String(), Console: p.console(m), CPUFeatures: x86cpu.Needed(req.Spec.CPUModel, nil)}, nil
}

// Suspend implements vmm.VMM.
func (p *Plugin) Suspend(ctx context.Context, req vmm.SuspendRequest) (vmm.SuspendResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.vm
	if m == nil || !p.alive(m) {
		return vmm.SuspendResponse{}, fmt.Errorf("vmm-libvirt: suspend: no machine is running: %w", sdk.ErrNotRunning)
	}
	state := filepath.Join(req.StateDir, StateFile)
	var flags libvirt.DomainSaveRestoreFlags
	if p.cfg.BypassCache {
		flags |= libvirt.DOMAIN_SAVE_BYPASS_CACHE
	}
	m.stopping = true
	timer := vmm.NewTimer()
	if err := m.dom.SaveFlags(state, "", flags); err != nil {
		m.stopping = false
		_ = os.Remove(state)
		return vmm.SuspendResponse{}, fmt.Errorf("vmm-libvirt: suspend: %s", lverr(err))
	}
	timer.Mark("save")
	// libvirt wrote the image as root; sync it before the core seals it.
	if f, err := os.Open(state); err == nil {
		_ = f.Sync()
		f.Close()
	}
	timer.Mark("sync")
	ver, _ := p.conn.GetLibVersion()
	desc := p.expected(m.spec, ver)
	files, frozen, err := p.chain().Freeze(m.machineDir, req.StateDir, diskchain.Disks(m.spec), m.tops)
	if err != nil {
		return vmm.SuspendResponse{}, err
	}
	timer.Mark("disks")
	desc.Disks, desc.MachineDir, desc.RunDir = frozen, m.machineDir, m.runDir
	files = append([]string{StateFile}, files...)
	m.dom.Free()
	os.RemoveAll(m.runDir)
	p.vm = nil
	return vmm.SuspendResponse{Files: files, Description: desc.String(), Phases: timer.Phases(),
		Machine: fmt.Sprintf("libvirt %d.%d.%d, CPU %s", ver/1000000, ver/1000%1000, ver%1000, desc.CPU)}, nil
}

// PowerOff implements vmm.VMM.
func (p *Plugin) PowerOff(ctx context.Context, req vmm.PowerOffRequest) (vmm.PowerOffResponse, error) {
	p.mu.Lock()
	m := p.vm
	p.mu.Unlock()
	if m == nil || !p.alive(m) {
		p.forget(m)
		return vmm.PowerOffResponse{}, nil
	}
	m.stopping = true
	if !req.Force {
		if err := m.dom.Shutdown(); err == nil {
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) && p.alive(m) && ctx.Err() == nil {
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	if p.alive(m) {
		if err := m.dom.Destroy(); err != nil && p.alive(m) {
			return vmm.PowerOffResponse{}, fmt.Errorf("vmm-libvirt: power off: %s", lverr(err))
		}
	}
	p.forget(m)
	return vmm.PowerOffResponse{}, nil
}

// Status implements vmm.VMM.
func (p *Plugin) Status(context.Context, vmm.StatusRequest) (vmm.StatusResponse, error) {
	p.mu.Lock()
	m := p.vm
	p.mu.Unlock()
	if m == nil || m.dom == nil {
		return vmm.StatusResponse{State: vmm.StateStopped}, nil
	}
	st, _, err := m.dom.GetState()
	if err != nil {
		return vmm.StatusResponse{State: vmm.StateStopped, Detail: lverr(err)}, nil
	}
	switch st {
	case libvirt.DOMAIN_RUNNING, libvirt.DOMAIN_BLOCKED:
		return vmm.StatusResponse{State: vmm.StateRunning}, nil
	case libvirt.DOMAIN_PAUSED, libvirt.DOMAIN_PMSUSPENDED:
		return vmm.StatusResponse{State: vmm.StatePaused}, nil
	}
	return vmm.StatusResponse{State: vmm.StateStopped}, nil
}

// Events implements vmm.EventStreamer.
func (p *Plugin) Events(ctx context.Context, _ vmm.EventsRequest) (<-chan vmm.Event, error) {
	return p.events.Subscribe(ctx), nil
}
