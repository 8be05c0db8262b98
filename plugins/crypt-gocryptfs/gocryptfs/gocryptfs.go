// Package gocryptfs implements crypt-gocryptfs: the vault is a gocryptfs
// cipher directory, mounted at the plaintext directory while unlocked.
// The passphrase reaches gocryptfs on its standard input, never on its
// command line or in a file.
package gocryptfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/crypt"
	"github.com/soulpad/soulpad/sdk/mountinfo"
)

// Version is the plugin's version.
const Version = "0.1.0"

// MinPassphrase is the shortest passphrase accepted at create, as in the
// original SoulPad (a key file has no minimum).
const MinPassphrase = 20

// Config is the plugin's block in site.hcl.
type Config struct {
	// Binary is gocryptfs (default: from PATH).
	Binary string `json:"binary"`
	// ScryptLogN is the scrypt cost (log2 N) for new vaults; default 16,
	// gocryptfs's own default. Lower is faster and weaker.
	ScryptLogN int `json:"scrypt_logn"`
}

// Plugin is crypt-gocryptfs.
type Plugin struct {
	log hclog.Logger

	mu      sync.Mutex
	cfg     Config
	bin     string
	mounted map[string]string // vault → mount point
}

// New returns the plugin, logging to log (nil: nowhere).
func New(log hclog.Logger) *Plugin {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Plugin{log: log, mounted: map[string]string{}}
}

var (
	_ crypt.Crypt    = (*Plugin)(nil)
	_ sdk.Shutdowner = (*Plugin)(nil)
)

// Info implements sdk.Plugin.
func (p *Plugin) Info(context.Context, sdk.InfoRequest) (sdk.InfoResponse, error) {
	return sdk.InfoResponse{Name: "crypt-gocryptfs", Kind: sdk.KindCrypt, Version: Version, APIVersions: []int{crypt.APIVersion},
		Capabilities: []string{crypt.CapKeyFile},
		Description:  "gocryptfs cipher directory over FUSE (no device-mapper needed)"}, nil
}

// Configure implements sdk.Plugin.
func (p *Plugin) Configure(_ context.Context, req sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	c := Config{ScryptLogN: 16}
	if err := req.Decode(&c); err != nil {
		return sdk.ConfigureResponse{}, fmt.Errorf("crypt-gocryptfs: %w", err)
	}
	// Relative paths are the site config's (the plugin's working directory).
	c.Binary = sdk.ConfigProgram(c.Binary)
	if c.ScryptLogN < 10 || c.ScryptLogN > 28 {
		return sdk.ConfigureResponse{}, fmt.Errorf("crypt-gocryptfs: scrypt_logn %d is out of range 10..28: %w", c.ScryptLogN, sdk.ErrInvalidConfig)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg, p.bin = c, ""
	return sdk.ConfigureResponse{}, nil
}

func (p *Plugin) binary() (string, error) {
	if p.bin != "" {
		return p.bin, nil
	}
	name := p.cfg.Binary
	if name == "" {
		name = "gocryptfs"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("crypt-gocryptfs: %s not found (install gocryptfs): %w", name, sdk.ErrIncompatibleHost)
	}
	p.bin = path
	return path, nil
}

// password turns a credential into the line gocryptfs reads on stdin. A key
// file becomes the hex SHA-256 of its bytes, so any file works as a key.
func password(c crypt.Credential) ([]byte, error) {
	switch {
	case len(c.KeyFile) > 0:
		sum := sha256.Sum256(c.KeyFile)
		out := make([]byte, hex.EncodedLen(len(sum)))
		hex.Encode(out, sum[:])
		return out, nil
	case len(c.Passphrase) > 0:
		if bytes.ContainsAny(c.Passphrase, "\n\r") {
			return nil, fmt.Errorf("crypt-gocryptfs: a passphrase cannot contain a line break: %w", sdk.ErrInvalidArgument)
		}
		return bytes.Clone(c.Passphrase), nil
	}
	return nil, fmt.Errorf("crypt-gocryptfs: no passphrase or key file given: %w", sdk.ErrInvalidArgument)
}

func wipe(b []byte) {
	for i := range b {
		b[i] = 0
	}
}

// run runs gocryptfs with the password on stdin.
func (p *Plugin) run(ctx context.Context, pw []byte, args ...string) (int, string, error) {
	bin, err := p.binary()
	if err != nil {
		return 0, "", err
	}
	in := append(bytes.Clone(pw), '\n')
	defer wipe(in)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = bytes.NewReader(in)
	// A file, not a pipe: the mount daemon inherits it and lives on.
	out, err := os.CreateTemp("", "soulpad-gocryptfs-*.log")
	if err != nil {
		return 0, "", err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	msg, _ := os.ReadFile(out.Name())
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), strings.TrimSpace(string(msg)), nil
	}
	return 0, strings.TrimSpace(string(msg)), err
}

