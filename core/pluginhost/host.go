// Package pluginhost finds plugin binaries, verifies them, starts them with
// go-plugin (gRPC only) and hands the core typed clients. Plugins die with
// the host, and their JSON logs are re-levelled into the host's log.
package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/backup"
	"github.com/soulpad/soulpad/sdk/crypt"
	"github.com/soulpad/soulpad/sdk/detect"
	"github.com/soulpad/soulpad/sdk/store"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// ErrNotFound: no binary of that name in any plugin directory.
var ErrNotFound = errors.New("plugin not found")

// ErrUntrusted: a plugin binary, or its directory, could have been
// replaced by someone else (writable by group or others, or owned by
// another user).
var ErrUntrusted = errors.New("plugin not trusted")

// trusted checks that path and its directory belong to this user or root
// and that nobody else can write them: a plugin runs with soulpad's
// rights and sees the passphrase.
func trusted(path string) error {
	for _, p := range []string{path, filepath.Dir(path)} {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			continue
		}
		if uid := int(st.Uid); uid != 0 && uid != os.Getuid() {
			return fmt.Errorf("%s belongs to another user (uid %d)", p, uid)
		}
		if fi.Mode().Perm()&0o022 != 0 {
			return fmt.Errorf("%s can be written by group or others (mode %v): chmod go-w it", p, fi.Mode().Perm())
		}
	}
	return nil
}

// ErrChecksum: the binary's SHA-256 differs from the pinned one.
var ErrChecksum = errors.New("plugin checksum does not match the pinned one")

// Host starts and tracks plugins.
type Host struct {
	log  hclog.Logger
	dirs []string
	pins map[string]string

	mu      sync.Mutex
	running []*Plugin

	// Strict starts only pinned plugins.
	Strict bool
	// Carried is the pad's plugins/ directory, searched after dirs: the
	// pad is untrusted input (anyone who held it could have replaced a
	// plugin to read the passphrase), so a plugin found only there runs
	// when its SHA-256 is pinned or AllowCarried is set.
	Carried      string
	AllowCarried bool
	// WorkDir is the plugins' working directory: the config file's
	// directory, so that relative paths in a plugin's block (a password
	// file, a repository) mean what they mean in the file. "" keeps
	// soulpad's own.
	WorkDir string
}

// New returns a host that looks for plugins in dirs, in order, and
// refuses any binary whose SHA-256 differs from pins[name].
func New(log hclog.Logger, dirs []string, pins map[string]string) *Host {
	return &Host{log: log, dirs: dirs, pins: pins}
}

// Dirs is the search path.
func (h *Host) Dirs() []string { return slices.Clone(h.dirs) }

// Binary is a plugin binary on disk.
type Binary struct {
	Name   string
	Path   string
	SHA256 string
	// Pinned says whether the config pins this plugin's checksum.
	Pinned bool
	// Carried: the binary is the one the pad carries (Host.Carried).
	Carried bool
}

// ErrCarried: the plugin is only on the pad, and the host has not said
// that the pad's plugins may run.
var ErrCarried = errors.New("plugin only on the pad")

// Find returns the first binary called name in the search path.
func (h *Host) Find(name string) (Binary, error) {
	if !ValidName(name) {
		return Binary{}, fmt.Errorf("%w: %q is not a plugin name (lower-case letters, digits and '-')", ErrNotFound, name)
	}
	for _, d := range h.dirs {
		if b, ok, err := h.binary(d, name); ok || err != nil {
			return b, err
		}
	}
	if h.Carried != "" {
		b, ok, err := h.binary(h.Carried, name)
		switch {
		case err != nil:
			return b, err
		case ok && !b.Pinned && !h.AllowCarried:
			return Binary{}, fmt.Errorf("%w: %s is only on the pad (%s), which anyone who held the pad could have replaced: install it on this host (in %s), pin its SHA-256 %s in plugins.sha256, or set plugins.pad_plugins = true to run the pad's own",
				ErrCarried, name, b.Path, strings.Join(h.dirs, ", "), b.SHA256)
		case ok:
			b.Carried = true
			return b, nil
		}
	}
	return Binary{}, fmt.Errorf("%w: %q is in none of %s (build it with `make build`, or add its directory to plugins.dirs)",
		ErrNotFound, name, strings.Join(h.dirs, ", "))
}

