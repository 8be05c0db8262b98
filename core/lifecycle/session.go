package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/core/pluginhost"
	"github.com/soulpad/soulpad/internal/kvmprobe"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/crypt"
	"github.com/soulpad/soulpad/sdk/detect"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// CredentialFunc supplies the credential that opens the vault (a prompt, a
// passphrase file, a key file). The session wipes it after use.
type CredentialFunc func(ctx context.Context) (crypt.Credential, error)

// Options configure a session.
type Options struct {
	Config *config.Config
	Log    hclog.Logger
	// Out receives progress for the user; nil discards it.
	Out io.Writer
	// Progress, when set, receives the progress of the long steps
	// (suspend, copy-in, copy-out) instead of lines on Out.
	Progress ProgressFunc
	// Credential supplies the vault's credential; not called for plugins
	// that announce crypt.CapNoEncryption.
	Credential CredentialFunc
	// SuspendRequests asks the running session to suspend (Ctrl-C, SIGTERM,
	// `soulpad suspend`).
	SuspendRequests <-chan struct{}
	// ColdBoot boots the latest disk even when a suspend point could be
	// resumed (the point is kept).
	ColdBoot bool
	// Point resumes this point (or boots this disk point) instead of the
	// newest; the disks' newer state is kept as a disk point if needed.
	Point string
	// CredentialTries is how often a wrong passphrase is asked again
	// (a terminal prompt: 3); 0 or 1 means once.
	CredentialTries int
	// AcceptPadPlugins takes the plugins now on the pad as good (the user
	// replaced them) instead of stopping because they changed.
	AcceptPadPlugins bool
	// OnRunning, when set, is called once the machine runs.
	OnRunning func(s *Session)
	// PluginDirs, when set, replaces the search path derived from config.
	PluginDirs []string
	// StoreVersion copies in this version from the store (a rollback)
	// instead of the newest; with plugins.store only.
	StoreVersion uint64
}

// Outcome is how a session ended.
type Outcome string

// Outcomes.
const (
	OutcomeSuspended  Outcome = "suspended"
	OutcomePoweredOff Outcome = "powered-off"
	OutcomeFailed     Outcome = "failed"
)

// Result summarises a finished session.
type Result struct {
	SessionID string
	Outcome   Outcome
	// ResumedFrom is the point resumed, empty after a cold boot.
	ResumedFrom string
	// ColdBootReason says why no point was resumed.
	ColdBootReason string
	// Lost says what the previous session lost (it ended without
	// suspending); KeptDisk is the disk point its disk was kept as.
	Lost     string
	KeptDisk string
	// Pruned are the points removed by retention after the seal.
	Pruned []string
	// Point is the suspend point sealed at the end, if any.
	Point   string
	Timings []Timing
}

// Session is one run of a pad on this host.
type Session struct {
	ID   string
	opts Options
	cfg  *config.Config
	log  hclog.Logger
	r    *runner

	host    *pluginhost.Host
	pad     *pad.Pad
	crypt   *pluginhost.Plugin
	vmm     *pluginhost.Plugin
	detect  *pluginhost.Plugin
	profile detect.HostProfile

	stage   atomic.Value // string
	started time.Time
	result  Result

	// What each step produces; a step reads only what earlier steps
	// produced.
	// boot: the pad, its lock, the plugins (above).
	lock *pad.Lock
	// detect: the host and the accelerator chosen for it.
	accel string
	// unlock: the open vault and the machine as machine.json describes it;
	// padPluginsOK once the pad's plugins matched the vault's record.
	padPluginsOK bool
	plaintext    string
	mountDir     string
	// checkout: what the store said, for the journal; storeAhead: the
	// pad has changes the store lacks.
	storeNote  string
	storeAhead bool
	// finals run after the shutdown stage (see finally).
	finals      []func(context.Context) error
	machine     *pad.Machine
	machineSpec vmm.Spec
	// resume: the machine as it runs (its spec, description, console),
	// the point its disk comes from, and its generation.
	spec vmm.Spec
	desc string
	// checked delivers the result of checking the resumed point's mapped
	// files (its guest RAM) beside the running machine; nil when there is
	// nothing left to check.
	checked chan error
	console vmm.Console
	parent  string
	gen     int
	// cpuFeatures: what the VMM says the running machine's CPU model
	// needs of a host (nil: it does not say).
	cpuFeatures []string
}

// step is one named stage of the session before the machine runs; each
// registers the cleanup of what it acquires.
type step struct {
	name string
	run  func(ctx context.Context, note *string) error
}

// steps is the session up to a running machine, in order. A new stage
// (say, a checkout from a store before unlock) is one more entry.
func (s *Session) steps() []step {
	var pre []step
	if s.cfg.Plugins.Store != "" {
		pre = append(pre, step{StageCheckout, s.checkout})
	}
	return append(pre, []step{
		{StageBoot, s.boot},
		{StageDetect, s.detectStage},
		{StageUnlock, s.unlock},
		{StageResume, s.resume},
	}...)
}

