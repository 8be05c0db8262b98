// Package lv implements vmm-libvirt: the machine spec run as a transient
// libvirt domain. Disks are the same qcow2 overlay chains as vmm-qemu's
// (package diskchain), so a suspend point pairs with its disk state; the
// memory and device state is libvirt's save image, written into the vault
// with virDomainSaveFlags and read back with virDomainRestoreFlags.
package lv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
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
func New() *Plugin { return &Plugin{cfg: defaults()} }

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
			vmm.CapDiskFormatPrefix + "qcow2", vmm.CapDiskFormatPrefix + "raw", vmm.CapNetworkPrefix + "user", vmm.CapNetworkPrefix + "none"},
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

var eventLoop sync.Once

// connect opens the connection (the event loop is registered first, as
// libvirt requires for lifecycle events).
func (p *Plugin) connect() error {
	if p.conn != nil {
		if alive, err := p.conn.IsAlive(); err == nil && alive {
			return nil
		}
		p.closeConn()
	}
	var loopErr error
	eventLoop.Do(func() {
		if loopErr = libvirt.EventRegisterDefaultImpl(); loopErr == nil {
			go func() {
				for {
					if err := libvirt.EventRunDefaultImpl(); err != nil {
						time.Sleep(100 * time.Millisecond)
					}
				}
			}()
		}
	})
	if loopErr != nil {
		return fmt.Errorf("vmm-libvirt: event loop: %w", loopErr)
	}
	c, err := libvirt.NewConnect(p.cfg.URI)
	if err != nil {
		return fmt.Errorf("vmm-libvirt: cannot connect to libvirt at %s (is libvirtd running and the URI right? `virsh -c %s version` tells): %s: %w",
			p.cfg.URI, p.cfg.URI, lverr(err), sdk.ErrIncompatibleHost)
	}
	id, err := c.DomainEventLifecycleRegister(nil, p.onLifecycle)
	if err != nil {
		c.Close()
		return fmt.Errorf("vmm-libvirt: lifecycle events: %s", lverr(err))
	}
	p.conn, p.cbID = c, id
	p.reap()
	return nil
}

func (p *Plugin) closeConn() {
	if p.conn != nil {
		_ = p.conn.DomainEventDeregister(p.cbID)
		p.conn.Close()
		p.conn = nil
	}
}

// lverr is libvirt's own message.
func lverr(err error) string {
	var le libvirt.Error
	if errors.As(err, &le) {
		return le.Message
	}
	return err.Error()
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
	if _, err := exec.LookPath(p.cfg.QEMUImg); err != nil {
		return fmt.Errorf("vmm-libvirt: %s not found (install qemu-utils): %w", p.cfg.QEMUImg, sdk.ErrIncompatibleHost)
	}
	return nil
}

func (p *Plugin) dropOverlays(m *machine) { diskchain.Drop(m.machineDir, m.spec.Disks, m.tops) }

func (p *Plugin) commitTops(m *machine) error {
	return p.chain().Commit(m.machineDir, m.spec.Disks, m.tops)
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

func (p *Plugin) xml(m *machine) string {
	x := domainXML(m.name, p.cfg.MachineType, m.spec, m.machineDir, m.runDir, m.tops, func(d vmm.Disk) string { return diskchain.DiskDir(m.machineDir, d) })
	return strings.Replace(x, "</name>\n", "</name>\n  <metadata>"+ownerElement()+"</metadata>\n", 1)
}

// OwnerNS is the namespace of the metadata element that names the
// plugin process owning a domain.
const OwnerNS = "https://soulpad.dev/xmlns/vmm-libvirt/owner/1"

var ownerRE = regexp.MustCompile(`<(\w+:)?owner [^>]*pid=['"](\d+)['"][^>]*host=['"]([^'"]*)['"]`)

func ownerElement() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("<soulpad:owner xmlns:soulpad='%s' pid='%d' host='%s'/>", OwnerNS, os.Getpid(), esc(host))
}

// reap destroys domains this plugin started in a process that is gone
// (a crash, a kill): a domain outlives its plugin in libvirtd, and a
// machine nobody can suspend must not keep running and writing its disk.
// Domains of live soulpad processes, and of other hosts, are left alone.
func (p *Plugin) reap() {
	doms, err := p.conn.ListAllDomains(libvirt.CONNECT_LIST_DOMAINS_ACTIVE)
	if err != nil {
		return
	}
	host, _ := os.Hostname()
	for _, d := range doms {
		name, _ := d.GetName()
		meta, err := d.GetMetadata(libvirt.DOMAIN_METADATA_ELEMENT, OwnerNS, libvirt.DOMAIN_AFFECT_LIVE)
		if err == nil && strings.HasPrefix(name, "soulpad-") {
			if m := ownerRE.FindStringSubmatch(meta); m != nil && m[3] == host {
				pid, _ := strconv.Atoi(m[2])
				if pid > 0 && pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH {
					_ = d.Destroy()
				}
			}
		}
		d.Free()
	}
}

