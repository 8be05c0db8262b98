package qemu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/atomicfile"
	"github.com/soulpad/soulpad/sdk/vmm"
	"github.com/soulpad/soulpad/sdk/vmm/diskchain"
)

// hardware is the machine's devices, as the description records them
// (Description.Devices, one canonical string): a point resumes with the
// devices it was made with, whatever the spec says now; a changed spec
// takes effect at the next cold boot.
type hardware struct {
	// bus is "virtio-blk" or "sata" for every disk, in spec order.
	bus   string
	disks []string
	// net is "", "virtio-net" or "e1000" (user networking).
	net string
	// cdrom: a CD-ROM drive for Spec.Media; usb: a USB tablet (the
	// keyboard stays PS/2: QEMU types into the newest keyboard, and a
	// guest without USB drivers would get none of it); usbKbd: a USB
	// keyboard too (points made while machines had one); rng:
	// virtio-rng; agent: the guest agent's channel.
	cdrom, usb, usbKbd, rng, agent bool
	// firmware is "bios", "uefi" or "uefi-secure".
	firmware string
}

// hardwareOf is the hardware a cold boot of spec gets.
func hardwareOf(spec vmm.Spec) hardware {
	h := hardware{bus: "virtio-blk", cdrom: true, usb: true, rng: true, agent: true, firmware: spec.FirmwareOf()}
	compatible := spec.Devices == vmm.DevicesCompatible
	if compatible {
		h.bus, h.rng = "sata", false
	}
	for _, d := range spec.Disks {
		h.disks = append(h.disks, d.Name)
	}
	if spec.Network == "user" {
		h.net = "virtio-net"
		if compatible {
			h.net = "e1000"
		}
	}
	if h.firmware == vmm.FirmwareUEFI && spec.SecureBoot {
		h.firmware = "uefi-secure"
	}
	return h
}

// String is the canonical device list. Points made before the USB
// tablet, CD-ROM and firmware entries had "virtio-blk:root,
// virtio-net:user,vga:std,serial:1", which parses back to that machine.
func (h hardware) String() string {
	var d []string
	for _, n := range h.disks {
		d = append(d, h.bus+":"+n)
	}
	if h.net != "" {
		d = append(d, h.net+":user")
	}
	d = append(d, "vga:std", "serial:1")
	if h.cdrom {
		d = append(d, "cdrom:sata")
	}
	if h.usb && h.usbKbd {
		d = append(d, "usb:tablet+kbd")
	} else if h.usb {
		d = append(d, "usb:tablet")
	}
	if h.rng {
		d = append(d, "virtio-rng")
	}
	if h.agent {
		d = append(d, "agent:virtio-serial")
	}
	if h.firmware != vmm.FirmwareBIOS {
		d = append(d, "firmware:"+h.firmware)
	}
	return strings.Join(d, ",")
}

// parseHardware reads a description's device list back; a device this
// plugin does not know (a point from a newer one) is an error.
func parseHardware(s string) (hardware, error) {
	h := hardware{bus: "virtio-blk", firmware: vmm.FirmwareBIOS}
	if s == "" {
		return h, errors.New("no devices recorded")
	}
	for _, item := range strings.Split(s, ",") {
		kind, val, _ := strings.Cut(item, ":")
		switch {
		case (kind == "virtio-blk" || kind == "sata") && val != "":
			if len(h.disks) > 0 && kind != h.bus {
				return h, fmt.Errorf("disks on two buses (%q)", s)
			}
			h.bus, h.disks = kind, append(h.disks, val)
		case (kind == "virtio-net" || kind == "e1000") && val == "user":
			h.net = kind
		case item == "vga:std" || item == "serial:1":
		case item == "cdrom:sata":
			h.cdrom = true
		case item == "usb:tablet+kbd":
			h.usb, h.usbKbd = true, true
		case item == "usb:tablet":
			h.usb = true
		case item == "virtio-rng":
			h.rng = true
		case item == "agent:virtio-serial":
			h.agent = true
		case kind == "firmware" && (val == "uefi" || val == "uefi-secure"):
			h.firmware = val
		default:
			return h, fmt.Errorf("device %q is not one this vmm-qemu knows", item)
		}
	}
	return h, nil
}

// uefi reports whether the machine boots OVMF.
func (h hardware) uefi() bool { return strings.HasPrefix(h.firmware, vmm.FirmwareUEFI) }

// applyTo gives spec the firmware and device family of h (what a resumed
// point runs with) and says what differs from the spec, or "".
func (h hardware) applyTo(spec *vmm.Spec) string {
	var diffs []string
	want := hardwareOf(*spec)
	if h.uefi() != want.uefi() || h.firmware != want.firmware {
		diffs = append(diffs, fmt.Sprintf("firmware %s → %s", h.firmware, want.firmware))
	}
	if h.bus != want.bus {
		diffs = append(diffs, fmt.Sprintf("disks on %s → %s", h.bus, want.bus))
	}
	if h.net != want.net {
		diffs = append(diffs, fmt.Sprintf("network %q → %q", h.net, want.net))
	}
	spec.Firmware, spec.SecureBoot = vmm.FirmwareBIOS, h.firmware == "uefi-secure"
	if h.uefi() {
		spec.Firmware = vmm.FirmwareUEFI
	}
	spec.Devices = vmm.DevicesVirtio
	if h.bus == "sata" {
		spec.Devices = vmm.DevicesCompatible
	}
	if !h.cdrom && spec.Media != "" {
		diffs = append(diffs, "a CD-ROM drive for the installer")
		spec.Media = ""
	}
	return strings.Join(diffs, ", ")
}

// firmwareFiles are OVMF's code and the template of its variable store
// for the machine's firmware ("" for BIOS).
func (p *Plugin) firmwareFiles(h hardware) (code, vars string, err error) {
	if !h.uefi() {
		return "", "", nil
	}
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	code, vars = or(p.cfg.OVMFCode, "/usr/share/OVMF/OVMF_CODE_4M.fd"), or(p.cfg.OVMFVars, "/usr/share/OVMF/OVMF_VARS_4M.fd")
	if h.firmware == "uefi-secure" {
		code, vars = or(p.cfg.OVMFSecureCode, "/usr/share/OVMF/OVMF_CODE_4M.ms.fd"), or(p.cfg.OVMFSecureVars, "/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
	}
	for _, f := range []string{code, vars} {
		if _, err := os.Stat(f); err != nil {
			return "", "", fmt.Errorf("vmm-qemu: UEFI firmware: %s is missing (Debian: apt-get install ovmf; or set ovmf_code and ovmf_vars in plugin \"vmm-qemu\" { … }): %w", f, sdk.ErrIncompatibleHost)
		}
	}
	return code, vars, nil
}

// prepareVars gives a UEFI machine its variable store on its first boot:
// a copy of the firmware's template, kept from then on as a chain beside
// the disks (diskchain.VarsDisk).
func (p *Plugin) prepareVars(spec vmm.Spec, machineDir string) error {
	h := hardwareOf(spec)
	_, tmpl, err := p.firmwareFiles(h)
	if err != nil || tmpl == "" {
		return err
	}
	base := diskchain.BasePath(machineDir, diskchain.VarsDisk)
	if _, err := os.Stat(base); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(base), 0o700); err != nil {
		return err
	}
	return atomicfile.Copy(tmpl, base, 0o600)
}
