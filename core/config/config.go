// Package config loads SoulPad's site config: an HCL file read through
// koanf, overridden by SOULPAD_* environment variables, into one typed
// struct with defaults. Every error names the file, the line and key, and
// what would be valid.
package config

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/knadh/koanf/v2"
	"github.com/soulpad/soulpad/sdk"
)

//go:embed default.hcl
var defaultHCL []byte

// DefaultHCL returns the built-in default config.
func DefaultHCL() []byte { return append([]byte(nil), defaultHCL...) }

// DefaultSource is the name the built-in config goes by in messages.
const DefaultSource = "(built-in default config)"

// Config is the whole site config.
type Config struct {
	// Source is the file the config came from, for messages.
	Source string `koanf:"-"`
	// BaseDir is what relative paths in the file are relative to.
	BaseDir string `koanf:"-"`
	// lines are the file's line of each key (0: set by the environment).
	lines map[string]int
	// env names the environment variable that set a key.
	env map[string]string

	Pad     Pad     `koanf:"pad"`
	Unlock  Unlock  `koanf:"unlock"`
	Machine Machine `koanf:"machine"`
	Plugins Plugins `koanf:"plugins"`
	Session Session `koanf:"session"`
	Store   Store   `koanf:"store"`
	Log     Log     `koanf:"log"`

	// Plugin holds each plugin's own block, by plugin name; it is handed to
	// the plugin as JSON by Configure.
	Plugin map[string]map[string]any `koanf:"plugin"`
}

// Pad says where the pad is.
type Pad struct {
	Path         string `koanf:"path"`
	VaultSizeMiB uint64 `koanf:"vault_size_mib"`
	// BootDisk is the disk a bootable pad's host OS booted from ("sda"):
	// its host-init sets it (SOULPAD_PAD_BOOT_DISK), and every unlock
	// checks that disk's boot partitions against the vault's record.
	BootDisk string `koanf:"boot_disk"`
}

// Unlock says where the credential comes from when not from a prompt.
type Unlock struct {
	PassphraseFile string `koanf:"passphrase_file"`
	KeyFile        string `koanf:"key_file"`
}

// Machine is the machine created on the pad by `soulpad init`.
type Machine struct {
	Name        string `koanf:"name"`
	MemoryMiB   uint64 `koanf:"memory_mib"`
	VCPUs       int    `koanf:"vcpus"`
	CPUModel    string `koanf:"cpu_model"`
	Accelerator string `koanf:"accelerator"`
	DiskSizeMiB uint64 `koanf:"disk_size_mib"`
	Network     string `koanf:"network"`
	Display     string `koanf:"display"`
	Kernel      string `koanf:"kernel"`
	Initrd      string `koanf:"initrd"`
	Cmdline     string `koanf:"cmdline"`
	// Firmware is "bios" or "uefi" (OVMF, its variables kept with the
	// machine); SecureBoot turns on UEFI Secure Boot.
	Firmware   string `koanf:"firmware"`
	SecureBoot bool   `koanf:"secure_boot"`
	// Devices is "virtio" (fast, for guests with virtio drivers) or
	// "compatible" (SATA disks, an e1000 NIC: for guests without them,
	// such as a stock Windows installer).
	Devices string `koanf:"devices"`
}

// Plugins chooses the plugin of each kind and where to find them. Each
// string field but dirs names the plugin of the kind its key names; a new
// kind is one more field here.
type Plugins struct {
	Dirs   []string `koanf:"dirs"`
	Crypt  string   `koanf:"crypt"`
	VMM    string   `koanf:"vmm"`
	Detect string   `koanf:"detect"`
	Backup string   `koanf:"backup"`
	// Store keeps the pad's versions on a remote store (Internet
	// Suspend/Resume): the session checks the pad out and copies it in
	// before unlock, copies it out and checks it in after the suspend.
	Store  string            `koanf:"store"`
	SHA256 map[string]string `koanf:"sha256"`
	// Strict starts only plugins pinned in sha256 (sites that pin
	// everything).
	Strict bool `koanf:"strict"`
	// PadPlugins runs the plugins the pad carries (its plugins/) that are
	// not pinned in sha256, when this host lacks them. Off by default:
	// the pad is untrusted input, and a plugin sees the passphrase.
	PadPlugins bool `koanf:"pad_plugins"`
}

