package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/core/pluginhost"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/atomicfile"
	"github.com/soulpad/soulpad/sdk/crypt"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// InitOptions configure the creation of a pad.
type InitOptions struct {
	Config *config.Config
	Log    hclog.Logger
	Out    io.Writer
	// Progress, when set, receives the vault's creation progress (a
	// container written end to end) instead of lines on Out.
	Progress   ProgressFunc
	Credential CredentialFunc
	// CarryPlugins copies the configured plugins onto the pad's plugins/,
	// so a host without them can still run the pad.
	CarryPlugins bool
	// PluginDirs, when set, replaces the search path derived from config.
	PluginDirs []string
	// Disk, when set, is a disk image (qcow2, raw, VMDK, VDI, VHDX, VHD
	// or the disk in an OVA) imported as the machine's disk instead of an
	// empty one; DiskFormat says what it is when qemu-img cannot tell
	// (a raw disk without a partition table).
	Disk, DiskFormat string
	// ISO, when set, is an installer put in the machine's CD-ROM drive
	// beside its empty disk; the machine boots from it until it is ejected.
	ISO string
}

// SpecFromConfig is the machine spec `soulpad init` writes into the vault.
func SpecFromConfig(c *config.Config) vmm.Spec {
	s := vmm.Spec{
		Name: c.Machine.Name, MemoryMiB: c.Machine.MemoryMiB, VCPUs: c.Machine.VCPUs, CPUModel: c.Machine.CPUModel,
		Network: c.Machine.Network, Display: c.Machine.Display, Cmdline: c.Machine.Cmdline,
		Firmware: c.Machine.Firmware, SecureBoot: c.Machine.SecureBoot, Devices: c.Machine.Devices,
	}
	if c.Machine.DiskSizeMiB > 0 {
		// The image format is the VMM plugin's to choose (Format empty).
		s.Disks = []vmm.Disk{{Name: "root", Path: "disk", SizeMiB: c.Machine.DiskSizeMiB}}
	}
	if c.Machine.Kernel != "" {
		s.Kernel = "kernel"
	}
	if c.Machine.Initrd != "" {
		s.Initrd = "initrd"
	}
	return s
}

// Init creates a pad at the config's pad.path: pad.json, the vault through
// the crypt plugin, and the machine inside the vault. On failure nothing is
// left behind.
func Init(ctx context.Context, o InitOptions) (p *pad.Pad, err error) {
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	cfg := o.Config
	if errs := cfg.CheckFiles(false); len(errs) > 0 {
		return nil, errors.Join(errs...) // before anything is made
	}
	img, err := checkBroughtIn(ctx, o)
	if err != nil {
		return nil, err
	}
	dir := cfg.Pad.Path
	existed := true
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		existed = false
	}
	if st, err := pad.PeekLock(dir); err == nil && st.Held && st.Holder != nil {
		return nil, &pad.LockedError{Pad: dir, Holder: *st.Holder, Live: true}
	}
	host, cp, err := startOne(ctx, cfg, o.Log, o.PluginDirs, cfg.Plugins.Crypt, sdk.KindCrypt)
	if err != nil {
		return nil, err
	}
	defer host.Close()
	cred, err := initCredential(ctx, cp, o)
	if err != nil {
		return nil, err
	}
	defer cred.Wipe()
	meta := padMeta(ctx, host, cp, cfg, o.Out)
	p, err = pad.Create(dir, meta)
	if err != nil {
		return nil, err
	}

	defer func() {
		if err != nil {
			// Leave the directory as it was: gone, or empty.
			if existed {
				ents, _ := os.ReadDir(dir)
				for _, e := range ents {
					_ = os.RemoveAll(filepath.Join(dir, e.Name()))
				}
			} else {
				_ = os.RemoveAll(dir)
			}
			p = nil
		}
	}()
	lock, err := pad.LockPad(p.Dir, "init", false)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	fmt.Fprintf(o.Out, "creating the vault with %s…\n", cp.Name)
	if _, err = cp.Crypt().Create(ctx, crypt.CreateRequest{VaultPath: p.VaultPath(), Credential: cred, SizeBytes: cfg.Pad.VaultSizeMiB << 20,
		OnProgress: createProgress(o.Out, o.Progress)}); err != nil {
		return nil, cp.Err("create vault", err)
	}
	if o.CarryPlugins {
		if err = carryPlugins(host, p, cfg, o.Out); err != nil {
			return nil, err
		}
	}
	if err = fillVault(ctx, cp, p, cred, cfg, vaultContents{img: img, iso: o.ISO}, createProgress(o.Out, o.Progress)); err != nil {
		return nil, err
	}
	return p, nil
}

