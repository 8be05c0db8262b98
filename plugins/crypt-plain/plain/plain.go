// Package plain implements crypt-plain: a crypt plugin whose vault is a
// plain, unencrypted directory. It refuses to work unless its config block
// sets allow_no_encryption = true, so nobody gets an unencrypted pad by
// accident.
package plain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/crypt"
)

// Version is the plugin's version.
const Version = "0.1.0"

// marker names the file that tells a crypt-plain vault from any directory.
const marker = ".soulpad-plain-vault"

// Config is the plugin's block in site.hcl.
type Config struct {
	// AllowNoEncryption must be true: the vault is stored in the clear.
	AllowNoEncryption bool `json:"allow_no_encryption"`
}

// Plugin is crypt-plain.
type Plugin struct {
	log hclog.Logger

	mu         sync.Mutex
	configured bool
	unlocked   map[string]bool
}

// New returns the plugin, logging to log (nil: nowhere).
func New(log hclog.Logger) *Plugin {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Plugin{log: log, unlocked: map[string]bool{}}
}

var _ crypt.Crypt = (*Plugin)(nil)

// Info implements sdk.Plugin.
func (p *Plugin) Info(context.Context, sdk.InfoRequest) (sdk.InfoResponse, error) {
	return sdk.InfoResponse{
		Name:         "crypt-plain",
		Kind:         sdk.KindCrypt,
		Version:      Version,
		APIVersions:  []int{crypt.APIVersion},
		Capabilities: []string{crypt.CapNoEncryption},
		Description:  "no encryption: the vault is a plain directory (tests and measurements only)",
	}, nil
}

// Configure implements sdk.Plugin.
func (p *Plugin) Configure(_ context.Context, req sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	var cfg Config
	if err := req.Decode(&cfg); err != nil {
		return sdk.ConfigureResponse{}, fmt.Errorf("crypt-plain: %w", err)
	}
	if !cfg.AllowNoEncryption {
		return sdk.ConfigureResponse{}, fmt.Errorf("crypt-plain: stores the vault unencrypted; set allow_no_encryption = true in plugin \"crypt-plain\" { … } to use it anyway (tests and measurements only): %w", sdk.ErrInvalidConfig)
	}
	p.mu.Lock()
	p.configured = true
	p.mu.Unlock()
	return sdk.ConfigureResponse{}, nil
}

func (p *Plugin) ready() error {
	if !p.configured {
		return fmt.Errorf("crypt-plain: not configured with allow_no_encryption = true: %w", sdk.ErrInvalidConfig)
	}
	return nil
}

// Create implements crypt.Crypt: it makes the directory and its marker.
func (p *Plugin) Create(_ context.Context, req crypt.CreateRequest) (crypt.CreateResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.ready(); err != nil {
		return crypt.CreateResponse{}, err
	}
	if req.VaultPath == "" {
		return crypt.CreateResponse{}, fmt.Errorf("crypt-plain: create: empty vault path: %w", sdk.ErrInvalidArgument)
	}
	if _, err := os.Lstat(req.VaultPath); err == nil {
		return crypt.CreateResponse{}, fmt.Errorf("crypt-plain: create %s: %w", req.VaultPath, sdk.ErrAlreadyExists)
	}
	tmp := req.VaultPath + ".creating"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return crypt.CreateResponse{}, fmt.Errorf("crypt-plain: create %s: %w", req.VaultPath, err)
	}
	b, _ := json.Marshal(map[string]any{"plugin": "crypt-plain", "version": Version})
	if err := os.WriteFile(filepath.Join(tmp, marker), b, 0o600); err != nil {
		_ = os.RemoveAll(tmp)
		return crypt.CreateResponse{}, fmt.Errorf("crypt-plain: create %s: %w", req.VaultPath, err)
	}
	if err := os.Rename(tmp, req.VaultPath); err != nil {
		_ = os.RemoveAll(tmp)
		return crypt.CreateResponse{}, fmt.Errorf("crypt-plain: create %s: %w", req.VaultPath, err)
	}
	p.log.Warn("created an unencrypted vault", "path", req.VaultPath)
	return crypt.CreateResponse{}, nil
}

// Unlock implements crypt.Crypt: the plaintext directory is the vault.
func (p *Plugin) Unlock(_ context.Context, req crypt.UnlockRequest) (crypt.UnlockResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.ready(); err != nil {
		return crypt.UnlockResponse{}, err
	}
	if _, err := os.Stat(req.VaultPath); errors.Is(err, fs.ErrNotExist) {
		return crypt.UnlockResponse{}, fmt.Errorf("crypt-plain: unlock %s: %w", req.VaultPath, sdk.ErrNotFound)
	}
	if _, err := os.Stat(filepath.Join(req.VaultPath, marker)); err != nil {
		return crypt.UnlockResponse{}, fmt.Errorf("crypt-plain: unlock %s: not a crypt-plain vault (no %s): %w", req.VaultPath, marker, sdk.ErrCorrupt)
	}
	p.unlocked[req.VaultPath] = true
	return crypt.UnlockResponse{PlaintextDir: req.VaultPath}, nil
}

// Lock implements crypt.Crypt; there is nothing to flush or wipe.
func (p *Plugin) Lock(_ context.Context, req crypt.LockRequest) (crypt.LockResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.unlocked, req.VaultPath)
	return crypt.LockResponse{}, nil
}
