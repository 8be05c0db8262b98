package sdk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/soulpad/soulpad/sdk/internal/registry"
	"github.com/soulpad/soulpad/sdk/internal/wire"
	"github.com/soulpad/soulpad/sdk/secmem"
)

// Kind names a plugin kind. A plugin binary serves exactly one kind.
type Kind string

// The plugin kinds.
const (
	KindVMM    Kind = "vmm"
	KindCrypt  Kind = "crypt"
	KindBackup Kind = "backup"
	KindDetect Kind = "detect"
	KindStore  Kind = "store"
)

// Kinds lists the plugin kinds this program knows, in the order a session
// uses them. A kind is known once its package (sdk/vmm, sdk/crypt, …) is
// imported: each registers itself there, once, with its API version.
func Kinds() []Kind {
	var out []Kind
	for _, k := range registry.All() {
		out = append(out, Kind(k.Name))
	}
	return out
}

// KindAPIVersion is the API version of kind that this program speaks.
func KindAPIVersion(kind Kind) (int, bool) {
	k, ok := registry.Lookup(string(kind))
	return k.APIVersion, ok
}

// ProtocolVersion is the go-plugin handshake version. It changes only when
// the transport itself changes; each kind has its own API version.
const ProtocolVersion = 1

// Handshake is the go-plugin handshake shared by the core and every plugin.
// The cookie is not a security measure; it tells a user who runs a plugin
// binary by hand that it is not meant to be run directly.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "SOULPAD_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "a7c1d3f0-soulpad-plugin",
}

// InfoRequest asks a plugin to describe itself.
type InfoRequest struct{}

// InfoResponse describes a plugin.
type InfoResponse struct {
	// Name is the plugin's name, e.g. "vmm-qemu". It should match the
	// binary's file name.
	Name string
	// Kind is the one kind this plugin serves.
	Kind Kind
	// Version is the plugin's own version (semver).
	Version string
	// APIVersions lists the API versions of its kind that it speaks.
	APIVersions []int
	// Capabilities names optional features (see each kind's package).
	Capabilities []string
	// Description is one line for `soulpad plugins`.
	Description string
}

// Has reports whether the plugin announced capability c.
func (r InfoResponse) Has(c string) bool {
	for _, x := range r.Capabilities {
		if x == c {
			return true
		}
	}
	return false
}

// ConfigureRequest carries the plugin's own block from site.hcl, as JSON.
type ConfigureRequest struct {
	// Config is the plugin's block encoded as a JSON object; "{}" or empty
	// when the site config has no block for the plugin.
	Config []byte
}

// Decode decodes the plugin's block into v, a pointer to the plugin's typed
// config struct (with json tags). Unknown keys are an error wrapping
// ErrInvalidConfig that names the key, the nearest valid one ("did you
// mean") and all valid ones, so a typo in site.hcl is caught; a value of
// the wrong type says what the key wants. A string (as environment
// variables set them) is taken for a number or a boolean key when it
// reads as one.
func (r ConfigureRequest) Decode(v any) error {
	if len(r.Config) == 0 {
		return nil
	}
	return decodeConfig(r.Config, v)
}

// ConfigureResponse is empty; a plugin that rejects its config returns an
// error wrapping ErrInvalidConfig.
type ConfigureResponse struct{}

// Plugin is answered by every plugin whatever its kind.
type Plugin interface {
	// Info describes the plugin. It must work before Configure.
	Info(ctx context.Context, req InfoRequest) (InfoResponse, error)
	// Configure hands the plugin its config block. The host calls it once,
	// before any call of the kind's interface; a plugin may be configured
	// again with the same block.
	Configure(ctx context.Context, req ConfigureRequest) (ConfigureResponse, error)
}

// Shutdowner is implemented by a plugin that must finish or undo work
// before its process ends (a FUSE server it runs, a half-made file). Serve
// calls Shutdown once, when the host has let go of the plugin, when the
// host has died (the kernel sends SIGTERM), or on SIGTERM; the host's
// calls are cancelled by then. A host that lets go waits about two
// seconds for the process to end, so Shutdown should be quick then.
type Shutdowner interface {
	Shutdown()
}

// shutdown calls impl's Shutdown, once, if it has one.
func shutdown(impl Plugin) {
	shutdownOnce.Do(func() {
		if s, ok := impl.(Shutdowner); ok {
			s.Shutdown()
		}
	})
}

var shutdownOnce sync.Once

