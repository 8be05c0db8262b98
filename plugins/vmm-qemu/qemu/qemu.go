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
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/soulpad/soulpad/plugins/vmm-qemu/qmp"
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
	return &Plugin{log: log}
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
		Capabilities: []string{vmm.CapEvents, vmm.CapKVM, vmm.CapDiskHistory, vmm.CapProgress,
			vmm.CapDiskFormatPrefix + "qcow2", vmm.CapDiskFormatPrefix + "raw", vmm.CapNetworkPrefix + "user", vmm.CapNetworkPrefix + "none"},
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

// proc is a running QEMU.
type proc struct {
	cmd        *exec.Cmd
	qmp        *qmp.Conn
	runDir     string
	spec       vmm.Spec
	machineDir string
	desc       Description
	tops       map[string]string
	// ramFile is the running guest RAM file (mapped memory), or "".
	ramFile string
	// stopPrefetch ends the background read of ramFile; prefetched is
	// closed when it has ended.
	stopPrefetch context.CancelFunc
	prefetched   chan struct{}
	memOnce      sync.Once
	memDropped   bool // under mu
	exited       chan struct{}
	waitErr      error

	mu         sync.Mutex
	stderr     []string
	expectExit bool
	guestOff   bool
}

func (v *proc) stderrTail() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return strings.Join(v.stderr, "; ")
}

func (v *proc) alive() bool {
	select {
	case <-v.exited:
		return false
	default:
		return true
	}
}

// expected is the description this plugin would give spec.
func (p *Plugin) expected(spec vmm.Spec) Description {
	return Description{Format: 1, QEMUVersion: p.version, MachineType: p.machineType, CPU: cpuModel(spec),
		MemoryMiB: spec.MemoryMiB, VCPUs: spec.VCPUs, Devices: devices(spec)}
}

// devices is the canonical device list: it must be identical on resume.
func devices(spec vmm.Spec) string {
	var d []string
	for _, disk := range spec.Disks {
		d = append(d, "virtio-blk:"+disk.Name)
	}
	if spec.Network == "user" {
		d = append(d, "virtio-net:user")
	}
	d = append(d, "vga:std", "serial:1")
	return strings.Join(d, ",")
}

// hasDisplay says whether this QEMU has the display backend (gtk is a
// loadable module: Debian's qemu-system-gui). Without it a window is not
// opened, and the screen is on `soulpad view` only.
func (p *Plugin) hasDisplay(name string) bool {
	p.displaysOnce.Do(func() {
		out, _ := exec.Command(p.qemuPath, "-display", "help").CombinedOutput()
		p.displays = map[string]bool{}
		for _, l := range strings.Split(string(out), "\n") {
			p.displays[strings.TrimSpace(l)] = true
		}
		if !p.displays["gtk"] && (os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != "") {
			p.log.Warn("no window for the machine: QEMU's GTK display is not installed (Debian: qemu-system-gui); `soulpad view` shows the screen")
		}
	})
	return p.displays[name]
}

// hasScreen says whether the machine's screen is served on screen.sock.
func hasScreen(spec vmm.Spec) bool { return spec.Display == "vnc" || spec.Display == "auto" }

// memoryBackend is the -machine option that backs RAM with the file.
func memoryBackend(v *proc) string {
	if v.ramFile == "" {
		return ""
	}
	return ",memory-backend=pc.ram"
}

// mac derives a stable MAC address from the machine name.
func mac(name string) string {
	h := sha256.Sum256([]byte(name))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", h[0], h[1], h[2])
}