// ByKind maps each kind's key ("crypt", "vmm", …) to the plugin chosen
// for it ("" when none is).
func (p Plugins) ByKind() map[string]string {
	out := map[string]string{}
	v := reflect.ValueOf(p)
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		if f.Type.Kind() == reflect.String {
			out[f.Tag.Get("koanf")] = v.Field(i).String()
		}
	}
	return out
}

// Kinds are the kinds plugins chooses a plugin for, in field order.
func (p Plugins) Kinds() []string {
	var out []string
	t := reflect.TypeOf(p)
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); f.Type.Kind() == reflect.String {
			out = append(out, f.Tag.Get("koanf"))
		}
	}
	return out
}

// Session tunes the run.
type Session struct {
	// SuspendTimeoutSeconds bounds the suspend stage.
	SuspendTimeoutSeconds int `koanf:"suspend_timeout_seconds"`
	// StageTimeoutSeconds bounds every other stage but run.
	StageTimeoutSeconds int `koanf:"stage_timeout_seconds"`
	// BackupAfterSuspend runs the backup plugin after a suspend.
	BackupAfterSuspend bool `koanf:"backup_after_suspend"`
	// KeepPoints is how many suspend points with memory are kept: after a
	// point is sealed the oldest beyond this count are pruned.
	KeepPoints int `koanf:"keep_points"`
	// CheckpointMinutes is how often a point is taken while the machine
	// runs, so that a crash loses at most that much (0: never). Only
	// where the VMM plugin maps memory from the vault (crypt-luks).
	CheckpointMinutes float64 `koanf:"checkpoint_minutes"`
	// KeepCheckpoints is how many checkpoints are kept (apart from
	// KeepPoints).
	KeepCheckpoints int `koanf:"keep_checkpoints"`
}

// CheckpointEvery is CheckpointMinutes as a duration (0: none).
func (s Session) CheckpointEvery() time.Duration {
	return time.Duration(s.CheckpointMinutes * float64(time.Minute))
}

// Store names the pad on the store plugins.store chooses.
type Store struct {
	// Name is the pad's name on the store (lower-case letters, digits,
	// '.', '_', '-').
	Name string `koanf:"name"`
	// LeaseMinutes is how long the pad's lease on the store holds without
	// a renewal; a live session renews it every third of that. A PC that
	// dies holding it keeps other PCs out that long (or until `soulpad
	// store break-lease`).
	LeaseMinutes float64 `koanf:"lease_minutes"`
}

// LeaseTerm is LeaseMinutes as a duration.
func (s Store) LeaseTerm() time.Duration { return time.Duration(s.LeaseMinutes * float64(time.Minute)) }

// Log sets the log level.
type Log struct {
	Level string `koanf:"level"`
}

// Defaults returns the config every file starts from.
func Defaults() Config {
	return Config{
		Machine: Machine{Name: "soul", MemoryMiB: 256, VCPUs: 1, CPUModel: "portable", Accelerator: "auto",
			DiskSizeMiB: 64, Network: "user", Display: "auto", Firmware: "bios", Devices: "virtio"},
		Pad:     Pad{VaultSizeMiB: 2048},
		Session: Session{SuspendTimeoutSeconds: 300, StageTimeoutSeconds: 120, KeepPoints: 3, CheckpointMinutes: 10, KeepCheckpoints: 3},
		Store:   Store{LeaseMinutes: 15},
		Log:     Log{Level: "warn"},
	}
}

// Error is one problem with a config, located.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	fmt.Fprintf(&b, ": %s", e.Msg)
	return b.String()
}

// Load reads the config file at path (the built-in default when path is
// empty), applies SOULPAD_* environment overrides, and validates it.
func Load(path string) (*Config, error) {
	if path == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		return LoadBytes(DefaultSource, wd, defaultHCL, os.Environ())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	return LoadBytes(path, filepath.Dir(abs), b, os.Environ())
}

