// Package luks implements crypt-luks: the vault is a LUKS2 container
// (aes-xts-plain64, 512-bit key, 4096-byte sectors, argon2id) holding an
// ext4 file system. cryptsetup formats it and manages its key slots (with
// secrets on stdin or an inherited pipe, never argv); luks.go unlocks it.
// Two engines write the same bytes:
//
//   - kernel: dm-crypt through luks.go's device-mapper path, then mount;
//   - userspace: the payload decrypted in this process and served as a
//     file over FUSE, then loop-mounted — for hosts without device-mapper.
//
// "auto" takes the kernel engine where device-mapper exists.
package luks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/crypt"
)

// Version is the plugin's version.
const Version = "0.1.0"

// MinPassphrase is the shortest passphrase accepted, as in the original
// SoulPad; a key file has no minimum.
const MinPassphrase = 20

// Config is the plugin's block in site.hcl.
type Config struct {
	// Engine is "auto", "kernel" or "userspace".
	Engine string `json:"engine"`
	// Argon2 cost for new key slots: memory in KiB, iterations, threads.
	// The defaults unlock in well under a second on a small host.
	Argon2MemoryKiB  int `json:"argon2_memory_kib"`
	Argon2Iterations int `json:"argon2_iterations"`
	Argon2Threads    int `json:"argon2_threads"`
	// Fill makes create write the whole container (encrypted zeros), so
	// that it shows nothing of which blocks hold data and later writes
	// overwrite in place. Off, the container starts sparse: quicker to
	// make, but a file system that allocates serializes direct writes.
	Fill bool `json:"fill"`
	// Filesystem inside new containers: "xfs" (with reflink, so a VMM
	// plugin can seal a memory file by cloning it), "ext4", or "auto":
	// xfs where mkfs.xfs exists and the container has 400 MiB or more
	// (XFS needs 300 MiB), else ext4. Unlock mounts either.
	Filesystem string `json:"filesystem"`
}

// Plugin is crypt-luks.
type Plugin struct {
	log hclog.Logger

	mu   sync.Mutex
	cfg  Config
	open map[string]*opened
}

type opened struct {
	plain   string
	payload *payload      // userspace engine
	kernel  *kernelVolume // kernel engine
}

// New returns the plugin, logging to log (nil: nowhere).
func New(log hclog.Logger) *Plugin {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if !erasing {
		log.Warn("built without GOEXPERIMENT=runtimesecret (the Makefile sets it): copies of the volume key that luks.go leaves on the heap are not erased after lock")
	}
	return &Plugin{log: log, cfg: defaults(), open: map[string]*opened{}}
}

func defaults() Config {
	return Config{Engine: "auto", Argon2MemoryKiB: 65536, Argon2Iterations: 4, Argon2Threads: 2, Fill: true, Filesystem: "auto"}
}

var (
	_ crypt.Crypt             = (*Plugin)(nil)
	_ crypt.CredentialManager = (*Plugin)(nil)
	_ sdk.Shutdowner          = (*Plugin)(nil)
)

// Info implements sdk.Plugin.
func (p *Plugin) Info(context.Context, sdk.InfoRequest) (sdk.InfoResponse, error) {
	return sdk.InfoResponse{Name: "crypt-luks", Kind: sdk.KindCrypt, Version: Version, APIVersions: []int{crypt.APIVersion},
		Capabilities: []string{crypt.CapCredentials, crypt.CapKeyFile},
		Description:  "LUKS2 container with XFS (reflink) or ext4 inside; dm-crypt, or a userspace engine over FUSE"}, nil
}

// Configure implements sdk.Plugin.
func (p *Plugin) Configure(_ context.Context, req sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	c := defaults()
	if err := req.Decode(&c); err != nil {
		return sdk.ConfigureResponse{}, fmt.Errorf("crypt-luks: %w", err)
	}
	switch c.Engine {
	case "auto", "kernel", "userspace":
	default:
		return sdk.ConfigureResponse{}, fmt.Errorf("crypt-luks: engine %q: want auto, kernel or userspace: %w", c.Engine, sdk.ErrInvalidConfig)
	}
	switch c.Filesystem {
	case "auto", "xfs", "ext4":
	default:
		return sdk.ConfigureResponse{}, fmt.Errorf("crypt-luks: filesystem %q: want auto, xfs or ext4: %w", c.Filesystem, sdk.ErrInvalidConfig)
	}
	if c.Argon2MemoryKiB < 8192 || c.Argon2MemoryKiB > 4<<20 || c.Argon2Iterations < 4 || c.Argon2Iterations > 1000 || c.Argon2Threads < 1 || c.Argon2Threads > 16 {
		return sdk.ConfigureResponse{}, fmt.Errorf("crypt-luks: argon2 settings out of range (memory 8192..4194304 KiB, iterations 4..1000 (cryptsetup's minimum is 4), threads 1..16): %w", sdk.ErrInvalidConfig)
	}
	p.mu.Lock()
	p.cfg = c
	p.mu.Unlock()
	return sdk.ConfigureResponse{}, nil
}

