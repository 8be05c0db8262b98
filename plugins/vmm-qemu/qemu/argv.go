package qemu

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/soulpad/soulpad/sdk/vmm"
	"github.com/soulpad/soulpad/sdk/vmm/diskchain"
)

// expected is the description this plugin would give spec.
func (p *Plugin) expected(spec vmm.Spec) Description {
	return Description{Format: 1, QEMUVersion: p.version, MachineType: p.machineType, CPU: cpuModel(spec),
		MemoryMiB: spec.MemoryMiB, VCPUs: spec.VCPUs, Devices: devices(spec)}
}

// devices is the canonical device list: it must be identical on resume.
func devices(spec vmm.Spec) string {
	var d []string
	for _, disk := range spec.Disks {
		d = append(d, "virtio-blk:"+disk.Name)
	}
	if spec.Network == "user" {
		d = append(d, "virtio-net:user")
	}
	d = append(d, "vga:std", "serial:1")
	return strings.Join(d, ",")
}

// hasDisplay says whether this QEMU has the display backend (gtk is a
// loadable module: Debian's qemu-system-gui). Without it a window is not
// opened, and the screen is on `soulpad view` only.
func (p *Plugin) hasDisplay(name string) bool {
	p.displaysOnce.Do(func() {
		out, _ := exec.Command(p.qemuPath, "-display", "help").CombinedOutput()
		p.displays = map[string]bool{}
		for _, l := range strings.Split(string(out), "\n") {
			p.displays[strings.TrimSpace(l)] = true
		}
		if !p.displays["gtk"] && (os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != "") {
			p.log.Warn("no window for the machine: QEMU's GTK display is not installed (Debian: qemu-system-gui); `soulpad view` shows the screen")
		}
	})
	return p.displays[name]
}

// hasScreen says whether the machine's screen is served on screen.sock.
func hasScreen(spec vmm.Spec) bool { return spec.Display == "vnc" || spec.Display == "auto" }

// memoryBackend is the -machine option that backs RAM with the file.
func memoryBackend(v *proc) string {
	if v.ramFile == "" {
		return ""
	}
	return ",memory-backend=pc.ram"
}

// mac derives a stable MAC address from the machine name.
func mac(name string) string {
	h := sha256.Sum256([]byte(name))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", h[0], h[1], h[2])
}

func (p *Plugin) args(v *proc, incoming bool) ([]string, error) {
	spec := v.spec
	accel := "tcg"
	if spec.Accelerator == "kvm" {
		accel = "kvm"
	}
	a := []string{
		"-nodefaults", "-no-user-config", "-no-reboot",
		"-name", spec.Name,
		"-machine", p.machineType + ",accel=" + accel + memoryBackend(v),
		"-cpu", v.desc.CPU,
		"-m", strconv.FormatUint(spec.MemoryMiB, 10),
		"-smp", strconv.Itoa(spec.VCPUs),
		"-rtc", "base=utc",
		"-vga", "std",
		"-chardev", "socket,id=qmp,path=" + filepath.Join(v.runDir, "qmp.sock") + ",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		"-chardev", "socket,id=ser0,path=" + filepath.Join(v.runDir, "console.sock") + ",server=on,wait=off,logfile=" + filepath.Join(v.runDir, "console.log") + ",logappend=on",
		"-serial", "chardev:ser0",
	}
	if v.ramFile != "" {
		a = append(a, memoryArgs(v.ramFile, spec.MemoryMiB)...)
	}
	if spec.Display == "auto" && (os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != "") && p.hasDisplay("gtk") {
		a = append(a, "-display", "gtk")
	} else {
		a = append(a, "-display", "none")
	}
	if hasScreen(spec) {
		// The screen for `soulpad view`, on a socket in the private run
		// directory: no port, no password to leak.
		a = append(a, "-vnc", "unix:"+filepath.Join(v.runDir, "screen.sock"))
	}
	for _, d := range spec.Disks {
		top := v.tops[d.Name]
		a = append(a, "-drive", fmt.Sprintf("file=%s,if=none,id=disk-%s,format=qcow2,cache=writeback,discard=unmap",
			filepath.Join(diskchain.DiskDir(v.machineDir, d), top), d.Name),
			"-device", fmt.Sprintf("virtio-blk-pci,drive=disk-%s,id=vblk-%s", d.Name, d.Name))
	}
	if spec.Network == "user" {
		a = append(a, "-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0,mac="+mac(spec.Name))
	}
	path := func(f string) string {
		if filepath.IsAbs(f) {
			return f
		}
		return filepath.Join(v.machineDir, f)
	}
	if spec.Kernel != "" {
		a = append(a, "-kernel", path(spec.Kernel))
		if spec.Initrd != "" {
			a = append(a, "-initrd", path(spec.Initrd))
		}
		cmdline := spec.Cmdline
		if cmdline == "" {
			cmdline = "console=ttyS0"
		}
		// The guest's kernel command line stays off QEMU's argv, which any
		// local user can read in /proc: QEMU reads it from a file in the
		// private run directory (removed once QEMU is up).
		if !strings.ContainsAny(cmdline, "\"\n\\") {
			conf := filepath.Join(v.runDir, "machine.conf")
			if err := os.WriteFile(conf, []byte("[machine]\n  append = \""+cmdline+"\"\n"), 0o600); err != nil {
				return nil, err
			}
			a = append(a, "-readconfig", conf)
		} else {
			a = append(a, "-append", cmdline)
		}
	}
	if incoming {
		a = append(a, "-S", "-incoming", "defer")
	}
	return append(a, p.cfg.ExtraArgs...), nil
}