// LoadBytes is Load on bytes: source names them in messages, baseDir is what
// relative paths are relative to, env is the environment ("K=V").
func LoadBytes(source, baseDir string, data []byte, env []string) (*Config, error) {
	p := &hclParser{}
	k := koanf.New(".")
	if err := k.Load(rawBytes(data), p); err != nil {
		return nil, &Error{File: source, Line: hclErrLine(err), Msg: hclErrMsg(err)}
	}
	lines := p.lines
	known := leafKeys(reflect.TypeOf(Config{}), "")
	var errs []error
	// fromEnv remembers which environment variable set a key: its errors
	// are the variable's, not the file's.
	fromEnv := map[string]string{}
	at := func(key, msg string, args ...any) {
		if name, ok := fromEnv[key]; ok {
			errs = append(errs, &Error{File: "environment", Key: name + " (" + key + ")", Msg: fmt.Sprintf(msg, args...)})
			return
		}
		errs = append(errs, &Error{File: source, Line: lines[key], Key: key, Msg: fmt.Sprintf(msg, args...)})
	}

	// Unknown blocks (once each, not once per key) and unknown keys,
	// with what would be valid beside them.
	badBlock := map[string]bool{}
	for _, key := range k.Keys() {
		if _, ok := known[key]; ok || strings.HasPrefix(key, "plugin.") || strings.HasPrefix(key, "plugins.sha256.") ||
			isSection(known, key) || key == "plugin" || key == "plugins.sha256" {
			continue // an empty block is fine
		}
		top, _, inBlock := strings.Cut(key, ".")
		if blocks := topBlocks(known); !slices.Contains(blocks, top) {
			if !badBlock[top] {
				badBlock[top] = true
				what := "block"
				if !inBlock {
					what = "key at the top level"
				}
				at(key, "unknown %s %q%s; valid blocks: %s", what, top, didYouMean(top, blocks), strings.Join(blocks, ", "))
			}
			continue
		}
		valid := siblings(known, key)
		at(key, "unknown key%s; valid keys here: %s", didYouMean(key[strings.LastIndex(key, ".")+1:], valid), strings.Join(valid, ", "))
	}

	// Environment overrides.
	envErrs, err := applyEnv(k, known, env, lines, fromEnv)
	if err != nil {
		return nil, err
	}
	errs = append(errs, envErrs...)

	cfg := Defaults()
	cfg.Source, cfg.BaseDir, cfg.lines, cfg.env = source, baseDir, lines, fromEnv
	if err := k.Unmarshal("", &cfg); err != nil {
		key := ""
		if m := quotedKey.FindStringSubmatch(err.Error()); m != nil {
			key = m[1]
		}
		msg := cleanDecodeErr(err, k.Get(key))
		if name, ok := fromEnv[key]; ok {
			errs = append(errs, &Error{File: "environment", Key: name, Msg: msg})
		} else {
			errs = append(errs, &Error{File: source, Line: lines[key], Key: key, Msg: msg})
		}
		return nil, errors.Join(errs...)
	}
	if len(errs) == 0 {
		cfg.validate(at)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	cfg.resolvePaths()
	return &cfg, nil
}

var quotedKey = regexp.MustCompile(`'([a-z0-9_.\-]+)'`)

// cleanDecodeErr says what a value of the wrong type should have been,
// without the decoder's internals.
func cleanDecodeErr(err error, got any) string {
	s := err.Error()
	for _, m := range []string{"error(s) decoding:", "the following error(s):"} {
		if i := strings.LastIndex(s, m); i >= 0 {
			s = strings.TrimSpace(s[i+len(m):])
		}
	}
	s = strings.TrimPrefix(s, "* ")
	switch {
	case strings.Contains(s, "as 'int'") || strings.Contains(s, "as 'uint'"):
		return fmt.Sprintf("want a whole number, not %q", fmt.Sprint(got))
	case strings.Contains(s, "as 'bool'"):
		return fmt.Sprintf("want true or false, not %q", fmt.Sprint(got))
	}
	return s
}

func (c *Config) abs(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.BaseDir, p)
}