// New prepares a session; Run does the work.
func New(opts Options) *Session {
	if opts.Log == nil {
		opts.Log = hclog.NewNullLogger()
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	s := &Session{ID: pad.NewID()[:8], opts: opts, cfg: opts.Config, log: opts.Log, started: time.Now().UTC()}
	s.r = &runner{progress: func(f string, a ...any) { fmt.Fprintf(opts.Out, f+"\n", a...) }}
	s.result.SessionID = s.ID
	return s
}

// Stage is the stage now running (for `soulpad status` over the socket);
// safe to call from any goroutine.
func (s *Session) Stage() string {
	v, _ := s.stage.Load().(string)
	return v
}

func (s *Session) setStage(name string) { s.stage.Store(name) }

// Console is the running machine's serial console, if it has one.
func (s *Session) Console() vmm.Console { return s.console }

// Pad is the opened pad (after boot).
func (s *Session) Pad() *pad.Pad { return s.pad }

// Machine is the machine in the unlocked vault (after unlock).
func (s *Session) Machine() *pad.Machine { return s.machine }

// Run runs the session to its end: suspended, powered off, or failed. On
// failure the cleanups of the stages that succeeded run in reverse, and the
// last sealed suspend point is untouched.
func (s *Session) Run(ctx context.Context) (Result, error) {
	err := s.run(ctx)
	// Cleanups get their own deadline: a cancelled ctx must not keep the
	// vault from being locked.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(s.cfg.Session.StageTimeoutSeconds)*time.Second)
	defer cancel()
	s.setStage(StageShutdown)
	if serr := s.r.shutdown(sctx); serr != nil {
		err = errors.Join(err, serr)
	}
	if ferr := s.runFinally(sctx); ferr != nil {
		err = errors.Join(err, ferr)
	}
	if err != nil {
		s.result.Outcome = OutcomeFailed
	}
	s.result.Timings = s.r.timings
	return s.result, err
}

func (s *Session) stageTimeout() time.Duration {
	return time.Duration(s.cfg.Session.StageTimeoutSeconds) * time.Second
}

// bounded runs a stage with the stage deadline.
func (s *Session) bounded(ctx context.Context, name string, d time.Duration, fn func(context.Context, *string) error) error {
	s.setStage(name)
	return s.r.stage(ctx, name, func(ctx context.Context, note *string) error {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return fn(ctx, note)
	})
}

func (s *Session) run(ctx context.Context) error {
	for _, st := range s.steps() {
		if err := s.bounded(ctx, st.name, s.stageTimeout(), st.run); err != nil {
			return err
		}
	}
	if s.opts.OnRunning != nil {
		s.opts.OnRunning(s)
	}
	return s.runAndSuspend(ctx)
}

// boot opens the pad, the journal and the plugins.
func (s *Session) boot(ctx context.Context, note *string) error {
	if err := s.openPad("run", s.ID); err != nil {
		return err
	}
	p, j, lock := s.pad, s.r.journal, s.lock
	_ = lock.SetSession(s.ID)
	_ = j.Append(pad.Entry{Stage: StageBoot, Event: "start", Message: "session start", Fields: map[string]any{"pad": p.Meta.ID, "config": s.cfg.Source}})
	if s.storeNote != "" {
		_ = j.Append(pad.Entry{Stage: StageCheckout, Event: "info", Message: s.storeNote})
	}
	if prev := lock.Previous; prev != nil {
		msg := fmt.Sprintf("the previous holder of the pad, %s, ended without releasing it (killed, crashed, or the power went)", *prev)
		s.r.progress("  %s", msg)
		_ = j.Append(pad.Entry{Stage: StageBoot, Event: "info", Message: msg})
	}
	if p.Meta.Crypt.Name != "" && p.Meta.Crypt.Name != s.cfg.Plugins.Crypt {
		return fmt.Errorf("the pad's vault was made by crypt plugin %s, but plugins.crypt in %s is %s: set plugins.crypt = %q",
			p.Meta.Crypt.Name, s.cfg.Source, s.cfg.Plugins.Crypt, p.Meta.Crypt.Name)
	}
	if s.host == nil {
		s.startHost()
	}
	var err error
	if s.cfg.Plugins.Detect != "" {
		if s.detect, err = s.host.Start(ctx, s.cfg.Plugins.Detect, sdk.KindDetect, s.cfg.PluginConfigJSON(s.cfg.Plugins.Detect)); err != nil {
			return err
		}
	}
	if s.crypt, err = s.host.Start(ctx, s.cfg.Plugins.Crypt, sdk.KindCrypt, s.cfg.PluginConfigJSON(s.cfg.Plugins.Crypt)); err != nil {
		return err
	}
	if s.vmm, err = s.host.Start(ctx, s.cfg.Plugins.VMM, sdk.KindVMM, s.cfg.PluginConfigJSON(s.cfg.Plugins.VMM)); err != nil {
		return err
	}
	*note = fmt.Sprintf("pad %s; plugins %s %s, %s %s", p.Meta.ID, s.crypt.Name, s.crypt.Info.Version, s.vmm.Name, s.vmm.Info.Version)
	return nil
}

// openPad opens the configured pad and takes its lock for command (one
// pad, one session: before anything is changed; the kernel lets go of it
// if this process dies), then opens a journal file named journalName.
func (s *Session) openPad(command, journalName string) error {
	p, err := pad.Open(s.cfg.Pad.Path)
	if err != nil {
		return err
	}
	s.pad = p
	if s.lock == nil { // the checkout took it already
		lock, err := pad.LockPad(p.Dir, command, false)
		if err != nil {
			return err
		}
		s.lock = lock
		s.r.push("release the pad", func(context.Context) error { return lock.Release() })
	}
	s.r.journal, err = pad.NewJournal(p.JournalDir(), journalName)
	return err
}

// startHost makes the plugin host; its plugins stop at shutdown.
func (s *Session) startHost() {
	s.host = pluginhost.New(s.log.Named("plugin"), s.pluginDirs(), s.cfg.Plugins.SHA256)
	s.host.WorkDir = s.cfg.BaseDir
	s.host.Strict = s.cfg.Plugins.Strict
	s.r.push("stop plugins", func(context.Context) error { s.host.Close(); return nil })
}

// PluginDirs is the plugin search path for cfg: plugins.dirs, then
// plugins/ beside the soulpad executable, then the pad's plugins/.
func PluginDirs(cfg *config.Config) []string {
	dirs := append([]string(nil), cfg.Plugins.Dirs...)
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			dirs = append(dirs, filepath.Join(filepath.Dir(exe), "plugins"))
		}
	}
	return append(dirs, filepath.Join(cfg.Pad.Path, "plugins"))
}