// checkBroughtIn checks what the user brings into the new pad before
// anything is made: an installer ISO, or a disk image (returned).
func checkBroughtIn(ctx context.Context, o InitOptions) (img *DiskImage, err error) {
	cfg := o.Config
	if o.ISO != "" {
		if o.Disk != "" {
			return nil, &ImageError{Path: o.ISO, Why: "--iso installs onto an empty disk, and --disk brings one: give one of them"}
		}
		if cfg.Machine.DiskSizeMiB == 0 {
			return nil, &ImageError{Path: o.ISO, Why: "an installer needs an empty disk to install onto: set machine.disk_size_mib"}
		}
		if _, err := CheckISO(o.ISO); err != nil {
			return nil, err
		}
	}
	if o.Disk != "" {
		fmt.Fprintf(o.Out, "checking %s…\n", o.Disk)
		if img, err = InspectDisk(ctx, o.Disk, o.DiskFormat); err != nil {
			return nil, err
		}
		what := img.Format
		if img.Member != "" {
			what += " disk " + img.Member + " in an OVA"
		}
		fmt.Fprintf(o.Out, "  %s, %s as the guest sees it, %s of data\n", what, humanBytes(img.VirtualSize), humanBytes(img.Required))
	}
	return img, nil
}

// initCredential asks for the new vault's credential, unless the crypt
// plugin does not encrypt.
func initCredential(ctx context.Context, cp *pluginhost.Plugin, o InitOptions) (crypt.Credential, error) {
	if cp.Info.Has(crypt.CapNoEncryption) {
		fmt.Fprintf(o.Out, "warning: %s does not encrypt the vault\n", cp.Name)
		return crypt.Credential{}, nil
	}
	if o.Credential == nil {
		return crypt.Credential{}, fmt.Errorf("%s needs a passphrase or key file and none was given", cp.Name)
	}
	return o.Credential(ctx)
}

// padMeta is the new pad's pad.json: its machine and the plugins that
// make it. The VMM plugin's version comes from the plugin itself (not
// configured: its host, e.g. libvirtd, need not be up to make a pad).
func padMeta(ctx context.Context, host *pluginhost.Host, cp *pluginhost.Plugin, cfg *config.Config, out io.Writer) pad.Meta {
	meta := pad.Meta{Machine: cfg.Machine.Name, Crypt: pad.PluginRef{Name: cp.Name, Version: cp.Info.Version}, VMM: pad.PluginRef{Name: cfg.Plugins.VMM}}
	if vp, err := host.Launch(ctx, cfg.Plugins.VMM); err == nil {
		meta.VMM.Version = vp.Info.Version
		vp.Kill()
	} else {
		fmt.Fprintf(out, "warning: the VMM plugin %s: %v\n", cfg.Plugins.VMM, err)
	}
	return meta
}

// carryPlugins copies the configured plugins that are built here onto
// the pad's plugins/.
func carryPlugins(host *pluginhost.Host, p *pad.Pad, cfg *config.Config, out io.Writer) error {
	for _, name := range cfg.Plugins.ByKind() {
		if name == "" {
			continue
		}
		b, err := host.Find(name)
		if err != nil {
			fmt.Fprintf(out, "note: %s is not built here, so it is not carried on the pad\n", name)
			continue
		}
		if err := copyFile(b.Path, filepath.Join(p.PluginDir(), name)); err != nil {
			return err
		}
		_ = os.Chmod(filepath.Join(p.PluginDir(), name), 0o755)
	}
	return nil
}

// fillVault unlocks the new vault, makes the machine in it (its spec,
// kernel and initrd), records the pad's plugins, and locks it.
// vaultContents are what the user brings into a new vault: a disk image,
// or an installer ISO.
type vaultContents struct {
	img *DiskImage
	iso string
}

