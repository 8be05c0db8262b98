package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/control"
	"github.com/soulpad/soulpad/core/isr"
	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/core/pluginhost"
	"github.com/soulpad/soulpad/internal/kvmprobe"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/crypt"
	"github.com/soulpad/soulpad/sdk/detect"
	"github.com/soulpad/soulpad/sdk/store"
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
	// `soulpad suspend`), beside Session.RequestSuspend.
	SuspendRequests <-chan struct{}
	// Control answers `soulpad suspend`, `status`, `console` and `view`
	// over the pad's control socket while the machine runs.
	Control bool
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
	// AcceptBootChange records the boot partitions of the bootable pad's
	// disk as they are now instead of stopping because they changed.
	AcceptBootChange bool
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

// Session is one run of a pad on this host: an opened pad (Vault) and
// the machine it runs.
type Session struct {
	*Vault
	ID       string
	opts     Options
	requests chan struct{}
	// checkpoints asks for a checkpoint now (`soulpad checkpoint`).
	checkpoints chan struct{}
	started     time.Time
	result      Result

	// checkout: the store and what it said, for the journal; storeAhead:
	// the pad has changes the store lacks; leaseKept: the copy-out failed
	// and the pad keeps the lease.
	st         store.Store
	storeNote  string
	storeAhead bool
	leaseKept  bool
	// leased is when the lease was taken; stopRenewal ends the renewals
	// that keep it from lapsing; leaseLost is set when a renewal found
	// another PC holding it.
	leased      time.Time
	stopRenewal func()
	leaseLost   atomic.Pointer[error]
	// pulled is the version copied in (nil: the pad's own); sealKey,
	// read from the vault at verify, seals the copy-out's version.
	pulled  *isr.Manifest
	sealKey []byte
	// refusedVersion: the version copied in failed its seal; what the
	// pad now holds is the store's forgery and is not copied out.
	refusedVersion bool
	// boot: the plugins besides the crypt plugin.
	vmm    *pluginhost.Plugin
	detect *pluginhost.Plugin
	// detect: the host and the accelerator chosen for it.
	profile detect.HostProfile
	accel   string
	// resume: the machine as it runs (its spec, description, console),
	// the point its disk comes from, and its generation.
	spec vmm.Spec
	desc string
	// checked delivers the result of checking the resumed point's mapped
	// files (its guest RAM) beside the running machine; nil when there is
	// nothing left to check. unchecked names the points it covers: the
	// resumed one and those its memory derives from unchecked
	// (pad.Manifest.Unchecked).
	checked   chan error
	unchecked []string
	// checkHeld holds that check while the session suspends.
	checkHeld atomic.Bool
	// running names the files the machine runs on that a suspend makes
	// the point's mapped files (file name → path in the machine's
	// directory); presum hashes them ahead of the suspend.
	running map[string]string
	presum  *presummer
	console vmm.Console
	// guest is the VMM's last word on the guest's agent (for status).
	guest  atomic.Pointer[string]
	parent string
	gen    int
	// cpuFeatures: what the VMM says the running machine's CPU model
	// needs of a host (nil: it does not say).
	cpuFeatures []string
	// run: the machine's events; how the run ended (a suspend asked
	// for, the guest's power-off, the session stopped); the attempts at
	// suspending.
	events       <-chan vmm.Event
	stopEvents   context.CancelFunc
	suspendAsked bool
	poweredOff   bool
	// Checkpoints: lastPoint (Unix ns) is when the newest state a crash
	// would resume was taken; noCheckpoints says why none are taken.
	lastPoint        atomic.Int64
	noCheckpoints    atomic.Pointer[string]
	checkpointsTaken int
	// roomShort says why the vault lacks room for the running machine's
	// memory (nil while it has it): checkpoints are skipped meanwhile.
	roomShort atomic.Pointer[string]
	stopping  bool
	attempts  int
	// unplugged is closed when the pad's device (padDevice) goes away
	// while the machine runs (nil: the pad's device cannot be watched);
	// watching ends with Run (life).
	padDevice pad.DeviceWatch
	unplugged chan struct{}
	life      context.Context
}

// stages is the whole session, in order: a new stage (before or after
// the machine runs) is one more entry.
func (s *Session) stages() []stage {
	withStore := func() bool { return s.cfg.Plugins.Store != "" }
	return []stage{
		{name: StageCheckout, run: s.checkout, when: withStore},
		{name: StageBoot, run: s.boot},
		{name: StageDetect, run: s.detectStage},
		{name: StageUnlock, run: s.unlock},
		{name: StageVerify, run: s.verifyVersion, when: func() bool { return s.st != nil }},
		{name: StageResume, run: s.resume},
		{name: StageRun, run: s.runMachine, timeout: 1 << 62},
		{name: StageSuspend, run: s.suspendStage, when: s.suspendWanted, ending: true,
			timeout: time.Duration(s.cfg.Session.SuspendTimeoutSeconds) * time.Second},
		{name: StageShutdown, run: s.r.shutdown, ending: true},
		{name: StageBackup, run: s.backupAfterSuspend, when: s.backupWanted, ending: true, timeout: 1 << 62},
		{name: StageCopyOut, run: s.copyOut, when: s.copyOutWanted, ending: true, unjournaled: true, soft: true},
		{name: StageCheckin, run: s.checkin, when: s.checkinWanted, ending: true, unjournaled: true, soft: true},
	}
}