func (s *Session) pluginDirs() []string {
	if s.opts.PluginDirs != nil {
		return s.opts.PluginDirs
	}
	return PluginDirs(s.cfg)
}

// detectStage probes the host and chooses the accelerator.
func (s *Session) detectStage(ctx context.Context, note *string) error {
	if s.detect != nil {
		out, err := s.detect.Detect().Probe(ctx, detect.ProbeRequest{})
		if err != nil {
			return s.detect.Err("probe", err)
		}
		s.profile = out.Profile
	} else {
		s.profile = minimalProfile()
	}
	accel := s.cfg.Machine.Accelerator
	switch accel {
	case "auto":
		accel = "tcg"
		if s.profile.KVM {
			accel = "kvm"
		}
	case "kvm":
		if !s.profile.KVM {
			return fmt.Errorf("machine.accelerator is \"kvm\" but /dev/kvm is not usable on this host: %w (set accelerator = \"auto\" to fall back to TCG)", sdk.ErrIncompatibleHost)
		}
	}
	s.accel = accel
	src := "built-in probe"
	if s.detect != nil {
		src = s.detect.Name
	}
	*note = fmt.Sprintf("%s → %s (%s)", HostSummary(s.profile), accel, src)
	return nil
}

// minimalProfile is what the core can tell without a detect plugin.
func minimalProfile() detect.HostProfile {
	p := detect.HostProfile{Arch: runtime.GOARCH, CPU: detect.CPU{Cores: runtime.NumCPU()}}
	p.Hostname, _ = os.Hostname()
	p.KVM, _ = kvmprobe.Usable("/dev/kvm")
	return p
}