func (p *Plugin) console(m *machine) vmm.Console {
	c := vmm.Console{Socket: filepath.Join(m.runDir, "console.sock"), Log: filepath.Join(m.runDir, "console.log")}
	if m.screen {
		c.Screen = filepath.Join(m.runDir, screenSock)
	}
	return c
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
	if m.tops, err = p.chain().BootTops(ctx, req.MachineDir, req.Spec.Disks, req.From); err != nil {
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
	files, frozen, err := p.chain().Freeze(m.machineDir, req.StateDir, m.spec.Disks, m.tops)
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

// Resume implements vmm.VMM.
func (p *Plugin) Resume(ctx context.Context, req vmm.ResumeRequest) (vmm.ResumeResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.vm != nil {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-libvirt: resume: machine %s is running: %w", p.vm.spec.Name, sdk.ErrBusy)
	}
	if err := p.check(req.Spec, req.MachineDir); err != nil {
		return vmm.ResumeResponse{}, err
	}
	var desc Description
	if err := json.Unmarshal([]byte(req.Description), &desc); err != nil || desc.Format != 1 || desc.Plugin != "vmm-libvirt" {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-libvirt: resume: the point's machine description is not one of vmm-libvirt's: %w", sdk.ErrIncompatibleHost)
	}
	want := p.expected(req.Spec, desc.Libvirt)
	if want.CPU != desc.CPU || want.MemoryMiB != desc.MemoryMiB || want.VCPUs != desc.VCPUs {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-libvirt: resume: the state is from a different machine (cpu %s, %d MiB, %d vCPUs; now %s, %d MiB, %d vCPUs): %w",
			desc.CPU, desc.MemoryMiB, desc.VCPUs, want.CPU, want.MemoryMiB, want.VCPUs, sdk.ErrIncompatibleHost)
	}
	state := filepath.Join(req.StateDir, StateFile)
	st, err := os.Stat(state)
	if errors.Is(err, fs.ErrNotExist) {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-libvirt: resume: no %s in %s: %w", StateFile, req.StateDir, sdk.ErrNotFound)
	}
	if err != nil {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-libvirt: resume: %w", err)
	}
	if st.Size() == 0 {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-libvirt: resume: %s is empty: %w", state, sdk.ErrCorrupt)
	}
	timer := vmm.NewTimer()
	if err := p.connect(); err != nil {
		return vmm.ResumeResponse{}, err
	}
	saved, err := p.conn.DomainSaveImageGetXMLDesc(state, 0)
	if err != nil {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-libvirt: resume: the save image cannot be read (%s): %w", lverr(err), sdk.ErrCorrupt)
	}
	m, err := newMachine(req.Spec, req.MachineDir)
	if err != nil {
		return vmm.ResumeResponse{}, err
	}
	fail := func(err error) (vmm.ResumeResponse, error) {
		p.dropOverlays(m)
		os.RemoveAll(m.runDir)
		p.vm = nil
		return vmm.ResumeResponse{}, err
	}
	// The save image names the paths of the session that wrote it; the
	// vault is mounted elsewhere now and the disks get new top overlays.
	xml := strings.ReplaceAll(saved, desc.RunDir, m.runDir)
	if m.tops, err = p.chain().ResumeTops(ctx, req.MachineDir, req.StateDir, req.Spec.Disks, desc.Disks); err != nil {
		return fail(err)
	}
	for _, d := range req.Spec.Disks {
		old := filepath.Join(diskchain.DiskDir(desc.MachineDir, d), desc.Disks[d.Name])
		if !strings.Contains(xml, old) {
			return fail(fmt.Errorf("vmm-libvirt: resume: the save image does not use disk %s at %s: %w", d.Name, old, sdk.ErrIncompatibleHost))
		}
		xml = strings.ReplaceAll(xml, old, filepath.Join(diskchain.DiskDir(req.MachineDir, d), m.tops[d.Name]))
	}
	// The domain is this process's now.
	xml = ownerRE.ReplaceAllStringFunc(xml, func(string) string { return strings.TrimSuffix(ownerElement(), "/>") })
	// Paths under the old machine directory (kernel, initrd) move too.
	xml = strings.ReplaceAll(xml, desc.MachineDir+"/", req.MachineDir+"/")
	var flags libvirt.DomainSaveRestoreFlags = libvirt.DOMAIN_SAVE_RUNNING
	if p.cfg.BypassCache {
		flags |= libvirt.DOMAIN_SAVE_BYPASS_CACHE
	}
	m.name = domainName(xml)
	// The screen is what the saved domain had, whatever the spec says now.
	m.screen = strings.Contains(xml, "/"+screenSock+"'")
	if err := writeMachineConf(m.runDir, req.Spec); err != nil {
		return fail(err)
	}
	p.events.Reset()
	p.vm = m
	timer.Mark("prepare")
	err = p.conn.DomainRestoreFlags(state, xml, flags)
	removeMachineConf(m.runDir)
	if err != nil {
		return fail(fmt.Errorf("vmm-libvirt: resume: %s: %w", lverr(err), restoreErr(err)))
	}
	timer.Mark("restore")
	dom, err := p.conn.LookupDomainByName(m.name)
	if err != nil {
		return fail(fmt.Errorf("vmm-libvirt: resume: restored domain %s not found: %s", m.name, lverr(err)))
	}
	m.dom = dom
	if err := p.commitTops(m); err != nil {
		m.stopping = true
		_ = dom.Destroy()
		return fail(err)
	}
	return vmm.ResumeResponse{Console: p.console(m), CPUFeatures: x86cpu.Needed(req.Spec.CPUModel, nil), Phases: timer.Phases()}, nil
}

// restoreErr classifies a failed restore: a damaged image, or a host
// that cannot run it.
func restoreErr(err error) error {
	msg := strings.ToLower(lverr(err))
	for _, s := range []string{"corrupt", "truncat", "failed to read", "unexpected end", "load of migration failed", "input/output error", "invalid"} {
		if strings.Contains(msg, s) {
			return sdk.ErrCorrupt
		}
	}
	return sdk.ErrIncompatibleHost
}

func domainName(xml string) string {
	a := strings.Index(xml, "<name>")
	b := strings.Index(xml, "</name>")
	if a < 0 || b < a {
		return ""
	}
	return xml[a+len("<name>") : b]
}

func (p *Plugin) alive(m *machine) bool {
	if m.dom == nil {
		return false
	}
	st, _, err := m.dom.GetState()
	return err == nil && (st == libvirt.DOMAIN_RUNNING || st == libvirt.DOMAIN_PAUSED || st == libvirt.DOMAIN_BLOCKED)
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

func (p *Plugin) forget(m *machine) {
	if m == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.vm == m {
		p.vm = nil
	}
	if m.dom != nil {
		m.dom.Free()
		m.dom = nil
	}
	os.RemoveAll(m.runDir)
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

// onLifecycle turns libvirt's lifecycle events for our domain into vmm
// events.
func (p *Plugin) onLifecycle(_ *libvirt.Connect, d *libvirt.Domain, ev *libvirt.DomainEventLifecycle) {
	name, err := d.GetName()
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.vm
	if m == nil || m.dom == nil || m.name != name { // not ours, or not ours yet
		return
	}
	var e vmm.Event
	switch ev.Event {
	case libvirt.DOMAIN_EVENT_STOPPED:
		if m.stopping {
			return
		}
		// A domain restored from a save image has the saved one's name,
		// and the saved one's stop can come after this one started: a
		// stop of a domain that still runs is not this one's.
		if active, err := m.dom.IsActive(); err == nil && active {
			return
		}
		switch libvirt.DomainEventStoppedDetailType(ev.Detail) {
		case libvirt.DOMAIN_EVENT_STOPPED_CRASHED, libvirt.DOMAIN_EVENT_STOPPED_FAILED:
			e = vmm.Event{Type: vmm.EventCrashed, Message: "the machine stopped unexpectedly (libvirt: crashed or failed)"}
		default:
			e = vmm.Event{Type: vmm.EventPoweredOff, Message: "the guest powered off"}
		}
		p.vm = nil
		if m.dom != nil {
			m.dom.Free()
			m.dom = nil
		}
		os.RemoveAll(m.runDir)
	case libvirt.DOMAIN_EVENT_PMSUSPENDED:
		e = vmm.Event{Type: vmm.EventSleepRequested, Message: "the guest asked to sleep"}
	default:
		return
	}
	e.Time = time.Now()
	p.events.Publish(e)
}

// Events implements vmm.EventStreamer.
func (p *Plugin) Events(ctx context.Context, _ vmm.EventsRequest) (<-chan vmm.Event, error) {
	return p.events.Subscribe(ctx), nil
}

// KeepDisks implements vmm.DiskHistory.
func (p *Plugin) KeepDisks(_ context.Context, req vmm.KeepDisksRequest) (vmm.KeepDisksResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.vm != nil {
		return vmm.KeepDisksResponse{}, fmt.Errorf("vmm-libvirt: keep disks: a machine is running: %w", sdk.ErrBusy)
	}
	return p.chain().KeepDisks(req)
}

// CollectDisks implements vmm.DiskHistory.
func (p *Plugin) CollectDisks(_ context.Context, req vmm.CollectDisksRequest) (vmm.CollectDisksResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.vm != nil {
		return vmm.CollectDisksResponse{}, fmt.Errorf("vmm-libvirt: collect disks: a machine is running: %w", sdk.ErrBusy)
	}
	return p.chain().CollectDisks(req)
}
