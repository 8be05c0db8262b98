package lv

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/soulpad/soulpad/sdk/vmm"
)

// esc escapes s for an XML attribute or text.
func esc(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '\'':
			b.WriteString("&apos;")
		case '"':
			b.WriteString("&quot;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// portableFeatures hides KVM from a portable machine under KVM (QEMU's
// kvm=off): no paravirtual clock (a kvmclock device, whose state TCG
// cannot load) nor other paravirtual features, so that its points resume
// under TCG too.
func portableFeatures(typ, model string) string {
	if typ == "kvm" && (model == "" || model == "portable") {
		return "<kvm><hidden state='on'/></kvm>"
	}
	return ""
}

// cpuXML maps the spec's CPU model onto libvirt's.
func cpuXML(model string) string {
	switch model {
	case "", "portable":
		// x2APIC off: TCG does not emulate it (a point taken under KVM
		// resumes under TCG); KVM's paravirtual features are hidden in
		// <features> (portableFeatures).
		return `<cpu mode='custom' match='exact' check='none'><model fallback='forbid'>qemu64</model><feature policy='disable' name='x2apic'/></cpu>`
	case "host":
		return `<cpu mode='host-passthrough' check='none'/>`
	case "max":
		return `<cpu mode='maximum' check='none'/>`
	}
	return fmt.Sprintf(`<cpu mode='custom' match='exact'><model fallback='forbid'>%s</model></cpu>`, esc(model))
}

// domainXML describes the machine as a libvirt domain: the same devices
// as vmm-qemu gives it (q35; virtio disks and network, or SATA and e1000
// with devices = "compatible"; a SATA CD-ROM drive; a USB tablet and
// keyboard; virtio-rng; the guest agent's channel; serial console on a
// unix socket with a log file; no reboot). A restored domain keeps the
// devices of its save image.
func domainXML(name, machineType string, spec vmm.Spec, machineDir, runDir string, tops map[string]string, diskDir func(vmm.Disk) string) string {
	typ := "qemu"
	if spec.Accelerator == "kvm" {
		typ = "kvm"
	}
	path := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(machineDir, p)
	}
	vcpus := spec.VCPUs
	if vcpus < 1 {
		vcpus = 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<domain type='%s' xmlns:qemu='%s'>\n  <name>%s</name>\n  <memory unit='MiB'>%d</memory>\n  <vcpu>%d</vcpu>\n", typ, qemuNS, esc(name), spec.MemoryMiB, vcpus)
	fmt.Fprintf(&b, "  <os>\n    <type arch='x86_64' machine='%s'>hvm</type>\n", esc(machineType))
	if spec.Kernel != "" {
		fmt.Fprintf(&b, "    <kernel>%s</kernel>\n", esc(path(spec.Kernel)))
		if spec.Initrd != "" {
			fmt.Fprintf(&b, "    <initrd>%s</initrd>\n", esc(path(spec.Initrd)))
		}
		if !cmdlineInFile(spec.Cmdline) {
			fmt.Fprintf(&b, "    <cmdline>%s</cmdline>\n", esc(spec.Cmdline))
		}
	}
	b.WriteString("  </os>\n  <features><acpi/>" + portableFeatures(typ, spec.CPUModel) + "</features>\n  " + cpuXML(spec.CPUModel) + "\n")
	b.WriteString("  <clock offset='utc'/>\n  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>destroy</on_reboot>\n  <on_crash>destroy</on_crash>\n  <devices>\n")
	compatible := spec.Devices == vmm.DevicesCompatible
	bus, prefix, nic := "virtio", "vd", "virtio"
	if compatible {
		bus, prefix, nic = "sata", "sd", "e1000"
	}
	boot := 1
	if spec.Media != "" {
		boot = 2 // the installer first
	}
	for i, d := range spec.Disks {
		ro := ""
		if d.ReadOnly {
			ro = "<readonly/>"
		}
		if i == 0 && spec.Kernel == "" {
			ro += fmt.Sprintf("<boot order='%d'/>", boot)
		}
		fmt.Fprintf(&b, "    <disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='writeback' discard='unmap'/><source file='%s'/><target dev='%s%c' bus='%s'/><alias name='ua-disk-%s'/>%s</disk>\n",
			esc(filepath.Join(diskDir(d), tops[d.Name])), prefix, 'a'+i, bus, esc(d.Name), ro)
	}
	b.WriteString("    " + cdromXML(spec, machineDir) + "\n")
	if spec.Network == "user" {
		fmt.Fprintf(&b, "    <interface type='user'><model type='%s'/></interface>\n", nic)
	}
	// The keyboard stays PS/2 (QEMU types into the newest keyboard).
	b.WriteString("    <controller type='usb' model='qemu-xhci'/>\n    <input type='tablet' bus='usb'/>\n")
	if !compatible {
		b.WriteString("    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>\n")
	}
	fmt.Fprintf(&b, "    <channel type='unix'><source mode='bind' path='%s'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>\n",
		esc(filepath.Join(runDir, "agent.sock")))
	fmt.Fprintf(&b, "    <serial type='unix'><source mode='bind' path='%s'/><log file='%s' append='on'/><target port='0'/></serial>\n",
		esc(filepath.Join(runDir, "console.sock")), esc(filepath.Join(runDir, "console.log")))
	if hasScreen(spec) {
		// The screen for `soulpad view`: VNC on a socket in the private
		// run directory, and the same VGA as vmm-qemu's.
		fmt.Fprintf(&b, "    <graphics type='vnc' socket='%s'/>\n    <video><model type='vga'/></video>\n", esc(filepath.Join(runDir, screenSock)))
	}
	b.WriteString("    <memballoon model='none'/>\n  </devices>\n")
	if spec.Kernel != "" && cmdlineInFile(spec.Cmdline) {
		// libvirt would put <cmdline> on QEMU's argv, which any local
		// user reads in /proc: QEMU reads it from a file in the private
		// run directory instead (writeMachineConf).
		fmt.Fprintf(&b, "  <qemu:commandline><qemu:arg value='-readconfig'/><qemu:arg value='%s'/></qemu:commandline>\n", esc(filepath.Join(runDir, machineConf)))
	}
	b.WriteString("</domain>\n")
	return b.String()
}

// cdromXML is the machine's CD-ROM drive, with the installer in it when
// the spec has one (it boots first).
func cdromXML(spec vmm.Spec, machineDir string) string {
	media := ""
	if iso, err := spec.MediaPath(machineDir); err == nil && iso != "" {
		media = fmt.Sprintf("<driver name='qemu' type='raw'/><source file='%s'/>", esc(iso))
	}
	boot := ""
	if spec.Media != "" && spec.Kernel == "" {
		boot = "<boot order='1'/>"
	}
	return fmt.Sprintf("<disk type='file' device='cdrom'>%s<target dev='sdf' bus='sata'/><readonly/>%s<alias name='ua-cdrom'/></disk>", media, boot)
}

// cdromRE finds the CD-ROM drive in a saved domain's XML.
var cdromRE = regexp.MustCompile(`(?s)<disk type='file' device='cdrom'>.*?</disk>`)

// withMedia gives a saved domain's CD-ROM drive what is in it now: the
// installer may have been inserted or ejected since the point was made.
// The rest of the drive (its address, boot order) stays as saved.
func withMedia(xml string, spec vmm.Spec, machineDir string) string {
	iso, err := spec.MediaPath(machineDir)
	if err != nil {
		iso = "" // refused: the drive stays empty (check refuses the start first)
	}
	return cdromRE.ReplaceAllStringFunc(xml, func(old string) string {
		old = mediaRE.ReplaceAllString(old, "")
		src := ""
		if iso != "" {
			src = fmt.Sprintf("<driver name='qemu' type='raw'/><source file='%s'/>", esc(iso))
		}
		return strings.Replace(old, "device='cdrom'>", "device='cdrom'>"+src, 1)
	})
}

// mediaRE finds what says which file is in a drive.
var mediaRE = regexp.MustCompile(`(?s)\s*<(driver|source)\b[^>]*?(/>|>.*?</(driver|source)>)`)

const (
	qemuNS      = "http://libvirt.org/schemas/domain/qemu/1.0"
	machineConf = "machine.conf"
	screenSock  = "screen.sock"
)

// hasScreen says whether the machine's screen is served on screen.sock.
func hasScreen(spec vmm.Spec) bool { return spec.Display == "vnc" || spec.Display == "auto" }

// cmdlineInFile says whether the kernel command line goes to QEMU in a
// config file: any that QEMU's config syntax can quote (no quote, line
// break or backslash); others stay in <cmdline>.
func cmdlineInFile(cmdline string) bool {
	return cmdline != "" && !strings.ContainsAny(cmdline, "\"\n\r\\")
}

// writeMachineConf writes the file domainXML's -readconfig names, for a
// QEMU about to start (or to restore: it must exist then too).
func writeMachineConf(runDir string, spec vmm.Spec) error {
	if spec.Kernel == "" || !cmdlineInFile(spec.Cmdline) {
		return nil
	}
	return os.WriteFile(filepath.Join(runDir, machineConf), []byte("[machine]\n  append = \""+spec.Cmdline+"\"\n"), 0o600)
}

// removeMachineConf removes it once QEMU has read it.
func removeMachineConf(runDir string) { _ = os.Remove(filepath.Join(runDir, machineConf)) }