func (p *Plugin) args(v *proc, incoming bool) ([]string, error) {
	spec := v.spec
	accel := "tcg"
	if spec.Accelerator == "kvm" {
		accel = "kvm"
	}
	a := []string{
		"-nodefaults", "-no-user-config", "-no-reboot",
		"-name", spec.Name,
		"-machine", p.machineType + ",accel=" + accel + memoryBackend(v),
		"-cpu", v.desc.CPU,
		"-m", strconv.FormatUint(spec.MemoryMiB, 10),
		"-smp", strconv.Itoa(spec.VCPUs),
		"-rtc", "base=utc",
		"-vga", "std",
		"-chardev", "socket,id=qmp,path=" + filepath.Join(v.runDir, "qmp.sock") + ",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		"-chardev", "socket,id=ser0,path=" + filepath.Join(v.runDir, "console.sock") + ",server=on,wait=off,logfile=" + filepath.Join(v.runDir, "console.log") + ",logappend=on",
		"-serial", "chardev:ser0",
	}
	if v.ramFile != "" {
		a = append(a, memoryArgs(v.ramFile, spec.MemoryMiB)...)
	}
	if spec.Display == "auto" && (os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != "") && p.hasDisplay("gtk") {
		a = append(a, "-display", "gtk")
	} else {
		a = append(a, "-display", "none")
	}
	if hasScreen(spec) {
		// The screen for `soulpad view`, on a socket in the private run
		// directory: no port, no password to leak.
		a = append(a, "-vnc", "unix:"+filepath.Join(v.runDir, "screen.sock"))
	}
	for _, d := range spec.Disks {
		top := v.tops[d.Name]
		a = append(a, "-drive", fmt.Sprintf("file=%s,if=none,id=disk-%s,format=qcow2,cache=writeback,discard=unmap",
			filepath.Join(diskchain.DiskDir(v.machineDir, d), top), d.Name),
			"-device", fmt.Sprintf("virtio-blk-pci,drive=disk-%s,id=vblk-%s", d.Name, d.Name))
	}
	if spec.Network == "user" {
		a = append(a, "-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0,mac="+mac(spec.Name))
	}
	path := func(f string) string {
		if filepath.IsAbs(f) {
			return f
		}
		return filepath.Join(v.machineDir, f)
	}
	if spec.Kernel != "" {
		a = append(a, "-kernel", path(spec.Kernel))
		if spec.Initrd != "" {
			a = append(a, "-initrd", path(spec.Initrd))
		}
		cmdline := spec.Cmdline
		if cmdline == "" {
			cmdline = "console=ttyS0"
		}
		// The guest's kernel command line stays off QEMU's argv, which any
		// local user can read in /proc: QEMU reads it from a file in the
		// private run directory (removed once QEMU is up).
		if !strings.ContainsAny(cmdline, "\"\n\\") {
			conf := filepath.Join(v.runDir, "machine.conf")
			if err := os.WriteFile(conf, []byte("[machine]\n  append = \""+cmdline+"\"\n"), 0o600); err != nil {
				return nil, err
			}
			a = append(a, "-readconfig", conf)
		} else {
			a = append(a, "-append", cmdline)
		}
	}
	if incoming {
		a = append(a, "-S", "-incoming", "defer")
	}
	return append(a, p.cfg.ExtraArgs...), nil
}

// launch starts QEMU for v and connects QMP; p.mu is held.
func (p *Plugin) launch(ctx context.Context, v *proc, incoming bool) error {
	// QMP and console sockets and the console log: on tmpfs, not the
	// host's disk (the guest's console is the user's).
	dir, err := vmm.RunDir("qemu-", "qmp.sock")
	if err != nil {
		return err
	}
	v.runDir = dir
	args, err := p.args(v, incoming)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.qemuPath, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	p.log.Debug("starting QEMU", "args", strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("vmm-qemu: start %s: %w", p.qemuPath, err)
	}
	v.cmd, v.exited = cmd, make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.log.Warn("qemu: " + line)
			v.mu.Lock()
			v.stderr = append(v.stderr, line)
			if len(v.stderr) > 8 {
				v.stderr = v.stderr[1:]
			}
			v.mu.Unlock()
		}
		v.waitErr = cmd.Wait()
		close(v.exited)
		p.reap(v)
	}()
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	go func() {
		select {
		case <-v.exited:
			cancel()
		case <-dctx.Done():
		}
	}()
	q, err := qmp.Dial(dctx, filepath.Join(dir, "qmp.sock"))
	if err != nil {
		p.kill(v)
		<-v.exited
		if tail := v.stderrTail(); tail != "" {
			return fmt.Errorf("vmm-qemu: QEMU did not start: %s", tail)
		}
		return fmt.Errorf("vmm-qemu: QEMU did not start: %w", err)
	}
	v.qmp = q
	_ = os.Remove(filepath.Join(dir, "machine.conf")) // read at start-up
	go p.watch(v)
	return nil
}

// watch turns QMP events into vmm events.
func (p *Plugin) watch(v *proc) {
	for ev := range v.qmp.Events() {
		switch ev.Name {
		case "SHUTDOWN":
			var d struct {
				Guest bool `json:"guest"`
			}
			_ = json.Unmarshal(ev.Data, &d)
			if d.Guest {
				v.mu.Lock()
				v.guestOff = true
				v.mu.Unlock()
			}
		case "SUSPEND":
			p.emit(vmm.Event{Type: vmm.EventSleepRequested, Message: "the guest asked to sleep", Time: ev.Time})
		}
	}
}