// Create implements crypt.Crypt.
func (p *Plugin) Create(ctx context.Context, req crypt.CreateRequest) (crypt.CreateResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := os.Lstat(req.VaultPath); err == nil {
		return crypt.CreateResponse{}, fmt.Errorf("crypt-gocryptfs: create %s: %w", req.VaultPath, sdk.ErrAlreadyExists)
	}
	if len(req.Credential.KeyFile) == 0 && len(req.Credential.Passphrase) < MinPassphrase {
		return crypt.CreateResponse{}, fmt.Errorf("crypt-gocryptfs: the passphrase must have at least %d characters (or use a key file): %w", MinPassphrase, sdk.ErrInvalidArgument)
	}
	pw, err := password(req.Credential)
	if err != nil {
		return crypt.CreateResponse{}, err
	}
	defer wipe(pw)
	tmp := req.VaultPath + ".creating"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return crypt.CreateResponse{}, fmt.Errorf("crypt-gocryptfs: create: %w", err)
	}
	code, out, err := p.run(ctx, pw, "-init", "-q", "-scryptn", strconv.Itoa(p.cfg.ScryptLogN), tmp)
	if err == nil && code != 0 {
		err = fmt.Errorf("gocryptfs -init exited %d: %s", code, out)
	}
	if err == nil {
		err = os.Rename(tmp, req.VaultPath)
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return crypt.CreateResponse{}, fmt.Errorf("crypt-gocryptfs: create %s: %w", req.VaultPath, err)
	}
	return crypt.CreateResponse{}, nil
}

// Unlock implements crypt.Crypt: it mounts the vault at MountDir.
func (p *Plugin) Unlock(ctx context.Context, req crypt.UnlockRequest) (crypt.UnlockResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if mnt, ok := p.mounted[req.VaultPath]; ok && isMountPoint(mnt) {
		return crypt.UnlockResponse{PlaintextDir: mnt}, nil
	}
	if _, err := os.Stat(req.VaultPath); errors.Is(err, fs.ErrNotExist) {
		return crypt.UnlockResponse{}, fmt.Errorf("crypt-gocryptfs: unlock %s: %w", req.VaultPath, sdk.ErrNotFound)
	}
	if _, err := os.Stat(filepath.Join(req.VaultPath, "gocryptfs.conf")); err != nil {
		return crypt.UnlockResponse{}, fmt.Errorf("crypt-gocryptfs: unlock %s: no gocryptfs.conf, not a gocryptfs vault: %w", req.VaultPath, sdk.ErrCorrupt)
	}
	if req.MountDir == "" {
		return crypt.UnlockResponse{}, fmt.Errorf("crypt-gocryptfs: unlock: a mount directory is needed: %w", sdk.ErrInvalidArgument)
	}
	pw, err := password(req.Credential)
	if err != nil {
		return crypt.UnlockResponse{}, err
	}
	defer wipe(pw)
	// The host holds the pad's lock: any other mount of this vault was
	// left by a plugin that died mid-unlock or was killed, with the key
	// in a gocryptfs daemon. Take it down before anything else.
	for _, stale := range mountsOf(req.VaultPath) {
		if err := unmount(ctx, stale); err != nil {
			p.log.Error("a stale mount of the vault could not be removed", "mount", stale, "error", err)
		} else {
			p.log.Warn("removed a stale mount of the vault left by an earlier session", "mount", stale)
		}
	}
	// Not cut short by ctx: killing the mount helper would leave its
	// daemon to mount later, unseen. It takes a moment (the key
	// derivation); a cancelled call is undone right after.
	code, out, err := p.run(context.WithoutCancel(ctx), pw, "-q", "-nosyslog", req.VaultPath, req.MountDir)
	if err == nil && ctx.Err() != nil {
		if code == 0 {
			_ = unmount(context.WithoutCancel(ctx), req.MountDir)
		}
		err = ctx.Err()
	}
	if err != nil {
		return crypt.UnlockResponse{}, fmt.Errorf("crypt-gocryptfs: unlock %s: %w", req.VaultPath, err)
	}
	switch code {
	case 0:
	case 12:
		return crypt.UnlockResponse{}, fmt.Errorf("crypt-gocryptfs: unlock %s: %w", req.VaultPath, sdk.ErrWrongPassphrase)
	case 23:
		return crypt.UnlockResponse{}, fmt.Errorf("crypt-gocryptfs: unlock %s: gocryptfs.conf is unreadable (%s): %w", req.VaultPath, out, sdk.ErrCorrupt)
	case 10:
		return crypt.UnlockResponse{}, fmt.Errorf("crypt-gocryptfs: unlock: mount directory %s is not empty: %w", req.MountDir, sdk.ErrBusy)
	default:
		return crypt.UnlockResponse{}, fmt.Errorf("crypt-gocryptfs: unlock %s: gocryptfs exited %d: %s", req.VaultPath, code, out)
	}
	p.mounted[req.VaultPath] = req.MountDir
	return crypt.UnlockResponse{PlaintextDir: req.MountDir}, nil
}