// unlock opens the vault and finds the machine. A wrong passphrase from a
// prompt is asked again, up to Options.CredentialTries times.
func (s *Session) unlock(ctx context.Context, note *string) error {
	sweepMountDirs(s.pad.Meta.ID)
	mnt, err := os.MkdirTemp("", "soulpad-"+s.pad.Meta.ID+"-")
	if err != nil {
		return err
	}
	tries := max(s.opts.CredentialTries, 1)
	var out crypt.UnlockResponse
	for try := 1; ; try++ {
		var cred crypt.Credential
		if !s.crypt.Info.Has(crypt.CapNoEncryption) {
			if s.opts.Credential == nil {
				_ = os.Remove(mnt)
				return fmt.Errorf("the vault needs a passphrase or key file and none was given")
			}
			c, err := s.opts.Credential(ctx)
			if err != nil {
				_ = os.Remove(mnt)
				return err
			}
			cred = c
		} else if try == 1 {
			s.r.progress("  warning: %s does not encrypt the vault", s.crypt.Name)
		}
		out, err = s.crypt.Crypt().Unlock(ctx, crypt.UnlockRequest{VaultPath: s.pad.VaultPath(), Credential: cred, MountDir: mnt})
		cred.Wipe()
		if err == nil {
			break
		}
		if errors.Is(err, sdk.ErrWrongPassphrase) && try < tries && ctx.Err() == nil {
			s.r.progress("  wrong passphrase or key file; try again (%d of %d tries left)", tries-try, tries)
			continue
		}
		_ = os.Remove(mnt)
		if errors.Is(err, sdk.ErrWrongPassphrase) && tries > 1 {
			return fmt.Errorf("%w (%d tries); nothing was changed", s.crypt.Err("unlock "+s.pad.VaultPath(), err), tries)
		}
		return s.crypt.Err("unlock "+s.pad.VaultPath(), err)
	}
	s.mountDir = mnt
	s.r.push("lock vault", func(ctx context.Context) error {
		if s.padPluginsOK && !s.crypt.Exited() {
			// What the vault will vouch for next time.
			if err := s.pad.RecordPlugins(out.PlaintextDir); err != nil {
				s.log.Warn("the pad's plugins were not recorded in the vault", "error", err)
			}
		}
		if s.crypt.Exited() {
			// Nobody is left to lock it: make sure its plaintext does not
			// outlive the plugin (a helper daemon, a dead FUSE mount).
			return detachMount(mnt)
		}
		_, err := s.crypt.Crypt().Lock(ctx, crypt.LockRequest{VaultPath: s.pad.VaultPath()})
		if err != nil && s.crypt.Exited() {
			err = detachMount(mnt)
		} else {
			err = s.crypt.Err("lock", err)
		}
		if err == nil {
			_ = os.Remove(mnt)
		}
		return err
	})
	s.plaintext = out.PlaintextDir
	// The plugins carried on the pad must be the ones the vault saw last.
	if !s.opts.AcceptPadPlugins {
		if err := s.pad.CheckPlugins(s.plaintext); err != nil {
			return err
		}
	}
	s.padPluginsOK = true
	s.machine = pad.MachineIn(s.plaintext, s.pad.Meta.Machine)
	if s.machineSpec, err = s.machine.Spec(); err != nil {
		return err
	}
	if n, err := s.machine.CleanPending(); err != nil {
		return err
	} else if n > 0 {
		_ = s.r.journal.Append(pad.Entry{Stage: StageUnlock, Event: "info", Message: fmt.Sprintf("removed %d unsealed suspend point(s) left by an interrupted suspend", n)})
	}
	*note = "vault open"
	return nil
}

// ErrRefusedPoint: the latest suspend point cannot be resumed here; the
// message says why and how to cold-boot instead.
var ErrRefusedPoint = errors.New("suspend point refused")

// refusal is the way out offered when a point is refused.
func refusal(p pad.Point, err error) error {
	return fmt.Errorf("%w: %w; nothing was changed. `soulpad points` lists the points: `soulpad run --point ID` resumes an older one, `soulpad run --cold-boot` boots the latest disk (point %s is kept)",
		ErrRefusedPoint, err, p.Manifest.ID)
}

