package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/core/pluginhost"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/crypt"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// Vault is an opened pad: what a session and a maintenance command
// (points, credential, backup) both need. Opening takes the pad's lock
// (one pad, one session), opens this command's journal and the plugin
// host; startCrypt starts the crypt plugin the host's config names;
// unlock opens the vault and finds the machine. Each step registers its
// undoing on one reverse stack, run by Close (or by a session's shutdown
// stage).
type Vault struct {
	cfg  *config.Config
	log  hclog.Logger
	out  io.Writer
	r    *runner
	dirs []string

	pad  *pad.Pad
	lock *pad.Lock
	// unplugged: the pad was pulled out; nothing more is written to it
	// (and what fails to be is no news).
	unplugged bool
	host      *pluginhost.Host
	crypt     *pluginhost.Plugin

	// After unlock: where the vault is mounted, its plaintext, and the
	// machine as machine.json describes it. padPluginsOK once the pad's
	// plugins matched the vault's record (so the lock records them anew).
	mountDir     string
	plaintext    string
	padPluginsOK bool
	// bootNote says what the boot chain's check found ("" for none).
	bootNote    string
	machine     *pad.Machine
	machineSpec vmm.Spec
}

// newVault prepares a Vault; nothing is opened yet. dirs nil means the
// config's plugin search path.
func newVault(cfg *config.Config, log hclog.Logger, out io.Writer, dirs []string) *Vault {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if out == nil {
		out = io.Discard
	}
	if dirs == nil {
		dirs = PluginDirs(cfg)
	}
	return &Vault{cfg: cfg, log: log, out: out, dirs: dirs,
		r: &runner{progress: func(f string, a ...any) { fmt.Fprintf(out, f+"\n", a...) }}}
}

// Pad is the opened pad.
func (v *Vault) Pad() *pad.Pad { return v.pad }

// Machine is the machine in the unlocked vault.
func (v *Vault) Machine() *pad.Machine { return v.machine }

// Spec is the machine as machine.json in the unlocked vault describes it.
func (v *Vault) Spec() vmm.Spec { return v.machineSpec }

// Journal is this command's journal on the pad.
func (v *Vault) Journal() *pad.Journal { return v.r.journal }

// open opens the configured pad and takes its lock for command (before
// anything is changed; the kernel lets go of it if this process dies),
// unless a checkout holds it already, then opens a journal file named
// journalName. lateLock keeps the lock past shutdown (see holdLock).
func (v *Vault) open(command, journalName string, lateLock bool) error {
	p, err := pad.Open(v.cfg.Pad.Path)
	if err != nil {
		return err
	}
	v.pad = p
	if v.lock == nil {
		lock, err := pad.LockPad(p.Dir, command, false)
		if err != nil {
			return err
		}
		v.holdLock(lock, lateLock)
	}
	v.r.journal, err = pad.NewJournal(p.JournalDir(), journalName)
	return err
}

// holdLock takes lock as the pad's; late: it is released after the
// stages that end a session (a copy-out to the store), not at shutdown.
func (v *Vault) holdLock(lock *pad.Lock, late bool) {
	v.lock = lock
	v.r.pushAt(late, "release the pad", func(context.Context) error { return lock.Release() })
}

// lockDir takes the lock of the pad directory, made if missing (a PC
// that has no pad yet, before a copy-in), for command; late as in
// holdLock.
func (v *Vault) lockDir(command string, late bool) error {
	dir := v.cfg.Pad.Path
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pad %s: %w", dir, err)
	}
	lock, err := pad.LockPad(dir, command, false)
	if err != nil {
		return err
	}
	v.holdLock(lock, late)
	return nil
}

// start starts the plugin name, which must serve kind, configured with
// its block; the host (made on first use) stops it at the end.
func (v *Vault) start(ctx context.Context, name string, kind sdk.Kind) (*pluginhost.Plugin, error) {
	if v.host == nil {
		v.host = NewHost(v.cfg, v.log, v.dirs)
		host := v.host
		v.r.push("stop plugins", func(context.Context) error {
			host.Close()
			v.host = nil // a stage after shutdown (a backup) starts a new one
			return nil
		})
	}
	return v.host.Start(ctx, name, kind, v.cfg.PluginConfigJSON(name))
}