func fillVault(ctx context.Context, cp *pluginhost.Plugin, p *pad.Pad, cred crypt.Credential, cfg *config.Config, in vaultContents, progress func(crypt.Progress)) error {
	mnt, err := os.MkdirTemp("", "soulpad-init-")
	if err != nil {
		return err
	}
	defer os.Remove(mnt)
	u, err := cp.Crypt().Unlock(ctx, crypt.UnlockRequest{VaultPath: p.VaultPath(), Credential: cred, MountDir: mnt})
	if err != nil {
		return cp.Err("unlock the new vault", err)
	}
	m := pad.MachineIn(u.PlaintextDir, cfg.Machine.Name)
	spec := SpecFromConfig(cfg)
	if in.img != nil {
		spec.Disks = []vmm.Disk{{Name: "root", Path: "disk", Format: "qcow2", SizeMiB: uint64((in.img.VirtualSize + 1<<20 - 1) >> 20)}}
	}
	// The machine's spec is written last: an init killed half-way leaves
	// no machine that looks whole (a truncated disk, no installer).
	err = os.MkdirAll(m.Dir, 0o700)
	if err == nil && in.img != nil {
		err = importInto(ctx, in.img, u.PlaintextDir, filepath.Join(m.Dir, "disk"), cfg, progress)
	}
	if err == nil && in.iso != "" {
		spec, err = insertMedia(ctx, u.PlaintextDir, m, spec, in.iso, func(done, total int64) {
			progress(crypt.Progress{Phase: "copying the installer", BytesDone: uint64(done), BytesTotal: uint64(total)})
		})
	}
	if err == nil && cfg.Machine.Kernel != "" {
		err = copyFile(cfg.Machine.Kernel, filepath.Join(m.Dir, "kernel"))
	}
	if err == nil && cfg.Machine.Initrd != "" {
		err = copyFile(cfg.Machine.Initrd, filepath.Join(m.Dir, "initrd"))
	}
	if err == nil {
		err = m.Create(spec)
	}
	if err == nil {
		// The vault vouches for the plugins carried on the pad.
		err = p.RecordPlugins(u.PlaintextDir)
	}
	if _, lerr := cp.Crypt().Lock(ctx, crypt.LockRequest{VaultPath: p.VaultPath()}); err == nil && lerr != nil {
		err = cp.Err("lock", lerr)
	}
	return err
}

// importInto converts the image into the vault at dst, once it is sure
// to fit with room left for the machine's memory and a few points.
func importInto(ctx context.Context, img *DiskImage, plain, dst string, cfg *config.Config, progress func(crypt.Progress)) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(plain, &st); err != nil {
		return err
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	room := int64(3*cfg.Machine.MemoryMiB+64) << 20
	if short := img.Required + room - free; short > 0 {
		fix := "free room on the pad"
		if cfg.Pad.VaultSizeMiB > 0 {
			fix = fmt.Sprintf("make the pad with a larger vault: pad.vault_size_mib = %d", cfg.Pad.VaultSizeMiB+uint64((short>>20)+256)&^255)
		}
		return &ImageError{Path: img.Path, Why: fmt.Sprintf("it does not fit the vault: its data takes %s and the machine needs about %s more for its memory and points, but the vault has %s free; %s",
			humanBytes(img.Required), humanBytes(room), humanBytes(free), fix)}
	}
	// Written beside, renamed when whole, owner-only like the vault's
	// other files.
	part := dst + ".part"
	defer os.Remove(part)
	if err := img.Convert(ctx, part, func(done, total int64) {
		progress(crypt.Progress{Phase: "importing the disk", BytesDone: uint64(done), BytesTotal: uint64(total)})
	}); err != nil {
		return err
	}
	if err := os.Chmod(part, 0o600); err != nil {
		return err
	}
	return os.Rename(part, dst)
}

// copyFile copies src to dst durably (owner-only; plugins are made
// executable by the caller).
func copyFile(src, dst string) error { return atomicfile.Copy(src, dst, 0o600) }

// createProgress prints a crypt plugin's progress at most every two
// seconds, and its end.
func createProgress(out io.Writer, show ProgressFunc) func(crypt.Progress) {
	var last time.Time
	return func(p crypt.Progress) {
		end := p.BytesTotal > 0 && p.BytesDone >= p.BytesTotal
		if show != nil {
			show(Progress{Step: p.Phase, Done: p.BytesDone, Total: p.BytesTotal, Final: end})
			return
		}
		if time.Since(last) < 2*time.Second && !end {
			return
		}
		last = time.Now()
		what := counted(p.Phase)
		if p.BytesTotal == 0 {
			fmt.Fprintf(out, "  %s: %s%s\n", p.Phase, humanBytes(int64(p.BytesDone)), what)
			return
		}
		fmt.Fprintf(out, "  %s: %s of %s%s (%.0f%%)\n", p.Phase, humanBytes(int64(p.BytesDone)), humanBytes(int64(p.BytesTotal)), what,
			100*float64(p.BytesDone)/float64(p.BytesTotal))
	}
}