// reap runs when QEMU has exited.
func (p *Plugin) reap(v *proc) {
	v.mu.Lock()
	expected, guestOff := v.expectExit, v.guestOff
	v.mu.Unlock()
	if v.qmp != nil {
		v.qmp.Close()
	}
	os.RemoveAll(v.runDir)
	v.dropMemory()
	p.mu.Lock()
	if p.vm == v {
		p.vm = nil
	}
	p.mu.Unlock()
	switch {
	case expected:
	case guestOff:
		p.emit(vmm.Event{Type: vmm.EventPoweredOff, Message: "the guest powered off", Time: time.Now()})
	default:
		p.emit(vmm.Event{Type: vmm.EventCrashed, Message: fmt.Sprintf("QEMU exited (%v): %s", v.waitErr, v.stderrTail()), Time: time.Now()})
	}
}

func (p *Plugin) kill(v *proc) {
	v.mu.Lock()
	v.expectExit = true
	v.mu.Unlock()
	if v.cmd != nil && v.cmd.Process != nil {
		_ = v.cmd.Process.Kill()
	}
}

// quit asks QEMU to exit and waits; it kills QEMU if it does not.
func (p *Plugin) quit(ctx context.Context, v *proc) {
	v.mu.Lock()
	v.expectExit = true
	v.mu.Unlock()
	if v.qmp != nil {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = v.qmp.Execute(qctx, "quit", nil, nil)
		cancel()
	}
	select {
	case <-v.exited:
	case <-time.After(10 * time.Second):
		p.kill(v)
		<-v.exited
	}
	v.dropMemory()
}

// startPrefetch reads the running RAM file ahead of the guest, unless
// the machine is already gone.
func (v *proc) startPrefetch() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.memDropped {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	v.stopPrefetch, v.prefetched = cancel, make(chan struct{})
	go func() {
		defer close(v.prefetched)
		prefetch(ctx, v.ramFile)
	}()
}

// dropMemory, once QEMU has exited, ends the prefetch and removes the
// running RAM file: points hold their own clones.
func (v *proc) dropMemory() {
	v.memOnce.Do(func() {
		v.mu.Lock()
		v.memDropped = true
		stop, done := v.stopPrefetch, v.prefetched
		v.mu.Unlock()
		if stop != nil {
			stop()
			<-done
		}
		if v.ramFile != "" {
			_ = os.Remove(v.ramFile)
		}
	})
}

func (p *Plugin) emit(ev vmm.Event) { p.events.Publish(ev) }

func (p *Plugin) console(v *proc) vmm.Console {
	c := vmm.Console{Socket: filepath.Join(v.runDir, "console.sock"), Log: filepath.Join(v.runDir, "console.log")}
	if hasScreen(v.spec) {
		c.Screen = filepath.Join(v.runDir, "screen.sock")
	}
	return c
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
	tops, err := p.chain().BootTops(ctx, req.MachineDir, req.Spec.Disks, req.From)
	if err != nil {
		return vmm.StartResponse{}, err
	}
	v := &proc{spec: req.Spec, machineDir: req.MachineDir, desc: p.expected(req.Spec), tops: tops}
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
	p.events.Reset()
	if err := p.launch(ctx, v, false); err != nil {
		p.dropOverlays(v)
		if v.ramFile != "" {
			os.Remove(v.ramFile)
		}
		return vmm.StartResponse{}, err
	}
	if err := p.commitTops(v); err != nil {
		p.quit(ctx, v)
		return vmm.StartResponse{}, err
	}
	p.vm = v
	return vmm.StartResponse{Description: v.desc.String(), Console: p.console(v), CPUFeatures: x86cpu.Needed(req.Spec.CPUModel, nil)}, nil
}

// commitTops makes v's overlays the disks' current state.
func (p *Plugin) commitTops(v *proc) error {
	return p.chain().Commit(v.machineDir, v.spec.Disks, v.tops)
}

// dropOverlays removes overlays made for a machine that did not start.
func (p *Plugin) dropOverlays(v *proc) { diskchain.Drop(v.machineDir, v.spec.Disks, v.tops) }

type migrateInfo struct {
	Status   string `json:"status"`
	ErrorMsg string `json:"error-desc"`
	RAM      *struct {
		Transferred int64 `json:"transferred"`
	} `json:"ram"`
}