// engine is the engine to use now.
func (p *Plugin) engine() (string, error) {
	switch p.cfg.Engine {
	case "kernel":
		if !KernelAvailable() {
			return "", fmt.Errorf("crypt-luks: engine \"kernel\" needs device-mapper, which this host lacks (use engine = \"auto\"): %w", sdk.ErrIncompatibleHost)
		}
		return "kernel", nil
	case "userspace":
		return "userspace", nil
	}
	if KernelAvailable() {
		return "kernel", nil
	}
	return "userspace", nil
}

func (p *Plugin) pbkdfArgs() []string {
	return []string{"--pbkdf", "argon2id", "--pbkdf-memory", strconv.Itoa(p.cfg.Argon2MemoryKiB),
		"--pbkdf-force-iterations", strconv.Itoa(p.cfg.Argon2Iterations), "--pbkdf-parallel", strconv.Itoa(p.cfg.Argon2Threads)}
}

// cryptsetup runs cryptsetup with stdin (the secret) and, when extra is
// set, a second secret readable at /dev/fd/3.
func cryptsetup(ctx context.Context, stdin, extra []byte, args ...string) error {
	cmd := exec.CommandContext(ctx, "cryptsetup", args...)
	cmd.Stdin = bytes.NewReader(stdin)
	if extra != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		defer r.Close()
		cmd.ExtraFiles = []*os.File{r}
		go func() {
			_, _ = w.Write(extra)
			w.Close()
		}()
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return fmt.Errorf("cryptsetup not found (install cryptsetup-bin): %w", sdk.ErrIncompatibleHost)
		}
		return fmt.Errorf("cryptsetup %s: %v: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Create implements crypt.Crypt.
func (p *Plugin) Create(ctx context.Context, req crypt.CreateRequest) (crypt.CreateResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := os.Lstat(req.VaultPath); err == nil {
		return crypt.CreateResponse{}, fmt.Errorf("crypt-luks: create %s: %w", req.VaultPath, sdk.ErrAlreadyExists)
	}
	if err := checkNew(req.Credential); err != nil {
		return crypt.CreateResponse{}, err
	}
	sec, err := secret(req.Credential)
	if err != nil {
		return crypt.CreateResponse{}, err
	}
	size := int64(req.SizeBytes)
	if size == 0 {
		size = 2 << 30
	}
	size = size &^ (1<<20 - 1) // whole MiB: a whole number of 4096-byte sectors
	if size < 64<<20 {
		return crypt.CreateResponse{}, fmt.Errorf("crypt-luks: a vault needs at least 64 MiB (16 MiB go to the LUKS2 header): %w", sdk.ErrInvalidArgument)
	}
	fsType, err := p.filesystem(size - 16<<20)
	if err != nil {
		return crypt.CreateResponse{}, err
	}
	tmp := req.VaultPath + ".creating"
	_ = os.Remove(tmp)
	fail := func(err error) (crypt.CreateResponse, error) {
		_ = os.Remove(tmp)
		return crypt.CreateResponse{}, fmt.Errorf("crypt-luks: create %s: %w", req.VaultPath, err)
	}
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fail(err)
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		return fail(err)
	}
	args := append([]string{"luksFormat", "--batch-mode", "--type", "luks2", "--cipher", "aes-xts-plain64", "--key-size", "512",
		"--sector-size", "4096"}, p.pbkdfArgs()...)
	if err := cryptsetup(ctx, sec, nil, append(args, "--key-file", "-", tmp)...); err != nil {
		return fail(err)
	}
	// The file system inside, through the userspace engine (no
	// device-mapper needed).
	u, err := unseal(tmp, sec)
	if err != nil {
		return fail(err)
	}
	pl, err := servePayload(tmp, u)
	u.wipe()
	if err != nil {
		return fail(err)
	}
	if p.cfg.Fill {
		start := time.Now()
		err := pl.fill(ctx, func(done, total int64) {
			p.log.Debug("filling the new container", "path", req.VaultPath, "done_mib", done>>20, "total_mib", total>>20)
			if req.OnProgress != nil {
				req.OnProgress(crypt.Progress{Phase: "writing the container end to end", BytesDone: uint64(done), BytesTotal: uint64(total)})
			}
		})
		if err != nil {
			pl.close()
			return fail(err)
		}
		p.log.Debug("container filled", "mib", pl.size>>20, "seconds", time.Since(start).Seconds())
	}
	mkfs := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-b", "4096", "-L", "soulpad", "-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0", pl.File())
	if fsType == "xfs" {
		mkfs = exec.CommandContext(ctx, "mkfs.xfs", "-q", "-f", "-K", "-m", "reflink=1", "-L", "soulpad", pl.File())
	}
	out, err := mkfs.CombinedOutput()
	cerr := pl.close()
	if err != nil {
		return fail(fmt.Errorf("mkfs.%s: %v: %s", fsType, err, out))
	}
	if cerr != nil {
		return fail(cerr)
	}
	if err := os.Rename(tmp, req.VaultPath); err != nil {
		return fail(err)
	}
	return crypt.CreateResponse{}, nil
}

