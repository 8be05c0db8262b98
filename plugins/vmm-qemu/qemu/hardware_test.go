package qemu

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/sdk/vmm"
)

func TestHardwareRoundTripsAndOldPointsKeepTheirDevices(t *testing.T) {
	old := "virtio-blk:root,virtio-net:user,vga:std,serial:1"
	h, err := parseHardware(old)
	if err != nil || h.String() != old || h.cdrom || h.usb || h.uefi() {
		t.Fatalf("a point made before the CD-ROM, tablet and firmware entries: %+v %v → %q", h, err, h.String())
	}
	for _, spec := range []vmm.Spec{
		{Disks: []vmm.Disk{{Name: "root"}}, Network: "user"},
		{Disks: []vmm.Disk{{Name: "root"}, {Name: "data"}}, Network: "user", Devices: vmm.DevicesCompatible, Firmware: vmm.FirmwareUEFI, SecureBoot: true},
		{Network: "none", Firmware: vmm.FirmwareUEFI},
	} {
		want := hardwareOf(spec)
		got, err := parseHardware(want.String())
		if err != nil || got.String() != want.String() {
			t.Fatalf("%q → %+v %v", want.String(), got, err)
		}
		s := spec
		if note := got.applyTo(&s); note != "" {
			t.Fatalf("the spec's own devices differ from themselves: %s", note)
		}
	}
	if _, err := parseHardware(old + ",tpm:2"); err == nil || !strings.Contains(err.Error(), "tpm:2") {
		t.Fatalf("an unknown device: %v", err)
	}
}

func TestChangedDevicesWaitForTheColdBoot(t *testing.T) {
	point := hardwareOf(vmm.Spec{Disks: []vmm.Disk{{Name: "root"}}, Network: "user"})
	now := vmm.Spec{Disks: []vmm.Disk{{Name: "root"}}, Network: "user", Devices: vmm.DevicesCompatible, Firmware: vmm.FirmwareUEFI}
	note := point.applyTo(&now)
	if !strings.Contains(note, "firmware bios → uefi") || !strings.Contains(note, "virtio-blk → sata") {
		t.Fatalf("note %q", note)
	}
	if now.Devices != vmm.DevicesVirtio || now.FirmwareOf() != vmm.FirmwareBIOS {
		t.Fatalf("the resumed machine does not run with the point's devices: %+v", now)
	}
	if hardwareOf(now).String() != point.String() {
		t.Fatalf("%q, want the point's %q", hardwareOf(now).String(), point.String())
	}
}

func FuzzHardware(f *testing.F) {
	f.Add("virtio-blk:root,virtio-net:user,vga:std,serial:1,cdrom:sata,usb:tablet+kbd,virtio-rng,agent:virtio-serial,firmware:uefi")
	f.Add("virtio-blk:root,vga:std,serial:1,cdrom:sata,usb:tablet")
	f.Add("sata:a,sata:b,e1000:user")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parseHardware(s)
		if err != nil {
			return
		}
		again, err := parseHardware(h.String())
		if err != nil || again.String() != h.String() {
			t.Fatalf("%q → %q → %v", s, h.String(), err)
		}
	})
}

// The portable model has nothing of KVM's own (no kvmclock device, whose
// state TCG cannot load; no x2APIC, which TCG does not emulate), under
// either accelerator, and QEMU takes it; a portable point of an earlier
// version resumes with the model it was taken with.
func TestPortableCPUResumesUnderTCGAndKVMAlike(t *testing.T) {
	for _, accel := range []string{"kvm", "tcg"} {
		got := cpuModel(vmm.Spec{CPUModel: "portable", Accelerator: accel})
		if !strings.Contains(got, "kvm=off") || !strings.Contains(got, "x2apic=off") || !strings.HasPrefix(got, "qemu64") {
			t.Errorf("portable under %s: -cpu %s", accel, got)
		}
	}
	if got := resumeCPU(legacyPortable, portableCPU); got != legacyPortable {
		t.Errorf("an earlier portable point resumes with -cpu %s; want %s, as taken", got, legacyPortable)
	}
	if got := resumeCPU("max", "max"); got != "max" {
		t.Errorf("resumeCPU(max) = %s", got)
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("no QEMU")
	}
	// QEMU that takes the model waits (-S) until it is killed; one that
	// refuses it exits at once, saying why.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, qemu, "-machine", "q35,accel=tcg", "-cpu", portableCPU, "-display", "none", "-nodefaults", "-S").CombinedOutput()
	if ctx.Err() == nil {
		t.Fatalf("QEMU refuses -cpu %s: %v %s", portableCPU, err, out)
	}
}