// resume resumes the planned point, or boots, and says why.
func (s *Session) resume(ctx context.Context, note *string) error {
	pts, err := s.machine.Points()
	if err != nil {
		return err
	}
	sess, err := s.machine.Session()
	if err != nil {
		return err
	}
	plan, err := PlanResume(PlanInput{Session: sess, Points: pts, ColdBoot: s.opts.ColdBoot, PointID: s.opts.Point,
		DiskHistory: s.vmm.Info.Has(vmm.CapDiskHistory)})
	if err != nil {
		return err
	}
	s.gen = pad.NextGeneration(sess, pts)
	// The machine as it will run: machine.json on this host's
	// accelerator; a resumed point's memory and CPU model below.
	s.spec = s.machineSpec
	s.spec.Accelerator = s.accel
	if err := s.vmmRuns(s.spec); err != nil {
		return err
	}
	vm := s.vmm.VMM()
	if p := plan.Resume; p != nil {
		// Everything that can refuse the point comes before anything changes.
		if made := p.Manifest.VMM.Name; made != "" && made != s.vmm.Name {
			return fmt.Errorf("%w: suspend point %s was made by %s %s (CPU model %q, machine %s), and only that VMM plugin can resume it, not %s: set plugins.vmm = %q to resume it, or run `soulpad run --cold-boot` to boot its disk with %s (the point is kept); nothing was changed",
				ErrRefusedPoint, p.Manifest.ID, made, p.Manifest.VMM.Version, p.Manifest.CPUModel, machineLine(p.Manifest.VMMMachine), s.vmm.Name, made, s.vmm.Name)
		}
		if err := p.VerifyEager(); err != nil {
			return refusal(*p, err)
		}
		if m := p.Manifest.Spec.MemoryMiB; m > 0 {
			s.spec.MemoryMiB = m // what the point's machine had, whatever machine.json says now
		}
		if err := s.compatible(*p); err != nil {
			return refusal(*p, err)
		}
	}
	if plan.KeepLatestDisk {
		id, err := s.keepLatestDisk(ctx, sess)
		if err != nil {
			return err
		}
		s.result.KeptDisk = id
		if plan.Lost != "" {
			plan.Lost += fmt.Sprintf("; its disk is kept as point %s (`soulpad run --point %s` boots it)", id, id)
		} else {
			s.r.progress("  the disk's latest state is kept as point %s (`soulpad run --point %s` boots it)", id, id)
		}
	}
	if plan.Lost != "" {
		s.result.Lost = plan.Lost
		s.r.progress("  %s", plan.Lost)
		_ = s.r.journal.Append(pad.Entry{Stage: StageResume, Event: "info", Message: plan.Lost})
	}
	if p := plan.Resume; p != nil {
		s.spec.CPUModel = p.Manifest.CPUModel
		var sums []vmm.FileSum
		for _, f := range p.OnLoadSums() {
			sums = append(sums, f.VMM())
		}
		stopWatch := s.watchVMM(ctx, "resume")
		out, err := vm.Resume(ctx, vmm.ResumeRequest{Spec: s.spec, MachineDir: s.machine.Dir, StateDir: p.Dir, Description: p.Manifest.Description, Sums: sums})
		stopWatch(err == nil)
		if err != nil {
			err = s.vmm.Err("resume "+p.Manifest.ID, err)
			if errors.Is(err, sdk.ErrIncompatibleHost) || errors.Is(err, sdk.ErrCorrupt) {
				return refusal(*p, err)
			}
			return err
		}
		s.journalPhases(StageResume, out.Phases)
		s.console = out.Console
		s.cpuFeatures = out.CPUFeatures
		s.desc = p.Manifest.Description
		s.parent = p.Manifest.ID
		if p.HasMapped() {
			// The guest's RAM is read as the guest touches it: check the
			// point's copy beside it, and suspend nothing on top of it
			// before the check has passed.
			vctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
			s.r.push("stop checking the point", func(context.Context) error { cancel(); return nil })
			s.checked = make(chan error, 1)
			point, journal := *p, s.r.journal
			go func() {
				start := time.Now()
				err := point.VerifyMapped(vctx)
				if err == nil {
					_ = journal.Append(pad.Entry{Stage: StageResume, Event: "info", Message: fmt.Sprintf("point %s's mapped memory checked in %.1f s", point.Manifest.ID, time.Since(start).Seconds())})
				}
				s.checked <- err
			}()
		}
		s.result.ResumedFrom = p.Manifest.ID
		*note = "resumed " + p.Manifest.ID
	} else {
		mib, warn, err := fitMemory(s.spec.MemoryMiB, s.profile, false)
		if err != nil {
			return err
		}
		if warn != "" {
			s.spec.MemoryMiB = mib
			s.r.progress("  warning: %s", warn)
		}
		if s.spec.CPUModel == CPUHost || s.spec.CPUModel == CPUMax {
			s.r.progress("  warning: CPU model %q: the suspend points of this session resume only on hosts with this CPU's features (cpu_model = \"portable\" resumes anywhere)", s.spec.CPUModel)
		}
		req := vmm.StartRequest{Spec: s.spec, MachineDir: s.machine.Dir}
		if b := plan.BootFrom; b != nil {
			req.From = &vmm.PointState{StateDir: b.Dir, Description: b.Manifest.Description}
			s.parent = b.Manifest.ID
		}
		out, err := vm.Start(ctx, req)
		if err != nil {
			return s.vmm.Err("start", err)
		}
		s.desc = out.Description
		s.console = out.Console
		s.cpuFeatures = out.CPUFeatures
		s.result.ColdBootReason = plan.Reason
		*note = "cold boot: " + plan.Reason
	}
	s.r.push("power off machine", func(ctx context.Context) error {
		if s.vmm.Exited() {
			return nil // the machine went with its plugin
		}
		st, err := vm.Status(ctx, vmm.StatusRequest{Name: s.spec.Name})
		if err == nil && st.State == vmm.StateStopped {
			return nil
		}
		_, err = vm.PowerOff(ctx, vmm.PowerOffRequest{Name: s.spec.Name, Force: true})
		return s.vmm.Err("power off", err)
	})
	// From here the disk moves on: a crash must not resume an old point
	// against it without keeping it first (see PlanResume).
	host, _ := os.Hostname()
	return s.machine.SetSession(pad.SessionState{State: pad.SessionRunning, Point: s.parent, Session: s.ID, Generation: s.gen, Host: host})
}