// waitMigration polls until the migration completes or fails.
func waitMigration(ctx context.Context, v *proc) error {
	for {
		var mi migrateInfo
		if err := v.qmp.Execute(ctx, "query-migrate", nil, &mi); err != nil {
			return err
		}
		switch mi.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("migration %s: %s", mi.Status, mi.ErrorMsg)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-v.exited:
			return errors.New("QEMU exited")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Suspend implements vmm.VMM.
func (p *Plugin) Suspend(ctx context.Context, req vmm.SuspendRequest) (vmm.SuspendResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.prog.reset()
	v := p.vm
	if v == nil || !v.alive() {
		return vmm.SuspendResponse{}, fmt.Errorf("vmm-qemu: suspend: %w", sdk.ErrNotRunning)
	}
	// The state goes through a pipe: the plugin writes it into the file
	// and checksums it on the way, so nobody has to read it back.
	var pr, pw *os.File
	var copied chan error
	var sum *vmm.SumWriter
	fail := func(err error) (vmm.SuspendResponse, error) {
		if pw != nil {
			pw.Close()
		}
		if pr != nil {
			pr.Close() // a copier still waiting on QEMU gives up
		}
		if copied != nil {
			<-copied
		}
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
	// The capability is set either way: a resume may have turned it on.
	mapped := v.ramFile != "" && p.cfg.Memory != memoryStream
	if err := setIgnoreShared(ctx, v, mapped); err != nil {
		return fail(err)
	}
	bw := int64(p.cfg.MaxBandwidthMiBps) << 20
	if bw == 0 {
		bw = 1 << 40 // no cap: the disk is the limit
	}
	if err := v.qmp.Execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": bw}, nil); err != nil {
		return fail(err)
	}
	f, err := os.OpenFile(filepath.Join(req.StateDir, StateFile), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	if pr, pw, err = os.Pipe(); err != nil {
		return fail(err)
	}
	defer pr.Close()
	// A larger pipe, and large reads: fewer wake-ups on both sides.
	_, _ = unix.FcntlInt(pw.Fd(), unix.F_SETPIPE_SZ, 1<<20)
	sum = vmm.NewSumWriter(StateFile, f, 0)
	copied = make(chan error, 1)
	// About the guest's RAM goes through (less when it is mapped).
	total := v.spec.MemoryMiB << 20
	if mapped {
		total = 0
	}
	p.prog.start("suspend", total)
	go func() {
		// (struct{io.Reader} hides pr's WriteTo, which would copy in
		// 32 KiB pieces.)
		_, err := io.CopyBuffer(p.prog.counter(sum), struct{ io.Reader }{pr}, make([]byte, 1<<20))
		if err != nil {
			// The state cannot be written (the vault's file system gave
			// up): close the pipe, or QEMU waits on it forever; the
			// migration then fails.
			pr.Close()
		}
		copied <- err
	}()
	err = v.qmp.ExecuteWithFD(ctx, "getfd", map[string]any{"fdname": "soulpad-suspend"}, int(pw.Fd()))
	pw.Close() // QEMU has its own copy now: EOF comes when it closes it
	pw = nil
	if err != nil {
		return fail(err)
	}
	if err := v.qmp.Execute(ctx, "migrate", map[string]any{"uri": "fd:soulpad-suspend"}, nil); err != nil {
		return fail(err)
	}
	if err := waitMigration(ctx, v); err != nil {
		return fail(err)
	}
	// QEMU closes the stream once the migration completes; if it has not
	// (yet), quitting it does.
	var cerr error
	select {
	case cerr = <-copied:
	case <-time.After(5 * time.Second):
		p.quit(ctx, v)
		cerr = <-copied
	}
	copied = nil
	if cerr != nil {
		return fail(cerr)
	}
	timer.Mark("state")
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	var ramFiles []string
	if mapped {
		// The pages the guest changed reach the pad now; then the file
		// becomes the point's (QEMU is stopped and writes no more of it;
		// its cached pages go with it, so that sealing the point reads
		// them from memory, not from the pad).
		if err := syncFile(v.ramFile); err != nil {
			return fail(err)
		}
		timer.Mark("sync")
		if err := moveFile(ctx, filepath.Join(req.StateDir, RAMFile), v.ramFile); err != nil {
			return fail(err)
		}
		timer.Mark("move")
		ramFiles = []string{RAMFile}
	} else {
		timer.Mark("sync")
	}
	p.quit(ctx, v)
	timer.Mark("quit")
	desc := v.desc
	if !mapped {
		desc.Memory = ""
	}
	files, frozen, err := p.chain().Freeze(v.machineDir, req.StateDir, v.spec.Disks, v.tops)
	if err != nil {
		return vmm.SuspendResponse{}, err
	}
	timer.Mark("disks")
	desc.Disks = frozen
	files = append(append([]string{StateFile}, ramFiles...), files...)
	p.vm = nil
	// The state is checked as it is loaded, at resume (OnLoad).
	stateSum := sum.Sum()
	stateSum.OnLoad = true
	sums := []vmm.FileSum{stateSum}
	if len(ramFiles) > 0 {
		// Resume maps it: the core checks it beside the running guest.
		sums = append(sums, vmm.FileSum{Name: RAMFile, Mapped: true})
	}
	return vmm.SuspendResponse{Files: files, Description: desc.String(), Sums: sums, Phases: timer.Phases(),
		Machine: fmt.Sprintf("QEMU %s, %s", desc.QEMUVersion, desc.MachineType)}, nil
}

// Resume implements vmm.VMM.
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
	var desc Description
	if err := json.Unmarshal([]byte(req.Description), &desc); err != nil || desc.Format != 1 {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-qemu: resume: the point's machine description is not one of vmm-qemu's: %w", sdk.ErrIncompatibleHost)
	}
	want := p.expected(req.Spec)
	want.MachineType = desc.MachineType
	if diff := desc.compatible(want); diff != "" {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-qemu: resume: the state is from a different machine: %s: %w", diff, sdk.ErrIncompatibleHost)
	}
	if !p.hasMachineType(ctx, desc.MachineType) {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-qemu: resume: this QEMU (%s) has no machine type %s, which the point needs: %w", p.version, desc.MachineType, sdk.ErrIncompatibleHost)
	}
	state := filepath.Join(req.StateDir, StateFile)
	st, err := os.Stat(state)
	if errors.Is(err, fs.ErrNotExist) {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-qemu: resume: no %s in %s: %w", StateFile, req.StateDir, sdk.ErrNotFound)
	}
	if err != nil {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-qemu: resume: %w", err)
	}
	if st.Size() == 0 {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-qemu: resume: %s is empty: %w", state, sdk.ErrCorrupt)
	}
	saved := p.machineType
	p.machineType = desc.MachineType
	defer func() { p.machineType = saved }()

	timer := vmm.NewTimer()
	tops, err := p.chain().ResumeTops(ctx, req.MachineDir, req.StateDir, req.Spec.Disks, desc.Disks)
	if err != nil {
		return vmm.ResumeResponse{}, err
	}
	v := &proc{spec: req.Spec, machineDir: req.MachineDir, desc: want, tops: tops}
	// A mapped point's RAM is cloned into a new running file; a stream
	// point loads into a new file when this vault maps memory (its next
	// suspend is then mapped), or into QEMU's own RAM.
	mode := memoryStream
	if desc.Memory == memoryMapped {
		mode = memoryMapped
	} else if mode, err = p.memoryMode(req.MachineDir); err != nil {
		p.dropOverlays(v)
		return vmm.ResumeResponse{}, err
	}
	if mode == memoryMapped {
		from := ""
		if desc.Memory == memoryMapped {
			from = filepath.Join(req.StateDir, RAMFile)
		}
		if err := prepareRAM(ctx, v, from); err != nil {
			p.dropOverlays(v)
			return vmm.ResumeResponse{}, fmt.Errorf("vmm-qemu: resume: %w", err)
		}
	}
	timer.Mark("prepare")
	p.events.Reset()
	if err := p.launch(ctx, v, true); err != nil {
		p.dropOverlays(v)
		if v.ramFile != "" {
			os.Remove(v.ramFile)
		}
		return vmm.ResumeResponse{}, err
	}
	timer.Mark("launch")
	fail := func(err error) (vmm.ResumeResponse, error) {
		gone := errors.Is(err, qmp.ErrClosed)
		select {
		case <-v.qmp.Done():
			gone = true
		default:
		}
		if gone {
			// QEMU is going away: let it finish so its last words are read.
			select {
			case <-v.exited:
			case <-time.After(5 * time.Second):
			}
		}
		alive := v.alive()
		p.quit(context.WithoutCancel(ctx), v)
		p.dropOverlays(v)
		if tail := v.stderrTail(); !alive && tail != "" {
			return vmm.ResumeResponse{}, fmt.Errorf("vmm-qemu: resume: the saved state did not load (%s): %w", tail, sdk.ErrCorrupt)
		}
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-qemu: resume: %w", err)
	}
	f, err := os.Open(state)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	// With the point's sum of the state, QEMU reads it through a pipe
	// and the plugin checks it on the way: one read, and the guest does
	// not run unless it matched.
	var loaded *stateCheck
	fd := int(f.Fd())
	if want, ok := findSum(req.Sums, StateFile); ok {
		p.prog.start("resume", want.Size)
		if loaded, err = checkWhileLoading(f, want, p.prog.counter); err != nil {
			return fail(err)
		}
		defer loaded.close()
		fd = loaded.fd()
	}
	err = v.qmp.ExecuteWithFD(ctx, "getfd", map[string]any{"fdname": "soulpad-resume"}, fd)
	loaded.sent()
	if err != nil {
		return fail(err)
	}
	if desc.Memory == memoryMapped {
		// Both ends must agree that RAM is not in the stream.
		if err := setIgnoreShared(ctx, v, true); err != nil {
			return fail(err)
		}
	}
	if err := v.qmp.Execute(ctx, "migrate-incoming", map[string]any{"uri": "fd:soulpad-resume"}, nil); err != nil {
		return fail(err)
	}
	if err := waitIncoming(ctx, v); err != nil {
		return fail(err)
	}
	if err := loaded.verify(); err != nil {
		return fail(err)
	}
	timer.Mark("state")
	if err := v.qmp.Execute(ctx, "cont", nil, nil); err != nil {
		return fail(err)
	}
	timer.Mark("cont")
	if err := p.commitTops(v); err != nil {
		return fail(err)
	}
	if desc.Memory == memoryMapped {
		// The guest faults its pages in as it touches them; read the rest
		// ahead, so that it does not wait for each.
		v.startPrefetch()
	}
	p.vm = v
	return vmm.ResumeResponse{Console: p.console(v), CPUFeatures: x86cpu.Needed(req.Spec.CPUModel, nil), Phases: timer.Phases()}, nil
}

// setIgnoreShared keeps shared (file-backed) RAM out of the migration
// stream (on), or puts it in (off), when v's RAM is a file.
func setIgnoreShared(ctx context.Context, v *proc, on bool) error {
	if v.ramFile == "" {
		return nil
	}
	return v.qmp.Execute(ctx, "migrate-set-capabilities", map[string]any{
		"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": on}}}, nil)
}