// binary is the plugin name in dir, if there is an executable file of
// that name; one that others could have replaced is an error.
func (h *Host) binary(dir, name string) (Binary, bool, error) {
	p := filepath.Join(dir, name)
	st, err := os.Stat(p)
	if err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
		return Binary{}, false, nil
	}
	if err := trusted(p); err != nil {
		return Binary{}, true, fmt.Errorf("%w: refusing to start %s: %w", ErrUntrusted, name, err)
	}
	sum, err := fileSHA256(p)
	if err != nil {
		return Binary{}, true, fmt.Errorf("plugin %s: %w", name, err)
	}
	_, pinned := h.pins[name]
	return Binary{Name: name, Path: p, SHA256: sum, Pinned: pinned}, true, nil
}

// ValidName says whether name can be a plugin's: lower-case letters,
// digits and '-', starting with a letter or digit (never a path).
func ValidName(name string) bool {
	if name == "" || len(name) > 64 || name[0] == '-' {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// List returns every plugin binary in the search path (first one of a name
// wins), sorted by name.
func (h *Host) List() ([]Binary, error) {
	seen := map[string]bool{}
	var out []Binary
	dirs := h.dirs
	if h.Carried != "" {
		dirs = append(slices.Clone(dirs), h.Carried)
	}
	for _, d := range dirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if seen[e.Name()] || e.IsDir() || !ValidName(e.Name()) {
				continue
			}
			// The pad's are listed whether or not they may run.
			b, ok, err := h.binary(d, e.Name())
			if err != nil || !ok {
				continue
			}
			b.Carried = d == h.Carried
			seen[e.Name()] = true
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Name < out[k].Name })
	return out, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Plugin is a running plugin.
type Plugin struct {
	Binary
	Info sdk.InfoResponse
	// Client is the kind's client: *vmm.Client, *crypt.Client, … Use the
	// typed accessors.
	Client any

	client *plugin.Client

	doneOnce sync.Once
	done     chan struct{}
}

// Done is closed once the plugin process has exited, however it ended
// (checked every 100 ms).
func (p *Plugin) Done() <-chan struct{} {
	p.doneOnce.Do(func() {
		p.done = make(chan struct{})
		go func() {
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for range t.C {
				if p.client.Exited() {
					close(p.done)
					return
				}
			}
		}()
	})
	return p.done
}

// VMM returns the plugin as a VMM.
func (p *Plugin) VMM() vmm.VMM { return p.Client.(vmm.VMM) }

// Crypt returns the plugin as a Crypt.
func (p *Plugin) Crypt() crypt.Crypt { return p.Client.(crypt.Crypt) }

// Backup returns the plugin as a Backup.
func (p *Plugin) Backup() backup.Backup { return p.Client.(backup.Backup) }

// Store is the plugin as a store plugin.
func (p *Plugin) Store() store.Store { return p.Client.(store.Store) }

// Detect returns the plugin as a Detect.
func (p *Plugin) Detect() detect.Detect { return p.Client.(detect.Detect) }

// Exited reports whether the plugin process is gone. A process that is
// dying is given a moment to be reaped.
func (p *Plugin) Exited() bool {
	if p.client.Exited() {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := p.Client.(sdk.Plugin).Info(ctx, sdk.InfoRequest{})
	cancel()
	if err == nil {
		return false
	}
	for i := 0; i < 20 && !p.client.Exited(); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	return p.client.Exited()
}

// Kill stops the plugin process (gracefully first).
func (p *Plugin) Kill() { p.client.Kill() }

// Err turns an error from a call into one that names the plugin and the
// operation, and says clearly when the plugin process died.
func (p *Plugin) Err(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sdk.ErrPluginExited) || p.client.Exited() {
		return fmt.Errorf("%s: %s: the plugin process exited (see its log lines above): %w", p.Name, op, sdk.ErrPluginExited)
	}
	// A plugin's own errors already name it (and usually the operation):
	// keep its words rather than prefix them twice.
	if strings.HasPrefix(err.Error(), p.Name+": ") {
		return err
	}
	return fmt.Errorf("%s: %s: %w", p.Name, op, err)
}

// Start finds, verifies and starts the plugin called name, checks that it
// serves kind with an API version this core speaks, and configures it
// with cfgJSON (its block from the site config).
func (h *Host) Start(ctx context.Context, name string, kind sdk.Kind, cfgJSON []byte) (*Plugin, error) {
	p, err := h.Launch(ctx, name)
	if err != nil {
		return nil, err
	}
	if p.Info.Kind != kind {
		p.Kill()
		return nil, fmt.Errorf("plugin %s is a %s plugin, not a %s plugin: check plugins.%s in the config", name, p.Info.Kind, kind, kind)
	}
	if want, ok := sdk.KindAPIVersion(kind); !ok || !slices.Contains(p.Info.APIVersions, want) {
		p.Kill()
		return nil, fmt.Errorf("plugin %s speaks %s API versions %v; this soulpad speaks %d: use a matching plugin build", name, kind, p.Info.APIVersions, want)
	}
	if _, err := p.Client.(sdk.Plugin).Configure(ctx, sdk.ConfigureRequest{Config: cfgJSON}); err != nil {
		p.Kill()
		return nil, fmt.Errorf("configure plugin %s (its plugin \"%s\" { … } block): %w", name, name, err)
	}
	return p, nil
}

// Launch starts the plugin and asks for its Info, without configuring it.
func (h *Host) Launch(ctx context.Context, name string) (*Plugin, error) {
	bin, err := h.Find(name)
	if err != nil {
		return nil, err
	}
	var secure *plugin.SecureConfig
	if _, ok := h.pins[name]; !ok && h.Strict {
		return nil, fmt.Errorf("%w: refusing to start %s (%s): plugins.strict is set and it is not pinned in plugins.sha256 (its SHA-256 is %s; see `soulpad plugins`)",
			ErrChecksum, name, bin.Path, bin.SHA256)
	}
	if pin, ok := h.pins[name]; ok {
		if !strings.EqualFold(pin, bin.SHA256) {
			return nil, fmt.Errorf("%w: refusing to start %s: its SHA-256 is %s but plugins.sha256 pins %s (a changed or replaced binary; if you rebuilt it, update the pin from `soulpad plugins`)",
				ErrChecksum, bin.Path, bin.SHA256, pin)
		}
		sum, _ := hex.DecodeString(bin.SHA256)
		secure = &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	}
	cmd := exec.Command(bin.Path)
	cmd.Dir = h.WorkDir
	// A plugin gets what it needs of the environment, not all of soulpad's.
	cmd.Env = PluginEnv(os.Environ())
	// The kernel ends the plugin if the host dies, however it dies: with
	// SIGTERM, so that the plugin can first lock a vault it holds open
	// (sdk.Serve runs its Shutdown, then exits).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          sdk.ClientPluginSet(),
		Cmd:              cmd,
		SecureConfig:     secure,
		SkipHostEnv:      true,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		GRPCDialOptions:  sdk.GRPCDialOptions(),
		Logger:           quietLog{h.log.Named(name)},
		StartTimeout:     30 * time.Second,
		AutoMTLS:         true,
	})
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			return nil, fmt.Errorf("%w: %s changed while starting it", ErrChecksum, bin.Path)
		}
		return nil, fmt.Errorf("start plugin %s (%s): %w", name, bin.Path, err)
	}
	p := &Plugin{Binary: bin, client: client}
	// A plugin serves one kind; any kind's client answers Info (Base).
	for _, k := range sdk.Kinds() {
		raw, err := rpc.Dispense(string(k))
		if err != nil {
			continue
		}
		info, err := raw.(sdk.Plugin).Info(ctx, sdk.InfoRequest{})
		if err != nil {
			client.Kill()
			return nil, fmt.Errorf("plugin %s: Info: %w", name, err)
		}
		if info.Kind != k {
			// ask again with the kind it names
			raw, err = rpc.Dispense(string(info.Kind))
			if err != nil {
				client.Kill()
				return nil, fmt.Errorf("plugin %s names kind %q, which this soulpad does not know", name, info.Kind)
			}
		}
		p.Info, p.Client = info, raw
		break
	}
	if p.Client == nil {
		client.Kill()
		return nil, fmt.Errorf("plugin %s serves no kind this soulpad knows", name)
	}
	h.mu.Lock()
	h.running = append(h.running, p)
	h.mu.Unlock()
	return p, nil
}

// pluginEnvKeys are the variables a plugin (and the programs it runs:
// QEMU, gocryptfs, restic, dsmc) is given; the rest of soulpad's
// environment stays with soulpad.
var pluginEnvKeys = map[string]bool{
	"PATH": true, "HOME": true, "USER": true, "LOGNAME": true, "TMPDIR": true, "XDG_RUNTIME_DIR": true,
	"LANG": true, "LC_ALL": true, "LC_CTYPE": true, "TZ": true, "TERM": true,
	"DISPLAY": true, "WAYLAND_DISPLAY": true, "XAUTHORITY": true, // a window for the guest's screen
	"CI": true,
}

// PluginEnv filters an environment down to what plugins are given.
func PluginEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if pluginEnvKeys[k] {
			out = append(out, kv)
		}
	}
	return out
}

// Close stops every plugin this host started, newest first.
func (h *Host) Close() {
	h.mu.Lock()
	ps := h.running
	h.running = nil
	h.mu.Unlock()
	for i := len(ps) - 1; i >= 0; i-- {
		ps[i].Kill()
	}
}