// keepLatestDisk keeps the disks' latest state, left by the session in
// sess that ended without suspending, as a sealed disk point.
func (s *Session) keepLatestDisk(ctx context.Context, sess pad.SessionState) (string, error) {
	dh, ok := s.vmm.VMM().(vmm.DiskHistory)
	if !ok {
		return "", fmt.Errorf("%s: keep disks: %w", s.vmm.Name, sdk.ErrUnsupported)
	}
	pend, err := s.machine.NewPending()
	if err != nil {
		return "", err
	}
	out, err := dh.KeepDisks(ctx, vmm.KeepDisksRequest{Spec: s.spec, MachineDir: s.machine.Dir, StateDir: pend.Dir()})
	if err != nil {
		_ = pend.Discard()
		return "", s.vmm.Err("keep disks", err)
	}
	spec := s.spec
	point, err := pend.Seal(out.Files, pad.Manifest{
		Kind: pad.KindDisk, Parent: sess.Point, Session: sess.Session, Generation: sess.Generation, SessionStarted: sess.Since,
		CPUModel: s.spec.CPUModel, Accelerator: s.spec.Accelerator, Description: out.Description,
		VMM: pad.PluginRef{Name: s.vmm.Name, Version: s.vmm.Info.Version}, Host: s.profile, Spec: spec,
	})
	if err != nil {
		_ = pend.Discard()
		return "", err
	}
	_ = s.r.journal.Append(pad.Entry{Stage: StageResume, Event: "info", Message: "disk kept as a point", Fields: map[string]any{
		"point": point.Manifest.ID, "kind": pad.KindDisk, "session": sess.Session}})
	return point.Manifest.ID, nil
}

// compatible checks a point against this host before the VMM sees it:
// the CPU features the point needs, and the memory it needs.
func (s *Session) compatible(p pad.Point) error {
	if missing := MissingFeatures(p.Manifest.CPUFeatures, s.profile); len(missing) > 0 {
		return fmt.Errorf("suspend point %s (CPU model %q, taken on %s) needs CPU features this host (%s) lacks: %s: %w",
			p.Manifest.ID, p.Manifest.CPUModel, HostSummary(p.Manifest.Host), HostSummary(s.profile), strings.Join(missing, ", "), sdk.ErrIncompatibleHost)
	}
	if p.Manifest.Accelerator == "kvm" && s.spec.Accelerator != "kvm" && p.Manifest.CPUModel == CPUHost {
		return fmt.Errorf("suspend point %s was taken with the host CPU model under KVM; this host has no KVM: %w", p.Manifest.ID, sdk.ErrIncompatibleHost)
	}
	if _, _, err := fitMemory(s.spec.MemoryMiB, s.profile, true); err != nil {
		return fmt.Errorf("suspend point %s: %w", p.Manifest.ID, err)
	}
	return nil
}

// maxSuspendAttempts bounds how often a failed suspend sends the session
// back to run before giving up.
const maxSuspendAttempts = 3

// runAndSuspend waits for a suspend request or the guest's power-off, then
// suspends. A failed suspend with the machine still running goes back to
// run, so the session is not lost.
func (s *Session) runAndSuspend(ctx context.Context) error {
	vm := s.vmm.VMM()
	evctx, cancelEv := context.WithCancel(ctx)
	defer cancelEv()
	var events <-chan vmm.Event
	if s.vmm.Info.Has(vmm.CapEvents) {
		ch, err := vm.(vmm.EventStreamer).Events(evctx, vmm.EventsRequest{Name: s.spec.Name})
		if err != nil {
			return s.vmm.Err("events", err)
		}
		events = ch
	}
	for attempt := 1; ; attempt++ {
		var poweredOff bool
		err := s.bounded(ctx, StageRun, 1<<62, func(_ context.Context, note *string) error {
			s.r.progress("  the machine is running; Ctrl-C or `soulpad suspend` suspends it")
			for {
				select {
				case <-s.crypt.Done():
					return s.cryptDied()
				case <-s.vmm.Done():
					return fmt.Errorf("%s: the machine stopped unexpectedly: the plugin process exited, and the machine with it (see its log lines above): %w", s.vmm.Name, sdk.ErrPluginExited)
				case err := <-s.checked:
					s.checked = nil
					if err != nil {
						return s.checkFailed(err)
					}
				case <-s.opts.SuspendRequests:
					*note = "suspend requested"
					return nil
				case <-ctx.Done():
					*note = "stopping: " + ctx.Err().Error()
					return nil
				case ev, ok := <-events:
					if !ok {
						events = nil
						continue
					}
					switch ev.Type {
					case vmm.EventPoweredOff:
						poweredOff = true
						*note = "the guest powered off"
						return nil
					case vmm.EventSleepRequested:
						*note = "the guest asked to sleep"
						return nil
					case vmm.EventCrashed:
						return fmt.Errorf("%s: the machine stopped unexpectedly: the plugin process exited, and the machine with it (see its log lines above): %w", s.vmm.Name, sdk.ErrPluginExited)
					}
				}
			}
		})
		if err != nil {
			return err
		}
		if poweredOff {
			s.result.Outcome = OutcomePoweredOff
			host, _ := os.Hostname()
			return s.machine.SetSession(pad.SessionState{State: pad.SessionStopped, Point: s.parent, Session: s.ID, Generation: s.gen, Host: host})
		}
		sctx := context.WithoutCancel(ctx)
		err = s.bounded(sctx, StageSuspend, time.Duration(s.cfg.Session.SuspendTimeoutSeconds)*time.Second, s.suspend)
		if err == nil {
			s.result.Outcome = OutcomeSuspended
			return nil
		}
		if s.crypt.Exited() {
			return errors.Join(err, s.cryptDied())
		}
		if errors.Is(err, ErrRefusedPoint) {
			return err // the resumed point failed its check: no retry
		}
		st, serr := vm.Status(sctx, vmm.StatusRequest{Name: s.spec.Name})
		if serr != nil || st.State != vmm.StateRunning || attempt >= maxSuspendAttempts || ctx.Err() != nil {
			return err
		}
		s.r.progress("  the machine is still running and nothing was lost; ask again to retry the suspend (attempt %d of %d failed)", attempt, maxSuspendAttempts)
	}
}