// Lock implements crypt.Crypt: it unmounts (gocryptfs then exits and its
// key is gone). Lock on a locked vault returns nil.
func (p *Plugin) Lock(ctx context.Context, req crypt.LockRequest) (crypt.LockResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	mnt, ok := p.mounted[req.VaultPath]
	if !ok {
		return crypt.LockResponse{}, nil
	}
	if err := unmount(ctx, mnt); err != nil {
		return crypt.LockResponse{}, fmt.Errorf("crypt-gocryptfs: lock %s: %w", req.VaultPath, err)
	}
	delete(p.mounted, req.VaultPath)
	return crypt.LockResponse{}, nil
}

// Shutdown implements sdk.Shutdowner: a vault still mounted when the
// plugin ends is unmounted. gocryptfs would otherwise keep it open, key
// and all, after soulpad is gone (say it crashed): on a borrowed PC.
func (p *Plugin) Shutdown() {
	p.mu.Lock()
	var open []string
	for vault := range p.mounted {
		open = append(open, vault)
	}
	p.mu.Unlock()
	for _, vault := range open {
		if err := crypt.LockWhenFree(p, vault); err != nil {
			p.log.Error("the plugin is ending with the vault still open", "vault", vault, "error", err)
			continue
		}
		p.log.Warn("vault locked as the plugin ends (the host let go of it unlocked)", "vault", vault)
	}
}

// unmount unmounts a FUSE mount, retrying while it is busy.
func unmount(ctx context.Context, mnt string) error {
	var last string
	for i := 0; i < 50; i++ {
		if !isMountPoint(mnt) {
			return nil
		}
		out, err := exec.CommandContext(ctx, "fusermount3", "-u", mnt).CombinedOutput()
		if err == nil {
			// gocryptfs exits once unmounted; wait for the mount to go.
			for j := 0; j < 50 && isMountPoint(mnt); j++ {
				time.Sleep(20 * time.Millisecond)
			}
			return nil
		}
		last = strings.TrimSpace(string(out))
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("unmount %s: %s", mnt, last)
}

// isMountPoint reports whether dir is a mount point.
func isMountPoint(dir string) bool { return mountinfo.IsMountPoint(dir) }

// mountsOf lists the mount points of gocryptfs mounts whose cipher
// directory is vault.
func mountsOf(vault string) []string {
	abs, _ := filepath.Abs(vault)
	var out []string
	for _, m := range mountinfo.Mounts() {
		if strings.HasSuffix(m.FSType, "gocryptfs") && m.Source == abs {
			out = append(out, m.Point)
		}
	}
	return out
}
