// Package bench is `soulpad bench`: the SoulPad paper's tables (MobiSys
// 2005: Table 2, suspend and resume latency by pad; Tables 3 and 4, the
// stages; Table 5, the cost of encryption) measured again here, through
// the soulpad command as a user runs it, on a pad that is a throttled loop
// device, with the published numbers beside ours.
package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/soulpad/soulpad/internal/proccpu"
	"github.com/soulpad/soulpad/sdk/ownerpid"
)

// Plan is what to measure.
type Plan struct {
	Soulpad string // the soulpad binary
	Config  string // the site config (--config; "" the built-in one)
	// Cmdline is the guest's kernel command line from the config; the
	// bench adds soulpad.dirty_mib (the demo guest fills that much RAM).
	Cmdline  string
	SizesMiB []int64
	Speeds   []Speed
	Crypts   []string
	Reps     int
	Dir      string // scratch: pad images
	Log      io.Writer
}

// Cell is one measurement.
type Cell struct {
	MemoryMiB  int64   `json:"memory_mib"`
	Speed      string  `json:"pad_speed"`
	Crypt      string  `json:"crypt"`
	Rep        int     `json:"rep"`
	Suspend1   float64 `json:"suspend_s"`
	Resume     float64 `json:"resume_to_running_s"`
	ResumeTick float64 `json:"resume_to_tick_s"`
	Suspend2   float64 `json:"second_suspend_s"`
	Written1   float64 `json:"suspend_mib_to_pad"`
	Written2   float64 `json:"second_suspend_mib_to_pad"`
	// CPU seconds (user and system) of soulpad run, its plugins and QEMU:
	// over each suspend, and from the start of the resuming run to the
	// guest's next tick.
	Suspend1CPU   float64 `json:"suspend_cpu_s"`
	ResumeTickCPU float64 `json:"resume_to_tick_cpu_s"`
	Suspend2CPU   float64 `json:"second_suspend_cpu_s"`
	// Read1 and Read2: what each suspend read back from the pad.
	Read1 float64 `json:"suspend_mib_from_pad"`
	Read2 float64 `json:"second_suspend_mib_from_pad"`
	// The pad as measured (direct I/O, as throttled), MiB/s.
	PadReadMiBs  float64 `json:"pad_read_mib_s"`
	PadWriteMiBs float64 `json:"pad_write_mib_s"`
	// ColdStart is the cold boot's time from `soulpad run` to a running
	// machine: the stages and QEMU's start, with no state to load.
	ColdStart float64 `json:"cold_start_s"`
	// ReadTick is what the resuming run read from the pad up to the
	// guest's next tick, ReadSession up to the end of the second suspend,
	// and Touched the RAM the first point holds on the pad (its mapped
	// memory; 0 when streamed), MiB.
	ReadTick    float64 `json:"resume_mib_from_pad_to_tick"`
	ReadSession float64 `json:"session_mib_from_pad"`
	Touched     float64 `json:"memory_touched_mib"`
	// The ratios to the pad's limits (GoalTable).
	Suspend2Ratio float64 `json:"second_suspend_to_limit"`
	TickRatio     float64 `json:"tick_to_limit"`
	ReadsRatio    float64 `json:"reads_to_touched"`
	// Stages are the resumed session's stage times from the journal,
	// Suspend2Phases its suspend's phases.
	Stages         map[string]float64 `json:"stages_s"`
	Suspend2Phases map[string]float64 `json:"second_suspend_phases_s,omitempty"`
	Error          string             `json:"error,omitempty"`
}

// Estimate is about how long the plan takes here (TCG): the guest fills
// half its RAM at about 8 MiB/s, and each cell boots, suspends, resumes
// and suspends again.
func (p Plan) Estimate() time.Duration {
	var d time.Duration
	for _, s := range p.SizesMiB {
		per := 25*time.Second + time.Duration(s/2/8)*time.Second
		for _, sp := range p.Speeds {
			io := time.Duration(0)
			if sp.BytesPerSecond > 0 {
				io = time.Duration(float64(3*s<<20)/float64(sp.BytesPerSecond)) * time.Second
			}
			d += time.Duration(len(p.Crypts)*p.Reps) * (per + io)
		}
	}
	return d
}

