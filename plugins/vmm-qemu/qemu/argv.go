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
		MemoryMiB: spec.MemoryMiB, VCPUs: spec.VCPUs, Devices: hardwareOf(spec).String()}
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

// smm turns on System Management Mode, which Secure Boot's variable
// store needs.
func smm(h hardware) string {
	if h.firmware == "uefi-secure" {
		return ",smm=on"
	}
	return ""
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
		"-machine", p.machineType + ",accel=" + accel + memoryBackend(v) + smm(v.hw),
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
	path := func(f string) string {
		if filepath.IsAbs(f) {
			return f
		}
		return filepath.Join(v.machineDir, f)
	}
	dev, err := p.deviceArgs(v)
	if err != nil {
		return nil, err
	}
	a = append(a, dev...)
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

// deviceArgs are the machine's devices, from v.hw: disks, network,
// CD-ROM, USB tablet and keyboard, virtio-rng, the guest agent's channel,
// and the UEFI firmware with the machine's variable store.
func (p *Plugin) deviceArgs(v *proc) ([]string, error) {
	h, spec := v.hw, v.spec
	var a []string
	// The CD-ROM boots first while it holds an installer; then the disk.
	boot := 1
	if h.cdrom && spec.Media != "" {
		boot = 2
	}
	for i, d := range spec.Disks {
		top := filepath.Join(diskchain.DiskDir(v.machineDir, d), v.tops[d.Name])
		a = append(a, "-drive", fmt.Sprintf("file=%s,if=none,id=disk-%s,format=qcow2,cache=writeback,discard=unmap", qemuOpt(top), d.Name))
		dev := fmt.Sprintf("virtio-blk-pci,drive=disk-%s,id=vblk-%s", d.Name, d.Name)
		if h.bus == "sata" {
			// q35's own AHCI controller: ports ide.0 to ide.5.
			dev = fmt.Sprintf("ide-hd,drive=disk-%s,id=sata-%s,bus=ide.%d", d.Name, d.Name, i)
		}
		if i == 0 && spec.Kernel == "" {
			dev += fmt.Sprintf(",bootindex=%d", boot)
		}
		a = append(a, "-device", dev)
	}
	switch h.net {
	case "virtio-net":
		a = append(a, "-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0,mac="+mac(spec.Name))
	case "e1000":
		a = append(a, "-netdev", "user,id=net0", "-device", "e1000,netdev=net0,mac="+mac(spec.Name))
	}
	if h.cdrom {
		drive := "if=none,id=cd0,media=cdrom,readonly=on"
		iso, err := spec.MediaPath(v.machineDir)
		if err != nil {
			return nil, fmt.Errorf("vmm-qemu: %w", err)
		}
		if iso != "" {
			drive += ",format=raw,file=" + qemuOpt(iso)
		}
		dev := "ide-cd,drive=cd0,id=cdrom0,bus=ide.5"
		if spec.Media != "" {
			dev += ",bootindex=1"
		}
		a = append(a, "-drive", drive, "-device", dev)
	}
	if h.usb {
		a = append(a, "-device", "qemu-xhci,id=usb", "-device", "usb-tablet,bus=usb.0")
		if h.usbKbd {
			a = append(a, "-device", "usb-kbd,bus=usb.0")
		}
	}
	if h.rng {
		a = append(a, "-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0")
	}
	if h.agent {
		a = append(a, "-device", "virtio-serial-pci,id=vser0",
			"-chardev", "socket,id=qga0,path="+filepath.Join(v.runDir, "agent.sock")+",server=on,wait=off",
			"-device", "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0")
	}
	if h.uefi() {
		code, _, err := p.firmwareFiles(h)
		if err != nil {
			return nil, err
		}
		vars := filepath.Join(diskchain.DiskDir(v.machineDir, diskchain.VarsDisk), v.tops[diskchain.VarsDisk.Name])
		a = append(a, "-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+qemuOpt(code),
			"-drive", "if=pflash,format=qcow2,unit=1,file="+qemuOpt(vars))
		if h.firmware == "uefi-secure" {
			a = append(a, "-global", "driver=cfi.pflash01,property=secure,value=on")
		}
	}
	return a, nil
}