// New prepares a session; Run does the work.
func New(opts Options) *Session {
	v := newVault(opts.Config, opts.Log, opts.Out, opts.PluginDirs)
	s := &Session{Vault: v, ID: pad.NewID()[:8], opts: opts, started: time.Now().UTC(), requests: make(chan struct{}, 1), checkpoints: make(chan struct{}, 1)}
	s.result.SessionID = s.ID
	return s
}

// Stage is the stage now running (for `soulpad status` over the socket);
// safe to call from any goroutine.
func (s *Session) Stage() string {
	v, _ := s.r.current.Load().(string)
	return v
}

// RequestSuspend asks the running session to suspend; false when a
// request is already on its way. Safe from any goroutine.
func (s *Session) RequestSuspend() bool {
	select {
	case s.requests <- struct{}{}:
		return true
	default:
		return false
	}
}

// Console is the running machine's serial console, if it has one.
func (s *Session) Console() vmm.Console { return s.console }

// Guest is what the VMM last said of the guest's agent ("" before it
// said anything).
func (s *Session) Guest() string {
	if g := s.guest.Load(); g != nil {
		return *g
	}
	return ""
}

// Run runs the session to its end: suspended, powered off, or failed. On
// failure the cleanups of the stages that succeeded run in reverse, and the
// last sealed suspend point is untouched.
func (s *Session) Run(ctx context.Context) (Result, error) {
	life, end := context.WithCancel(context.WithoutCancel(ctx))
	defer end()
	s.life = life
	err := s.r.runStages(ctx, s.stages(), s.stageTimeout())
	// What is left (the pad's lock, the store's plugin) goes after every
	// ending stage, with its own deadline.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.stageTimeout())
	defer cancel()
	// Once the pad is pulled out, what fails to reach it is no news.
	if cerr := s.r.runAll(cctx); cerr != nil && !s.Vault.unplugged {
		err = errors.Join(err, cerr)
	}
	if err != nil {
		s.result.Outcome = OutcomeFailed
	}
	s.result.Timings = s.r.timings
	return s.result, err
}

// boot opens the pad, the journal and the plugins.
func (s *Session) boot(ctx context.Context, note *string) error {
	// One pad, one session, to the end: the pad stays locked until every
	// ending stage (a backup, a copy-out) is done with it.
	if err := s.open("run", s.ID, true); err != nil {
		return err
	}
	p, j := s.pad, s.r.journal
	_ = s.lock.SetSession(s.ID)
	_ = j.Append(pad.Entry{Stage: StageBoot, Event: "start", Message: "session start", Fields: map[string]any{"pad": p.Meta.ID, "config": s.cfg.Source}})
	if s.storeNote != "" {
		_ = j.Append(pad.Entry{Stage: StageCheckout, Event: "info", Message: s.storeNote})
	}
	if prev := s.lock.Previous; prev != nil {
		msg := fmt.Sprintf("the previous holder of the pad, %s, ended without releasing it (killed, crashed, or the power went)", *prev)
		s.r.progress("  %s", msg)
		_ = j.Append(pad.Entry{Stage: StageBoot, Event: "info", Message: msg})
	}
	var err error
	if s.cfg.Plugins.Detect != "" {
		if s.detect, err = s.start(ctx, s.cfg.Plugins.Detect, sdk.KindDetect); err != nil {
			return err
		}
	}
	if err := s.startCrypt(ctx); err != nil {
		return err
	}
	if s.vmm, err = s.start(ctx, s.cfg.Plugins.VMM, sdk.KindVMM); err != nil {
		return err
	}
	*note = fmt.Sprintf("pad %s; plugins %s %s, %s %s", p.Meta.ID, s.crypt.Name, s.crypt.Info.Version, s.vmm.Name, s.vmm.Info.Version)
	return nil
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
	boot := bootRefuse
	if s.opts.AcceptBootChange {
		boot = bootAccept
	}
	err := s.Vault.unlock(ctx, unlockOptions{credential: s.opts.Credential, tries: s.opts.CredentialTries, acceptPadPlugins: s.opts.AcceptPadPlugins, boot: boot})
	if err == nil {
		*note = "vault open"
		if s.bootNote != "" {
			*note += "; " + s.bootNote
		}
	}
	return err
}

// startControl answers `soulpad suspend`, `status`, `console` and `view`
// over the pad's control socket until shutdown; without it Ctrl-C still
// works, and the user is told so.
func (s *Session) startControl() {
	srv, err := control.Listen(s.pad.Meta.ID, func(r control.Request) control.Response {
		switch r.Command {
		case "suspend":
			if s.RequestSuspend() {
				s.r.progress("\nsuspend asked for over the control socket: suspending…")
			}
			return control.Response{OK: true, Message: "suspending", Stage: s.Stage()}
		case "checkpoint":
			return s.askCheckpoint()
		case "status", "console":
			c := s.Console()
			since, next := s.lossBound()
			return control.Response{OK: true, Stage: s.Stage(), ConsoleSocket: c.Socket, ConsoleLog: c.Log, Screen: c.Screen, Guest: s.Guest(),
				SafeSince: since, Checkpoints: next, Memory: s.presum.status()}
		}
		return control.Response{Message: "unknown command " + r.Command}
	})
	if err != nil {
		s.r.progress("  warning: %v ('soulpad suspend' will not reach this session; Ctrl-C still works)", err)
		return
	}
	s.r.push("close the control socket", func(context.Context) error { srv.Close(); return nil })
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