// startCrypt starts the crypt plugin the host's config names. A pad whose
// pad.json names another is refused: the pad never chooses what runs.
func (v *Vault) startCrypt(ctx context.Context) error {
	if made := v.pad.Meta.Crypt.Name; made != "" && made != v.cfg.Plugins.Crypt {
		return fmt.Errorf("the pad's vault was made by crypt plugin %s, but plugins.crypt in %s is %s: set plugins.crypt = %q: %w",
			made, v.cfg.Source, v.cfg.Plugins.Crypt, made, sdk.ErrInvalidConfig)
	}
	var err error
	v.crypt, err = v.start(ctx, v.cfg.Plugins.Crypt, sdk.KindCrypt)
	return err
}

// unlockOptions say how the vault is opened.
type unlockOptions struct {
	credential CredentialFunc
	// tries: how often a wrong passphrase is asked again (at least once).
	tries int
	// acceptPadPlugins takes the plugins now on the pad as good.
	acceptPadPlugins bool
	// boot: what a boot chain that differs from the vault's record does.
	boot bootCheck
}

// unlock opens the vault and finds the machine. A wrong passphrase is
// asked again, up to o.tries times.
func (v *Vault) unlock(ctx context.Context, o unlockOptions) error {
	sweepMountDirs(v.pad.Meta.ID)
	mnt, err := os.MkdirTemp("", "soulpad-"+v.pad.Meta.ID+"-")
	if err != nil {
		return err
	}
	out, err := v.unlockWith(ctx, mnt, o)
	if err != nil {
		_ = os.Remove(mnt)
		return err
	}
	v.mountDir, v.plaintext = mnt, out.PlaintextDir
	v.r.push("lock vault", v.lockVault)
	// The plugins carried on the pad must be the ones the vault saw last.
	if !o.acceptPadPlugins {
		if err := v.pad.CheckPlugins(v.plaintext); err != nil {
			return err
		}
	}
	v.padPluginsOK = true
	if v.bootNote, err = v.checkBoot(ctx, o.boot); err != nil {
		return err
	}
	v.machine = pad.MachineIn(v.plaintext, v.pad.Meta.Machine)
	if v.machineSpec, err = v.machine.Spec(); err != nil {
		return err
	}
	v.recoverSuspends()
	if n, err := v.machine.CleanPending(); err != nil {
		return err
	} else if n > 0 {
		_ = v.r.journal.Append(pad.Entry{Stage: StageUnlock, Event: "info", Message: fmt.Sprintf("removed %d unsealed suspend point(s) left by an interrupted suspend", n)})
	}
	return nil
}

// unlockWith asks for the credential and unlocks the vault at mnt, again
// after a wrong passphrase while tries are left.
func (v *Vault) unlockWith(ctx context.Context, mnt string, o unlockOptions) (crypt.UnlockResponse, error) {
	tries := max(o.tries, 1)
	for try := 1; ; try++ {
		var cred crypt.Credential
		if !v.crypt.Info.Has(crypt.CapNoEncryption) {
			if o.credential == nil {
				return crypt.UnlockResponse{}, fmt.Errorf("the vault needs a passphrase or key file and none was given")
			}
			c, err := o.credential(ctx)
			if err != nil {
				return crypt.UnlockResponse{}, err
			}
			cred = c
		} else if try == 1 {
			v.r.progress("  warning: %s does not encrypt the vault", v.crypt.Name)
		}
		out, err := v.crypt.Crypt().Unlock(ctx, crypt.UnlockRequest{VaultPath: v.pad.VaultPath(), Credential: cred, MountDir: mnt})
		cred.Wipe()
		switch {
		case err == nil:
			return out, nil
		case errors.Is(err, sdk.ErrWrongPassphrase) && try < tries && ctx.Err() == nil:
			v.r.progress("  wrong passphrase or key file; try again (%d of %d tries left)", tries-try, tries)
		case errors.Is(err, sdk.ErrWrongPassphrase) && tries > 1:
			return out, fmt.Errorf("%w (%d tries); nothing was changed", v.crypt.Err("unlock "+v.pad.VaultPath(), err), tries)
		default:
			return out, v.crypt.Err("unlock "+v.pad.VaultPath(), err)
		}
	}
}