// waitIncoming waits until the incoming state has loaded (the machine is
// then paused, because of -S) or QEMU gave up.
func waitIncoming(ctx context.Context, v *proc) error {
	for {
		var st struct {
			Status string `json:"status"`
		}
		if err := v.qmp.Execute(ctx, "query-status", nil, &st); err != nil {
			return err
		}
		switch st.Status {
		case "paused", "running", "postmigrate":
			return nil
		case "inmigrate", "prelaunch":
		default:
			return fmt.Errorf("unexpected state %q while loading", st.Status)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-v.exited:
			return errors.New("QEMU exited while loading the state")
		case <-time.After(5 * time.Millisecond):
		}
	}
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
	p.quit(ctx, v)
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
		return vmm.StatusResponse{State: vmm.StateRunning, Detail: "qemu " + st.Status}, nil
	}
	return vmm.StatusResponse{State: vmm.StatePaused, Detail: "qemu " + st.Status}, nil
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
		return vmm.KeepDisksResponse{}, fmt.Errorf("vmm-qemu: keep disks: a machine is running: %w", sdk.ErrBusy)
	}
	return p.chain().KeepDisks(req)
}

// CollectDisks implements vmm.DiskHistory.
func (p *Plugin) CollectDisks(_ context.Context, req vmm.CollectDisksRequest) (vmm.CollectDisksResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.vm != nil {
		return vmm.CollectDisksResponse{}, fmt.Errorf("vmm-qemu: collect disks: a machine is running: %w", sdk.ErrBusy)
	}
	return p.chain().CollectDisks(req)
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
		p.kill(v)
		select {
		case <-v.exited:
		case <-time.After(5 * time.Second):
		}
	}
	// reap would remove it too, but the process may end first.
	_ = os.RemoveAll(v.runDir)
}