// Run measures every cell, calling done after each.
func (p Plan) Run(ctx context.Context, done func(i, n int, c Cell)) []Cell {
	var cells []Cell
	n := len(p.SizesMiB) * len(p.Speeds) * len(p.Crypts) * p.Reps
	i := 0
	for _, size := range p.SizesMiB {
		for _, sp := range p.Speeds {
			for _, crypt := range p.Crypts {
				for rep := 1; rep <= p.Reps; rep++ {
					if ctx.Err() != nil {
						return cells
					}
					c := Cell{MemoryMiB: size, Speed: sp.Name, Crypt: crypt, Rep: rep}
					if err := p.cell(ctx, &c, sp); err != nil {
						c.Error = err.Error()
					}
					cells = append(cells, c)
					i++
					if done != nil {
						done(i, n, c)
					}
				}
			}
		}
	}
	return cells
}

func (p Plan) cell(ctx context.Context, c *Cell, sp Speed) error {
	dir, disk, done, err := p.newCellPad(3*c.MemoryMiB + 1024)
	if err != nil {
		return err
	}
	defer done()
	env, cli, err := p.padEnv(ctx, dir, disk, c.Crypt, c.MemoryMiB, 2*c.MemoryMiB+512,
		fmt.Sprintf("SOULPAD_MACHINE_CMDLINE=%s soulpad.dirty_mib=%d", p.Cmdline, dirtyMiB(c.MemoryMiB)))
	if err != nil {
		return err
	}
	if _, err := cli("init", "--no-carry-plugins"); err != nil {
		return err
	}
	if err := disk.Throttle(sp); err != nil {
		return err
	}
	if c.PadReadMiBs, c.PadWriteMiBs, err = disk.measure(); err != nil {
		return err
	}

	// Cold boot; the guest fills half its RAM; the first suspend.
	t := time.Now()
	run, err := p.startRunning(ctx, env, 3*time.Minute)
	if err != nil {
		return err
	}
	c.ColdStart = time.Since(t).Seconds()
	defer run.kill()
	// Filling RAM runs at a few MiB/s under TCG.
	if _, err := waitConsole(ctx, cli, run, "soulpad-guest: dirtied", 0, time.Minute+time.Duration(dirtyMiB(c.MemoryMiB))*time.Second); err != nil {
		return err
	}
	last, err := waitConsole(ctx, cli, run, "soulpad-counter", 0, 2*time.Minute)
	if err != nil {
		return err
	}
	return p.walk(ctx, c, env, cli, disk, run, last)
}

// newCellPad makes a cell's scratch directory, marked as this bench's (a
// later bench undoes what it leaves if it is killed), with a pad disk of
// padMiB in it; done removes both.
func (p Plan) newCellPad(padMiB int64) (dir string, disk *PadDisk, done func(), err error) {
	if dir, err = os.MkdirTemp(p.Dir, "soulpad-bench-"); err != nil {
		return "", nil, nil, err
	}
	if err := ownerpid.Mark(filepath.Join(dir, pidFile)); err != nil {
		os.RemoveAll(dir)
		return "", nil, nil, err
	}
	if disk, err = NewPadDisk(dir, padMiB); err != nil {
		os.RemoveAll(dir)
		return "", nil, nil, err
	}
	return dir, disk, func() { disk.Close(); os.RemoveAll(dir) }, nil
}