// damagedPoint ends a session whose resumed point failed its check
// beside the running machine: the guest ran on memory that is not what
// was sealed, so nothing is suspended on top of it; the machine is
// powered off (the cleanup) and the point is kept.
// checkFailed reports a failed check of the resumed point's mapped
// memory. A vault whose crypt plugin died fails the check too (its reads
// fail): then the plugin's death is what happened, and is reported as
// such once seen (it is, within moments, when that is the cause).
func (s *Session) checkFailed(err error) error {
	select {
	case <-s.crypt.Done():
		return s.cryptDied()
	case <-time.After(2 * time.Second):
	}
	return s.damagedPoint(err)
}

func (s *Session) damagedPoint(err error) error {
	return fmt.Errorf("%w: %w; the machine ran on it for a moment and was stopped without suspending (its disk is kept as a point at the next run). `soulpad points` lists the points: `soulpad run --point ID` resumes an older one, `soulpad run --cold-boot` boots the latest disk (point %s is kept)",
		ErrRefusedPoint, err, s.parent)
}

// suspend writes a new suspend point and seals it.
func (s *Session) suspend(ctx context.Context, note *string) error {
	var phases []vmm.Phase
	if s.checked != nil {
		waited := time.Now()
		s.r.progress("  checking the resumed point's memory before sealing on top of it…")
		var err error
		select {
		case err = <-s.checked:
		case <-ctx.Done():
			err = ctx.Err()
		}
		s.checked = nil
		if err != nil {
			return s.checkFailed(err)
		}
		phases = append(phases, vmm.Phase{Name: "check", Seconds: time.Since(waited).Seconds()})
	}
	pend, err := s.machine.NewPending()
	if err != nil {
		return err
	}
	start := time.Now()
	// The state as it reaches the vault: memory and device state, about
	// the guest's RAM when it is streamed.
	stopWatch := watchDir(ctx, pend.Dir(), "suspend", s.spec.MemoryMiB<<20, 250*time.Millisecond, s.opts.Progress)
	out, err := s.vmm.VMM().Suspend(ctx, vmm.SuspendRequest{Name: s.spec.Name, StateDir: pend.Dir()})
	stopWatch()
	if err != nil {
		_ = pend.Discard()
		return s.vmm.Err("suspend", err)
	}
	phases = append(phases, out.Phases...)
	sealing := time.Now()
	desc := out.Description
	if desc == "" {
		desc = s.desc
	}
	var known []pad.FileSum
	for _, f := range out.Sums {
		known = append(known, pad.FileSumFrom(f))
	}
	point, err := pend.Seal(out.Files, pad.Manifest{
		Kind:           pad.KindMemory,
		Parent:         s.parent,
		Session:        s.ID,
		Generation:     s.gen,
		SessionStarted: s.started,
		CPUModel:       s.spec.CPUModel,
		CPUFeatures:    s.neededFeatures(),
		Accelerator:    s.spec.Accelerator,
		Description:    desc,
		VMMMachine:     out.Machine,
		VMM:            pad.PluginRef{Name: s.vmm.Name, Version: s.vmm.Info.Version},
		Host:           s.profile,
		Spec:           s.spec,
		SuspendSeconds: time.Since(start).Seconds(),
	}, known...)
	if err != nil {
		_ = pend.Discard()
		return err
	}
	host, _ := os.Hostname()
	if err := s.machine.SetSession(pad.SessionState{State: pad.SessionSuspended, Point: point.Manifest.ID, Session: s.ID, Generation: s.gen, Host: host}); err != nil {
		return err
	}
	s.result.Point = point.Manifest.ID
	phases = append(phases, vmm.Phase{Name: "seal", Seconds: time.Since(sealing).Seconds()})
	s.journalPhases(StageSuspend, phases)
	// Retention: the point is sealed whatever happens here.
	if pruned, err := Prune(ctx, s.r.journal, s.machine, s.vmm, s.spec, s.cfg.Session.KeepPoints, false, point.Manifest.ID); err != nil {
		s.r.progress("  warning: pruning old suspend points: %v", err)
		_ = s.r.journal.Append(pad.Entry{Stage: StageSuspend, Event: "info", Message: "pruning failed", Error: err.Error()})
	} else {
		s.result.Pruned = pruned
	}
	// No secrets: what status shows without unlocking the vault.
	_ = s.r.journal.Append(pad.Entry{Stage: StageSuspend, Event: "info", Message: "suspend point sealed", Fields: map[string]any{
		"point": point.Manifest.ID, "bytes": point.Size(), "hashed_bytes": pend.Hashed(), "cpu_model": s.spec.CPUModel,
		"accelerator": s.spec.Accelerator, "host": s.profile.Hostname,
		"host_summary": HostSummary(s.profile), "host_fingerprint": s.profile.Fingerprint,
	}})
	*note = fmt.Sprintf("sealed %s, %s", point.Manifest.ID, humanBytes(point.Size()))
	return nil
}

