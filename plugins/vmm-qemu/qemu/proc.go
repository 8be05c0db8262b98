package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/soulpad/soulpad/plugins/vmm-qemu/qmp"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// proc is one running QEMU. It owns its process: it launches it, turns
// its QMP events into the plugin's, reaps it, and quits or kills it.
type proc struct {
	cmd        *exec.Cmd
	qmp        *qmp.Conn
	runDir     string
	spec       vmm.Spec
	machineDir string
	desc       Description
	hw         hardware
	tops       map[string]string
	// drives names QEMU's drive of each disk once a checkpoint switched
	// it to a new overlay (QEMU then names it by options, not by file).
	drives map[string]string
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

	// log is the plugin's; emit publishes the machine's events; gone is
	// told once QEMU has exited and been reaped.
	log  hclog.Logger
	emit func(vmm.Event)
	gone func(*proc)

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

// launch starts QEMU (qemuPath with the arguments args makes for the run
// directory) and connects QMP. QEMU cannot outlive the plugin
// (Pdeathsig); its stderr goes to the plugin's log.
func (v *proc) launch(ctx context.Context, qemuPath string, args func(runDir string) ([]string, error)) error {
	// QMP and console sockets and the console log: on tmpfs, not the
	// host's disk (the guest's console is the user's).
	dir, err := vmm.RunDir("qemu-", "qmp.sock")
	if err != nil {
		return err
	}
	v.runDir = dir
	argv, err := args(dir)
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	cmd := exec.Command(qemuPath, argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	v.log.Debug("starting QEMU", "args", strings.Join(argv, " "))
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("vmm-qemu: start %s: %w", qemuPath, err)
	}
	v.cmd, v.exited = cmd, make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			v.logStderr(sc.Text())
		}
		v.waitErr = cmd.Wait()
		close(v.exited)
		v.reap()
	}()
	return v.connect(ctx)
}

// logStderr logs a line QEMU wrote and keeps the last few for errors.
func (v *proc) logStderr(line string) {
	v.log.Warn("qemu: " + line)
	v.mu.Lock()
	v.stderr = append(v.stderr, line)
	if len(v.stderr) > 8 {
		v.stderr = v.stderr[1:]
	}
	v.mu.Unlock()
}

// connect dials QEMU's QMP socket, giving up when QEMU exits first.
func (v *proc) connect(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	go func() {
		select {
		case <-v.exited:
			cancel()
		case <-dctx.Done():
		}
	}()
	q, err := qmp.Dial(dctx, filepath.Join(v.runDir, "qmp.sock"))
	if err != nil {
		v.kill()
		<-v.exited
		if tail := v.stderrTail(); tail != "" {
			return fmt.Errorf("vmm-qemu: QEMU did not start: %s", tail)
		}
		return fmt.Errorf("vmm-qemu: QEMU did not start: %w", err)
	}
	v.qmp = q
	_ = os.Remove(filepath.Join(v.runDir, "machine.conf")) // read at start-up
	go v.watch()
	return nil
}

// watch turns QMP events into vmm events.
func (v *proc) watch() {
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
			v.emit(vmm.Event{Type: vmm.EventSleepRequested, Message: "the guest asked to sleep", Time: ev.Time})
		}
	}
}

// reap runs when QEMU has exited: it removes what the machine left and
// says how it ended.
func (v *proc) reap() {
	v.mu.Lock()
	expected, guestOff := v.expectExit, v.guestOff
	v.mu.Unlock()
	if v.qmp != nil {
		v.qmp.Close()
	}
	os.RemoveAll(v.runDir)
	v.dropMemory()
	v.gone(v)
	switch {
	case expected:
	case guestOff:
		v.emit(vmm.Event{Type: vmm.EventPoweredOff, Message: "the guest powered off", Time: time.Now()})
	default:
		v.emit(vmm.Event{Type: vmm.EventCrashed, Message: fmt.Sprintf("QEMU exited (%v): %s", v.waitErr, v.stderrTail()), Time: time.Now()})
	}
}

func (v *proc) kill() {
	v.mu.Lock()
	v.expectExit = true
	v.mu.Unlock()
	if v.cmd != nil && v.cmd.Process != nil {
		_ = v.cmd.Process.Kill()
	}
}

// quit asks QEMU to exit and waits; it kills QEMU if it does not.
func (v *proc) quit(ctx context.Context) {
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
		v.kill()
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
	pid := v.cmd.Process.Pid
	go func() {
		defer close(v.prefetched)
		prefetch(ctx, v.ramFile, func() uint64 { return majorFaults(pid) })
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

// console is where the machine's serial console and screen are.
func (v *proc) console() vmm.Console {
	c := vmm.Console{Socket: filepath.Join(v.runDir, "console.sock"), Log: filepath.Join(v.runDir, "console.log")}
	if hasScreen(v.spec) {
		c.Screen = filepath.Join(v.runDir, "screen.sock")
	}
	return c
}