// Unlock implements crypt.Crypt.
func (p *Plugin) Unlock(ctx context.Context, req crypt.UnlockRequest) (crypt.UnlockResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if o, ok := p.open[req.VaultPath]; ok {
		return crypt.UnlockResponse{PlaintextDir: o.plain}, nil
	}
	sec, err := secret(req.Credential)
	if err != nil {
		return crypt.UnlockResponse{}, err
	}
	if req.MountDir == "" {
		return crypt.UnlockResponse{}, fmt.Errorf("crypt-luks: unlock: a mount directory is needed: %w", sdk.ErrInvalidArgument)
	}
	if _, err := os.Stat(req.VaultPath); errors.Is(err, fs.ErrNotExist) {
		return crypt.UnlockResponse{}, fmt.Errorf("crypt-luks: unlock %s: %w", req.VaultPath, sdk.ErrNotFound)
	}
	eng, err := p.engine()
	if err != nil {
		return crypt.UnlockResponse{}, err
	}
	if eng == "kernel" {
		kv, err := kernelUnlock(req.VaultPath, sec, "soulpad-"+strconv.FormatInt(time.Now().UnixNano(), 36), req.MountDir)
		if err != nil {
			return crypt.UnlockResponse{}, err
		}
		p.open[req.VaultPath] = &opened{plain: req.MountDir, kernel: kv}
		return crypt.UnlockResponse{PlaintextDir: req.MountDir}, nil
	}
	u, err := unseal(req.VaultPath, sec)
	if err != nil {
		return crypt.UnlockResponse{}, err
	}
	sweepDead(p.log)
	pl, err := servePayload(req.VaultPath, u)
	u.wipe()
	if err != nil {
		return crypt.UnlockResponse{}, err
	}
	lo, err := exec.CommandContext(ctx, "losetup", "--find", "--show", "--direct-io=on", pl.File()).CombinedOutput()
	if err != nil {
		pl.close()
		return crypt.UnlockResponse{}, fmt.Errorf("crypt-luks: losetup: %v: %s", err, lo)
	}
	pl.loop = strings.TrimSpace(string(lo))
	fsType, err := detectFS(pl.File())
	if err != nil {
		pl.close()
		return crypt.UnlockResponse{}, err
	}
	out, err := exec.CommandContext(ctx, "mount", "-t", fsType, "-o", "nosuid,nodev"+mountData(fsType, ","), pl.loop, req.MountDir).CombinedOutput()
	if err != nil {
		pl.close()
		return crypt.UnlockResponse{}, fmt.Errorf("crypt-luks: mount the vault's %s: %v: %s", fsType, err, strings.TrimSpace(string(out)))
	}
	// mkfs makes the root 0755: other local users could list the vault.
	if err := os.Chmod(req.MountDir, 0o700); err != nil {
		p.log.Warn("could not close the vault's root to other users", "error", err)
	}
	p.open[req.VaultPath] = &opened{plain: req.MountDir, payload: pl}
	return crypt.UnlockResponse{PlaintextDir: req.MountDir}, nil
}

// Lock implements crypt.Crypt: the file system is unmounted first, then the loop
// device goes, then the FUSE payload (or the dm-crypt mapping) and the
// key with it. Lock on a locked vault returns nil.
func (p *Plugin) Lock(_ context.Context, req crypt.LockRequest) (crypt.LockResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	o, ok := p.open[req.VaultPath]
	if !ok {
		return crypt.LockResponse{}, nil
	}
	if o.kernel != nil {
		if err := o.kernel.lock(); err != nil {
			return crypt.LockResponse{}, fmt.Errorf("crypt-luks: lock %s: %w", req.VaultPath, err)
		}
	} else {
		if err := unmountRetry(o.plain); err != nil {
			return crypt.LockResponse{}, fmt.Errorf("crypt-luks: lock %s: unmount %s: %w", req.VaultPath, o.plain, err)
		}
		if err := o.payload.close(); err != nil {
			return crypt.LockResponse{}, fmt.Errorf("crypt-luks: lock %s: %w", req.VaultPath, err)
		}
	}
	delete(p.open, req.VaultPath)
	return crypt.LockResponse{}, nil
}

// Shutdown implements sdk.Shutdowner. It waits for a call in flight (a
// cancelled create removes its half-made file and unmounts) and locks any
// vault still open: the userspace engine's FUSE server ends with this
// process, and the file system must be unmounted, its data written, before it does.
func (p *Plugin) Shutdown() {
	p.mu.Lock()
	var open []string
	for path := range p.open {
		open = append(open, path)
	}
	p.mu.Unlock()
	for _, path := range open {
		if err := crypt.LockWhenFree(p, path); err != nil {
			p.log.Error("the plugin is ending with the vault still open", "vault", path, "error", err)
			continue
		}
		p.log.Warn("vault locked as the plugin ends (the host let go of it unlocked)", "vault", path)
	}
}