// lockVault records the pad's plugins in the vault (what it will vouch
// for next time) and locks it; if the crypt plugin died, it makes sure
// the plaintext does not outlive it (a helper daemon, a dead FUSE mount).
func (v *Vault) lockVault(ctx context.Context) error {
	if v.padPluginsOK && !v.crypt.Exited() && !v.unplugged {
		if err := v.pad.RecordPlugins(v.plaintext); err != nil {
			v.log.Warn("the pad's plugins were not recorded in the vault", "error", err)
		}
	}
	if v.crypt.Exited() {
		return detachMount(v.mountDir)
	}
	_, err := v.crypt.Crypt().Lock(ctx, crypt.LockRequest{VaultPath: v.pad.VaultPath()})
	if err != nil && v.crypt.Exited() {
		err = detachMount(v.mountDir)
	} else {
		err = v.crypt.Err("lock", err)
	}
	if err == nil {
		_ = os.Remove(v.mountDir)
	}
	return err
}

// VaultOptions open a pad's vault outside a session (to list or prune
// its points).
type VaultOptions struct {
	Config *config.Config
	Log    hclog.Logger
	Out    io.Writer
	// Command names the holder of the pad's lock ("points").
	Command         string
	Credential      CredentialFunc
	CredentialTries int
	// AcceptPadPlugins: as in Options.
	AcceptPadPlugins bool
	// WithVMM also starts the VMM plugin (to collect disk state).
	WithVMM bool
	// PluginDirs, when set, replaces the search path derived from config.
	PluginDirs []string
}

// OpenedVault is a pad whose vault is open, with its lock held, for a
// maintenance command.
type OpenedVault struct {
	*Vault
	// VMM is the VMM plugin when WithVMM was set.
	VMM *pluginhost.Plugin
}

// OpenVault takes the pad's lock, starts its plugins and unlocks the
// vault, as a session's boot and unlock stages do. Close undoes it all.
func OpenVault(ctx context.Context, o VaultOptions) (*OpenedVault, error) {
	v, err := OpenPad(ctx, o)
	if err != nil {
		return nil, err
	}
	ov := &OpenedVault{Vault: v}
	err = v.r.bounded(ctx, StageBoot, v.stageTimeout(), false, func(ctx context.Context, _ *string) error {
		if err := v.startCrypt(ctx); err != nil || !o.WithVMM {
			return err
		}
		ov.VMM, err = v.start(ctx, v.cfg.Plugins.VMM, sdk.KindVMM)
		return err
	})
	if err == nil {
		err = v.r.bounded(ctx, StageUnlock, v.stageTimeout(), false, func(ctx context.Context, _ *string) error {
			return v.unlock(ctx, unlockOptions{credential: o.Credential, tries: o.CredentialTries, acceptPadPlugins: o.AcceptPadPlugins})
		})
	}
	if err != nil {
		return nil, errors.Join(err, v.Close())
	}
	return ov, nil
}

// OpenPad opens the configured pad for the command o.Command: its lock
// and a journal of its own; no plugin runs yet and the vault stays
// locked. Close releases it.
func OpenPad(_ context.Context, o VaultOptions) (*Vault, error) {
	cmd := o.Command
	if cmd == "" {
		cmd = "points"
	}
	v := newVault(o.Config, o.Log, o.Out, o.PluginDirs)
	v.r.quiet = true
	if err := v.open(cmd, cmd+"-"+pad.NewID()[:8], false); err != nil {
		return nil, errors.Join(err, v.Close())
	}
	return v, nil
}

// Close locks the vault, stops the plugins and releases the pad. Closing
// a closed Vault does nothing.
func (v *Vault) Close() error {
	if v == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), v.stageTimeout())
	defer cancel()
	return v.r.runAll(ctx)
}

func (v *Vault) stageTimeout() time.Duration {
	return time.Duration(v.cfg.Session.StageTimeoutSeconds) * time.Second
}

// PluginDirs is the host's plugin search path for cfg: plugins.dirs,
// then plugins/ beside the soulpad executable. The pad's own plugins/
// comes after them, on the pad's terms (see NewHost).
func PluginDirs(cfg *config.Config) []string {
	dirs := append([]string(nil), cfg.Plugins.Dirs...)
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			dirs = append(dirs, filepath.Join(filepath.Dir(exe), "plugins"))
		}
	}
	return dirs
}