// Serve runs impl as a plugin process and never returns. impl must
// implement the interface of the kind its Info names (import that kind's
// package). When the binary is not started by a SoulPad host, or impl is
// unusable, Serve says why on stderr and exits with status 1.
func Serve(impl Plugin) {
	if err := serve(impl); err != nil {
		fmt.Fprintf(os.Stderr, "soulpad plugin: %s\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func serve(impl Plugin) error {
	if os.Getenv(Handshake.MagicCookieKey) != Handshake.MagicCookieValue {
		return errors.New("this is a SoulPad plugin; it is started by `soulpad`, not by hand (see `soulpad plugins`)")
	}
	ps, err := PluginSet(impl)
	if err != nil {
		return err
	}
	// Plugins see passphrases, keys and repository passwords: keep this
	// process out of swap and core dumps, and out of other users' reach.
	log := Logger("plugin")
	if st := secmem.Harden(); !st.Locked {
		log.Debug("memory not locked; key material may reach swap", "reason", st.NotLocked)
	}
	// Once the host is gone, a log line to its pipe must not end the
	// plugin (a write to a broken stderr would raise SIGPIPE): it may
	// still be finishing work that outlives the host (a suspend).
	signal.Ignore(syscall.SIGPIPE)
	go exitWithParent(impl)
	// The host's kernel-sent signal when it dies (Pdeathsig), or anyone's
	// SIGTERM: finish up, then end.
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		shutdown(impl)
		os.Exit(2)
	}()
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         ps,
		GRPCServer:      wire.NewServer,
		Logger:          log,
	})
	shutdown(impl)
	return nil
}

// GRPCDialOptions are the options a host dials its plugins with (as
// plugin.ClientConfig.GRPCDialOptions): messages up to the size plugins
// serve.
func GRPCDialOptions() []grpc.DialOption { return wire.DialOptions() }

// PluginSet returns the go-plugin set that serves impl: one entry keyed by
// its kind. It is exported for tests that serve a plugin in-process.
func PluginSet(impl Plugin) (plugin.PluginSet, error) {
	info, err := impl.Info(context.Background(), InfoRequest{})
	if err != nil {
		return nil, fmt.Errorf("plugin Info failed: %w", err)
	}
	k, ok := registry.Lookup(string(info.Kind))
	if !ok {
		return nil, fmt.Errorf("plugin %q names kind %q; want one of %v (and import that kind's sdk package)", info.Name, info.Kind, Kinds())
	}
	p, err := k.Maker(impl)
	if err != nil {
		return nil, fmt.Errorf("plugin %q: %w", info.Name, err)
	}
	return plugin.PluginSet{string(info.Kind): p}, nil
}

// ClientPluginSet is the set a host uses to dispense a plugin of any kind.
func ClientPluginSet() plugin.PluginSet {
	ps := plugin.PluginSet{}
	for _, k := range registry.All() {
		p, _ := k.Maker(nil)
		ps[k.Name] = p
	}
	return ps
}

// exitWithParent ends the plugin when its host dies without stopping it, so
// no plugin (and no child of one) outlives the core. The host also asks the
// kernel for this (Pdeathsig); this covers hosts that could not.
func exitWithParent(impl Plugin) {
	parent := os.Getppid()
	for range time.Tick(500 * time.Millisecond) {
		if os.Getppid() != parent {
			shutdown(impl)
			os.Exit(2)
		}
	}
}

// Logger returns the logger a plugin should use: JSON lines on stderr, which
// the host re-levels into its own log under the plugin's name.
func Logger(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      hclog.Trace,
		Output:     os.Stderr,
		JSONFormat: true,
	})
}

// RuntimeDir is where a plugin keeps transient files that must not reach
// the host's disk (sockets, console logs): /run/soulpad for root,
// $XDG_RUNTIME_DIR/soulpad or /run/user/<uid>/soulpad for others — tmpfs
// on a usual Linux — and the temp directory only where none exists. The
// directory is made 0700 and must belong to the caller, not be a symlink,
// and be closed to others; otherwise the temp directory is used.
func RuntimeDir() string {
	dir := RuntimeDirPath()
	if MakePrivateDir(dir) != nil {
		return os.TempDir()
	}
	return dir
}

// MakePrivateDir makes dir (one level, mode 0700) if it is missing, then
// checks it with CheckPrivateDir.
func MakePrivateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s: %w", dir, err)
	}
	return CheckPrivateDir(dir)
}

// CheckPrivateDir checks that dir is a real directory (not a symlink),
// owned by this user and closed to everyone else: another local user
// could otherwise put files (or sockets) there in this user's place.
func CheckPrivateDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case fi.Mode()&os.ModeSymlink != 0 || !fi.IsDir():
		return fmt.Errorf("%s is not a directory (a symlink?): remove it and run again", dir)
	case !ok || int(st.Uid) != os.Getuid():
		return fmt.Errorf("%s belongs to another user (uid %d): someone could act in this session's place; remove it and run again", dir, st.Uid)
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("%s is open to others (mode %v): remove it and run again", dir, fi.Mode().Perm())
	}
	return nil
}

// runtimeBase is the root of the runtime directories.
const runtimeBase = "/run"

// RuntimeDirPath is RuntimeDir's path, without making or checking it.
func RuntimeDirPath() string {
	uid := os.Getuid()
	if uid == 0 {
		return filepath.Join(runtimeBase, "soulpad")
	}
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "soulpad")
	}
	if d := filepath.Join(runtimeBase, "user", strconv.Itoa(uid)); dirExists(d) {
		return filepath.Join(d, "soulpad")
	}
	return filepath.Join("/tmp", "soulpad-"+strconv.Itoa(uid))
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
