package config

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/soulpad/soulpad/sdk/store"
)

// A machine's name; a plugin's name (never a path: it names a binary in
// a plugin directory).
var (
	machineName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	pluginName  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)
)

// validate checks the machine block.
func (m *Machine) validate(at func(key, msg string, args ...any)) {
	if m.Name == "" || !machineName.MatchString(m.Name) {
		at("machine.name", "%q is not valid: use lower-case letters, digits, '-', '_' or '.'", m.Name)
	}
	if m.MemoryMiB < 16 || m.MemoryMiB > 1<<20 {
		at("machine.memory_mib", "%d is out of range: between 16 and 1048576 (MiB)", m.MemoryMiB)
	}
	if m.VCPUs < 1 || m.VCPUs > 256 {
		at("machine.vcpus", "%d is out of range: between 1 and 256", m.VCPUs)
	}
	if m.CPUModel == "" {
		at("machine.cpu_model", "must be set: \"portable\" (resumes on any x86-64 host), \"host\" (fastest, same CPU only) or a VMM model name")
	}
	oneOf(at, "machine.accelerator", m.Accelerator, "auto", "kvm", "tcg")
	oneOf(at, "machine.network", m.Network, "user", "none")
	oneOf(at, "machine.display", m.Display, "none", "vnc", "auto")
	oneOf(at, "machine.firmware", m.Firmware, "bios", "uefi")
	oneOf(at, "machine.devices", m.Devices, "virtio", "compatible")
	if m.Firmware == "uefi" && m.MemoryMiB < 256 {
		at("machine.memory_mib", "%d MiB is too little for UEFI firmware (OVMF): give the machine 256 MiB or more", m.MemoryMiB)
	}
	if m.SecureBoot && m.Firmware != "uefi" {
		at("machine.secure_boot", "needs machine.firmware = \"uefi\"")
	}
}

// diskNameRE is a disk's kernel name (sda, nvme0n1, mmcblk0, loop3).
var diskNameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,31}$`)

func (c *Config) validate(at func(key, msg string, args ...any)) {
	if c.Pad.Path == "" {
		at("pad.path", "must be set: the pad's directory, e.g. pad { path = \"/media/usb/soulpad\" }")
	}
	if d := c.Pad.BootDisk; d != "" && !diskNameRE.MatchString(d) {
		at("pad.boot_disk", "%q: want a disk's name under /dev, such as sda or nvme0n1", d)
	}
	c.Machine.validate(at)
	oneOf(at, "log.level", c.Log.Level, "trace", "debug", "info", "warn", "error")
	if c.Plugins.Crypt == "" {
		at("plugins.crypt", "must be set: the crypt plugin, e.g. \"crypt-luks\" or \"crypt-gocryptfs\"")
	}
	if c.Plugins.VMM == "" {
		at("plugins.vmm", "must be set: the VMM plugin, e.g. \"vmm-qemu\"")
	}
	for kind, name := range c.Plugins.ByKind() {
		if name != "" && !pluginName.MatchString(name) {
			at("plugins."+kind, "%q is not a plugin name: use lower-case letters, digits and '-'", name)
		}
	}
	if c.Plugins.Strict {
		for kind, name := range c.Plugins.ByKind() {
			if _, ok := c.Plugins.SHA256[name]; name != "" && !ok {
				at("plugins.sha256", "plugins.strict is set but plugins.%s = %q is not pinned: add its SHA-256 (see `soulpad plugins`)", kind, name)
			}
		}
	}
	for name := range c.Plugins.SHA256 {
		if !pluginName.MatchString(name) {
			at("plugins.sha256."+name, "%q is not a plugin name: use lower-case letters, digits and '-'", name)
		}
	}
	for name, sum := range c.Plugins.SHA256 {
		if b, err := hex.DecodeString(sum); err != nil || len(b) != 32 {
			at("plugins.sha256."+name, "%q is not a SHA-256: want 64 hex digits (see `soulpad plugins`)", sum)
		}
	}
	if c.Session.SuspendTimeoutSeconds < 1 {
		at("session.suspend_timeout_seconds", "must be at least 1")
	}
	if c.Session.StageTimeoutSeconds < 1 {
		at("session.stage_timeout_seconds", "must be at least 1")
	}
	for name, block := range c.Plugin {
		if _, err := json.Marshal(block); err != nil {
			at("plugin."+name, "cannot be passed to the plugin: %v", err)
		}
	}
	if c.Session.KeepPoints < 1 {
		at("session.keep_points", "must be at least 1 (the newest suspend point is always kept)")
	}
	if m := c.Session.CheckpointMinutes; !(m == 0 || m >= 0.05 && m <= 24*60) { // NaN too
		at("session.checkpoint_minutes", "%g is out of range: 0 (no checkpoints) or from 0.05 (3 seconds) to 1440 (a day); 10 is the default", m)
	}
	if c.Session.KeepCheckpoints < 1 {
		at("session.keep_checkpoints", "must be at least 1 (the newest checkpoint is what a crash resumes)")
	}
	if c.Session.BackupAfterSuspend && c.Plugins.Backup == "" {
		at("session.backup_after_suspend", "needs plugins.backup to name a backup plugin")
	}
	switch {
	case c.Plugins.Store != "" && c.Store.Name == "":
		at("store.name", "must be set when plugins.store is: the pad's name on the store, e.g. \"alice\"")
	case c.Store.Name != "" && !store.ValidName(c.Store.Name):
		at("store.name", "%q cannot name a pad on a store: use lower-case letters, digits, '.', '_' and '-' (at most 63)", c.Store.Name)
	case !(c.Store.LeaseMinutes >= 0.05 && c.Store.LeaseMinutes <= 7*24*60): // NaN too
		at("store.lease_minutes", "%g is out of range: from 0.05 (3 seconds) to 10080 (a week); 15 is the default", c.Store.LeaseMinutes)
	case c.Store.Name != "" && c.Plugins.Store == "":
		at("plugins.store", "must name a store plugin (e.g. \"store-s3\") when store.name is set")
	}
}

func oneOf(at func(key, msg string, args ...any), key, v string, valid ...string) {
	for _, x := range valid {
		if v == x {
			return
		}
	}
	at(key, "%q is not valid: want one of %s", v, strings.Join(valid, ", "))
}

// CheckFiles checks that the files the config names are there: the
// machine's kernel and initrd (init copies them into the vault) and,
// with unlock too, the passphrase and key files. Each problem names its
// key.
func (c *Config) CheckFiles(unlock bool) []error {
	files := [][2]string{{"machine.kernel", c.Machine.Kernel}, {"machine.initrd", c.Machine.Initrd}}
	if unlock {
		files = append(files, [2]string{"unlock.passphrase_file", c.Unlock.PassphraseFile}, [2]string{"unlock.key_file", c.Unlock.KeyFile})
	}
	var errs []error
	for _, f := range files {
		if f[1] == "" {
			continue
		}
		if st, err := os.Stat(f[1]); err != nil {
			errs = append(errs, c.At(f[0], fmt.Sprintf("%s: %v", f[1], errors.Unwrap(err))))
		} else if !st.Mode().IsRegular() {
			errs = append(errs, c.At(f[0], fmt.Sprintf("%s is not a regular file", f[1])))
		}
	}
	return errs
}