// walk is the part of the walk every cell measures, from a running
// machine whose counter has shown last: the suspend (timed); the pad
// unplugged and plugged in again (nothing cached); the resume, timed to
// "running" and to the guest's next tick; the second suspend (what
// changed); the stages from the journal.
func (p Plan) walk(ctx context.Context, c *Cell, env []string, cli func(...string) (string, error), disk *PadDisk, run *running, last int) error {
	r0, w0 := disk.io()
	cpu0 := proccpu.Tree(run.cmd.Process.Pid)
	t := time.Now()
	if _, err := cli("suspend", "--wait"); err != nil {
		return err
	}
	c.Suspend1 = time.Since(t).Seconds()
	r1, w1 := disk.io()
	c.Read1, c.Written1 = float64(r1-r0)/(1<<20), float64(w1-w0)/(1<<20)
	if err := run.end(); err != nil {
		return err
	}
	c.Suspend1CPU = run.cpu() - cpu0
	c.Touched, _ = lastSuspend(filepath.Join(disk.Mount, "pad"))

	// Unplug and plug in again (nothing cached), resume.
	if err := disk.Unplug(); err != nil {
		return err
	}
	if err := disk.Plug(); err != nil {
		return err
	}
	plugged, _ := disk.io()
	t = time.Now()
	run, err := p.startRunning(ctx, env, 10*time.Minute)
	if err != nil {
		return err
	}
	defer run.kill()
	c.Resume = time.Since(t).Seconds()
	if !strings.Contains(run.text(), "resumed ") {
		return fmt.Errorf("the second run did not resume: %s", lastLine(run.text()))
	}
	if _, err := waitConsole(ctx, cli, run, "soulpad-counter", last, 5*time.Minute); err != nil {
		return err
	}
	c.ResumeTick = time.Since(t).Seconds()
	c.ResumeTickCPU = proccpu.Tree(run.cmd.Process.Pid)
	r, _ := disk.io()
	c.ReadTick = float64(r-plugged) / (1 << 20)

	// The second suspend: what changed since the first.
	r0, w0 = disk.io()
	cpu0 = proccpu.Tree(run.cmd.Process.Pid)
	t = time.Now()
	if _, err := cli("suspend", "--wait"); err != nil {
		return err
	}
	c.Suspend2 = time.Since(t).Seconds()
	r1, w1 = disk.io()
	c.Read2, c.Written2 = float64(r1-r0)/(1<<20), float64(w1-w0)/(1<<20)
	if err := run.end(); err != nil {
		return err
	}
	c.Suspend2CPU = run.cpu() - cpu0
	c.ReadSession = float64(r1-plugged) / (1 << 20)
	_, c.Suspend2Phases = lastSuspend(filepath.Join(disk.Mount, "pad"))
	c.ratios()
	out, err := cli("status", "--json")
	if err != nil {
		return err
	}
	var st struct {
		Last []struct {
			Stage string  `json:"stage"`
			MS    float64 `json:"duration_ms"`
		} `json:"last_session"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return fmt.Errorf("status --json: %w", err)
	}
	c.Stages = map[string]float64{}
	for _, s := range st.Last {
		c.Stages[s.Stage] = s.MS / 1000
	}
	return nil
}

// padEnv is the environment of a cell's soulpad commands (its pad on
// disk, crypt, memory and vault size, no store or backup, a passphrase
// file in dir), and a function that runs one of them.
func (p Plan) padEnv(ctx context.Context, dir string, disk *PadDisk, crypt string, memMiB, vaultMiB int64, more ...string) ([]string, func(...string) (string, error), error) {
	pw := filepath.Join(dir, "passphrase")
	if err := os.WriteFile(pw, []byte("a bench passphrase of some length\n"), 0o600); err != nil {
		return nil, nil, err
	}
	env := append(os.Environ(),
		"SOULPAD_PAD_PATH="+filepath.Join(disk.Mount, "pad"),
		"SOULPAD_PLUGINS_CRYPT="+crypt,
		"SOULPAD_PLUGINS_STORE=", "SOULPAD_PLUGINS_BACKUP=", "SOULPAD_SESSION_BACKUP_AFTER_SUSPEND=false",
		fmt.Sprintf("SOULPAD_MACHINE_MEMORY_MIB=%d", memMiB),
		fmt.Sprintf("SOULPAD_PAD_VAULT_SIZE_MIB=%d", vaultMiB),
		"SOULPAD_MACHINE_DISPLAY=none",
		"SOULPAD_SESSION_KEEP_POINTS=2",
		"SOULPAD_UNLOCK_PASSPHRASE_FILE="+pw)
	env = append(env, more...)
	if crypt == "crypt-plain" {
		env = append(env, "SOULPAD_PLUGIN_CRYPT_PLAIN_ALLOW_NO_ENCRYPTION=true")
	}
	if p.Config != "" {
		env = append(env, "SOULPAD_CONFIG="+p.Config)
	}
	cli := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, p.Soulpad, args...)
		cmd.Env = env
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("soulpad %s: %v: %s", strings.Join(args, " "), err, lastLine(string(out)))
		}
		return string(out), nil
	}
	return env, cli, nil
}

// dirtyMiB is how much of its RAM the guest fills: half, leaving the
// small guest room for its kernel and tools.
func dirtyMiB(memMiB int64) int64 { return max(0, min(memMiB/2, memMiB-96)) }

var counterRE = regexp.MustCompile(`soulpad-counter (\d+)`)

// waitConsole polls the machine's console until it shows what; for
// "soulpad-counter", a counter above after. It returns the last counter.
func waitConsole(ctx context.Context, cli func(...string) (string, error), run *running, what string, after int, d time.Duration) (int, error) {
	end := time.Now().Add(d)
	for time.Now().Before(end) && ctx.Err() == nil {
		select {
		case err := <-run.done:
			run.done <- err
			return 0, fmt.Errorf("soulpad run ended (%v) before the console showed %q: %s", err, what, lastLine(run.text()))
		default:
		}
		out, _ := cli("console", "--dump")
		n := 0
		if m := counterRE.FindAllStringSubmatch(out, -1); len(m) > 0 {
			n, _ = strconv.Atoi(m[len(m)-1][1])
		}
		if what == "soulpad-counter" && n > after || what != "soulpad-counter" && strings.Contains(out, what) {
			return n, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	return 0, fmt.Errorf("the machine's console did not show %q in %s", what, d)
}

// io is what was read from and written to the loop device so far, in
// bytes.
func (d *PadDisk) io() (read, written uint64) {
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(d.Dev), "stat"))
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) < 7 {
		return 0, 0
	}
	r, _ := strconv.ParseUint(f[2], 10, 64) // sectors read
	w, _ := strconv.ParseUint(f[6], 10, 64) // sectors written
	return r * 512, w * 512
}

type running struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder
	done chan error
}

// startRunning starts `soulpad run` and waits up to d until its machine
// runs.
func (p Plan) startRunning(ctx context.Context, env []string, d time.Duration) (*running, error) {
	run, err := p.start(ctx, env)
	if err != nil {
		return nil, err
	}
	if err := run.wait("the machine is running", d); err != nil {
		run.kill()
		return nil, err
	}
	return run, nil
}

func (p Plan) start(ctx context.Context, env []string) (*running, error) {
	r := &running{cmd: exec.CommandContext(ctx, p.Soulpad, "run", "--progress", "none"), done: make(chan error, 1)}
	r.cmd.Env = env
	// If the bench dies, the run suspends (SIGTERM) rather than runs on.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	pr, err := r.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	r.cmd.Stderr = r.cmd.Stdout
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			r.mu.Lock()
			r.out.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
		}
		r.done <- r.cmd.Wait()
	}()
	return r, nil
}

func (r *running) text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

func (r *running) wait(s string, d time.Duration) error {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if strings.Contains(r.text(), s) {
			return nil
		}
		select {
		case err := <-r.done:
			r.done <- err
			return fmt.Errorf("soulpad run ended (%v): %s", err, lastLine(r.text()))
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("soulpad run: no %q in %s", s, d)
}

func (r *running) end() error {
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			return fmt.Errorf("soulpad run: %v: %s", err, lastLine(r.text()))
		}
		return nil
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("soulpad run did not end after its suspend")
	}
}

// cpu is the CPU seconds the ended run used, with every process under
// it that it (or they) waited for: its plugins and QEMU.
func (r *running) cpu() float64 {
	if r.cmd.ProcessState == nil {
		return 0
	}
	ru, ok := r.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

func (r *running) kill() {
	if r.cmd.ProcessState == nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Signal(os.Interrupt) // a suspend, never a kill
		select {
		case <-r.done:
		case <-time.After(5 * time.Minute):
			_ = r.cmd.Process.Kill()
		}
	}
}

func lastLine(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}