func (c *Config) resolvePaths() {
	c.Pad.Path = c.abs(c.Pad.Path)
	c.Unlock.PassphraseFile = c.abs(c.Unlock.PassphraseFile)
	c.Unlock.KeyFile = c.abs(c.Unlock.KeyFile)
	c.Machine.Kernel = c.abs(c.Machine.Kernel)
	c.Machine.Initrd = c.abs(c.Machine.Initrd)
	for i, d := range c.Plugins.Dirs {
		c.Plugins.Dirs[i] = c.abs(d)
	}
}

// At is an Error about key (e.g. "plugin.crypt-luks.engine" or
// "plugins.vmm"): in the file at the key's line (or its block's, or the
// nearest enclosing key's), or in the environment variable that set it.
func (c *Config) At(key, msg string) *Error {
	if name, ok := c.env[key]; ok {
		return &Error{File: "environment", Key: name + " (" + key + ")", Msg: msg}
	}
	line := 0
	for k := key; k != "" && line == 0; {
		line = c.lines[k]
		if i := strings.LastIndexByte(k, '.'); i >= 0 {
			k = k[:i]
		} else {
			k = ""
		}
	}
	if line == 0 {
		// A block's own line: the first of its keys.
		for k, l := range c.lines {
			if strings.HasPrefix(k, key+".") && l > 0 && (line == 0 || l < line) {
				line = l
			}
		}
	}
	return &Error{File: c.Source, Line: line, Key: key, Msg: msg}
}

// PluginConfigJSON returns the plugin's block as JSON ("{}" when absent).
// Load has checked that every block encodes.
func (c *Config) PluginConfigJSON(name string) []byte {
	block := c.Plugin[name]
	if block == nil {
		return []byte("{}")
	}
	b, err := json.Marshal(block)
	if err != nil {
		return []byte("{}")
	}
	return b
}

// leafKeys lists the dotted keys of t's koanf-tagged fields and their kinds.
func leafKeys(t reflect.Type, prefix string) map[string]reflect.Kind {
	out := map[string]reflect.Kind{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("koanf")
		if tag == "" || tag == "-" {
			continue
		}
		key := prefix + tag
		switch f.Type.Kind() {
		case reflect.Struct:
			for k, v := range leafKeys(f.Type, key+".") {
				out[k] = v
			}
		case reflect.Map:
			// open maps (plugin blocks, checksums) are checked elsewhere
		default:
			out[key] = f.Type.Kind()
		}
	}
	return out
}

func isSection(known map[string]reflect.Kind, key string) bool {
	for k := range known {
		if strings.HasPrefix(k, key+".") {
			return true
		}
	}
	return false
}

// topBlocks are the config's blocks, plugin's included.
func topBlocks(known map[string]reflect.Kind) []string {
	seen := map[string]bool{"plugin": true}
	for k := range known {
		seen[strings.SplitN(k, ".", 2)[0]] = true
	}
	return slices.Sorted(maps.Keys(seen))
}

// didYouMean is " (did you mean "x"?)" for the candidate nearest s, or "".
func didYouMean(s string, candidates []string) string {
	if n := sdk.Nearest(s, candidates); n != "" && n != s {
		return fmt.Sprintf(" (did you mean %q?)", n)
	}
	return ""
}

func siblings(known map[string]reflect.Kind, key string) []string {
	prefix := ""
	if i := strings.LastIndex(key, "."); i >= 0 {
		prefix = key[:i+1]
	}
	var out []string
	seen := map[string]bool{}
	for k := range known {
		if strings.HasPrefix(k, prefix) {
			rest := strings.SplitN(strings.TrimPrefix(k, prefix), ".", 2)[0]
			if !seen[rest] {
				seen[rest] = true
				out = append(out, rest)
			}
		}
	}
	if len(out) == 0 {
		for k := range known {
			top := strings.SplitN(k, ".", 2)[0]
			if !seen[top] {
				seen[top] = true
				out = append(out, top)
			}
		}
	}
	sort.Strings(out)
	return out
}