// HumanBytes prints a size in binary units ("1.5 GiB").
func HumanBytes(n int64) string { return humanBytes(n) }

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// ErrVaultLost: the crypt plugin died while the vault was open.
var ErrVaultLost = errors.New("the vault was lost")

// cryptDied stops the session after the crypt plugin died while the vault
// was open: its plaintext cannot be trusted to reach the pad any more, so
// the machine is stopped without a suspend point (the last sealed point
// and the disk as the plugin last wrote it stay), and the cleanups detach
// whatever of the vault is still mounted.
func (s *Session) cryptDied() error {
	s.r.progress("  %s exited while the vault was open: stopping the machine without a suspend point", s.crypt.Name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !s.vmm.Exited() {
		_, _ = s.vmm.VMM().PowerOff(ctx, vmm.PowerOffRequest{Name: s.spec.Name, Force: true})
	}
	if s.mountDir != "" {
		_ = detachMount(s.mountDir)
	}
	return fmt.Errorf("%s: the crypt plugin exited while the vault was open (see its log lines above), so the machine was stopped without a suspend point; the next `soulpad run` resumes the last sealed point and keeps the disk as it was: %w (%w)",
		s.crypt.Name, ErrVaultLost, sdk.ErrPluginExited)
}

// neededFeatures is what a point of the running machine needs of a host:
// what the VMM plugin said, else the x86 default for its CPU model.
func (s *Session) neededFeatures() []string {
	if s.cpuFeatures != nil {
		return s.cpuFeatures
	}
	return NeededFeatures(s.spec.CPUModel, s.profile)
}

// vmmRuns checks the machine against what the VMM plugin announces it
// runs (disk formats, networks), before anything starts.
func (s *Session) vmmRuns(spec vmm.Spec) error {
	caps := s.vmm.Info.Capabilities
	for _, d := range spec.Disks {
		if d.Format != "" && !vmm.Supports(caps, vmm.CapDiskFormatPrefix, d.Format) {
			return fmt.Errorf("disk %s is a %s image, which %s does not run (it runs %s): %w", d.Name, d.Format, s.vmm.Name,
				strings.Join(vmm.Announced(caps, vmm.CapDiskFormatPrefix), ", "), sdk.ErrIncompatibleHost)
		}
	}
	if spec.Network != "" && !vmm.Supports(caps, vmm.CapNetworkPrefix, spec.Network) {
		return fmt.Errorf("machine.network = %q, which %s does not offer (it offers %s): %w", spec.Network, s.vmm.Name,
			strings.Join(vmm.Announced(caps, vmm.CapNetworkPrefix), ", "), sdk.ErrIncompatibleHost)
	}
	return nil
}

// journalPhases records where a stage's time went, as the VMM (and the
// core) measured it.
func (s *Session) journalPhases(stage string, ps []vmm.Phase) {
	if len(ps) == 0 {
		return
	}
	_ = s.r.journal.Append(pad.Entry{Stage: stage, Event: "info", Message: stage + " phases: " + vmm.FormatPhases(ps), Fields: map[string]any{"phases": ps}})
}

// machineLine is a VMM's line about a machine, or that it gave none.
func machineLine(machine string) string {
	if machine == "" {
		return "not named by its VMM plugin"
	}
	return machine
}
