package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strings"

	"github.com/soulpad/soulpad/internal/kvmprobe"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// Config is the plugin's block in site.hcl.
type Config struct {
	// QEMU is the emulator binary (default qemu-system-x86_64 from PATH).
	QEMU string `json:"qemu"`
	// QEMUImg is the image tool (default qemu-img from PATH).
	QEMUImg string `json:"qemu_img"`
	// MachineType is the QEMU machine type; default: the versioned type
	// that "q35" stands for in this QEMU (e.g. pc-q35-7.2). It is recorded
	// with every suspend point: resume needs the same one.
	MachineType string `json:"machine_type"`
	// MaxBandwidthMiBps caps the suspend stream; 0 means as fast as the
	// disk goes (QEMU's own default is 128 MiB/s).
	MaxBandwidthMiBps int `json:"max_bandwidth_mibps"`
	// Memory is where guest RAM lives: "mapped" (a file in the vault,
	// cloned into each point, so a suspend writes what the guest changed
	// and a resume starts at once; needs a vault that can clone files),
	// "stream" (all RAM in the migration stream at every suspend, read
	// whole at resume), or "auto" (the default: mapped where the vault
	// can clone files, else stream).
	Memory string `json:"memory"`
	// OVMFCode and OVMFVars are the UEFI firmware and the template of its
	// variable store (Debian's ovmf: /usr/share/OVMF/OVMF_CODE_4M.fd and
	// OVMF_VARS_4M.fd); OVMFSecureCode and OVMFSecureVars the same with
	// Secure Boot and Microsoft's keys (OVMF_CODE_4M.ms.fd,
	// OVMF_VARS_4M.ms.fd).
	OVMFCode       string `json:"ovmf_code"`
	OVMFVars       string `json:"ovmf_vars"`
	OVMFSecureCode string `json:"ovmf_secure_code"`
	OVMFSecureVars string `json:"ovmf_secure_vars"`
	// ExtraArgs are appended to QEMU's command line; they must not change
	// the machine's devices, or suspend points will not resume.
	ExtraArgs []string `json:"extra_args"`
}

// Description is what a suspend point records of the machine, as JSON:
// resume needs the same machine type, CPU, memory, vCPUs and devices.
type Description struct {
	Format      int    `json:"format"`
	QEMUVersion string `json:"qemu_version"`
	MachineType string `json:"machine_type"`
	CPU         string `json:"cpu"`
	MemoryMiB   uint64 `json:"memory_mib"`
	VCPUs       int    `json:"vcpus"`
	Devices     string `json:"devices"`
	// Memory is "mapped" when the point's RAM is in RAMFile and StateFile
	// holds only the device state; empty for a full stream.
	Memory string `json:"memory,omitempty"`
	// Disks maps each disk to the overlay (in disks/<name>/) that holds its
	// state at the suspend point.
	Disks map[string]string `json:"disks,omitempty"`
}

func (d Description) String() string {
	b, _ := json.Marshal(d)
	return string(b)
}

// compatible explains how d differs from want, or returns "".
func (d Description) compatible(want Description) string {
	var diffs []string
	if d.MachineType != want.MachineType {
		diffs = append(diffs, fmt.Sprintf("machine type %s (this host would use %s)", d.MachineType, want.MachineType))
	}
	if d.CPU != want.CPU {
		diffs = append(diffs, fmt.Sprintf("CPU %s, the spec says %s", d.CPU, want.CPU))
	}
	if d.MemoryMiB != want.MemoryMiB {
		diffs = append(diffs, fmt.Sprintf("memory %d MiB, the spec says %d MiB", d.MemoryMiB, want.MemoryMiB))
	}
	if d.VCPUs != want.VCPUs {
		diffs = append(diffs, fmt.Sprintf("%d vCPUs, the spec says %d", d.VCPUs, want.VCPUs))
	}
	if d.Devices != want.Devices {
		diffs = append(diffs, fmt.Sprintf("devices %q, the spec gives %q", d.Devices, want.Devices))
	}
	return strings.Join(diffs, "; ")
}

// portableCPU is the portable model (x86cpu.Portable): qemu64 with
// nothing of KVM's own in it, so that a point taken under KVM resumes
// under TCG and back. Under KVM, QEMU would add the paravirtual clock (a
// kvmclock device, whose state TCG cannot load: "Unknown savevm section
// kvmclock") and the other paravirtual features, and x2APIC, which TCG
// does not emulate.
const portableCPU = "qemu64,kvm=off,x2apic=off"

// legacyPortable is the portable model as earlier versions ran it: their
// points resume with it.
const legacyPortable = "qemu64"

// cpuModel maps the spec's CPU model to QEMU's.
func cpuModel(spec vmm.Spec) string {
	switch spec.CPUModel {
	case "", "portable":
		return portableCPU
	case "host":
		if spec.Accelerator == "kvm" {
			return "host"
		}
		return "max"
	}
	return spec.CPUModel
}

var aliasRE = regexp.MustCompile(`(?m)^q35\s+.*\(alias of (\S+)\)`)
var versionRE = regexp.MustCompile(`QEMU emulator version (\S+)`)

// probe finds the binaries and this QEMU's version and default q35 type.
func (p *Plugin) probe(ctx context.Context) error {
	if p.qemuPath != "" {
		return nil
	}
	bin := p.cfg.QEMU
	if bin == "" {
		bin = "qemu-system-x86_64"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return fmt.Errorf("vmm-qemu: %s not found (install qemu-system-x86, or set qemu = \"/path/to/qemu-system-x86_64\" in plugin \"vmm-qemu\" { … }): %w", bin, sdk.ErrIncompatibleHost)
	}
	img := p.cfg.QEMUImg
	if img == "" {
		img = "qemu-img"
	}
	imgPath, err := exec.LookPath(img)
	if err != nil {
		return fmt.Errorf("vmm-qemu: %s not found (install qemu-utils, or set qemu_img in plugin \"vmm-qemu\" { … }): %w", img, sdk.ErrIncompatibleHost)
	}
	out, err := exec.CommandContext(ctx, path, "-version").Output()
	if err != nil {
		return fmt.Errorf("vmm-qemu: %s -version: %w", path, err)
	}
	ver := ""
	if m := versionRE.FindSubmatch(out); m != nil {
		ver = string(m[1])
	}
	mt := p.cfg.MachineType
	if mt == "" {
		out, err := exec.CommandContext(ctx, path, "-machine", "help").Output()
		if err != nil {
			return fmt.Errorf("vmm-qemu: %s -machine help: %w", path, err)
		}
		m := aliasRE.FindSubmatch(out)
		if m == nil {
			return fmt.Errorf("vmm-qemu: %s has no q35 machine type: %w", path, sdk.ErrIncompatibleHost)
		}
		mt = string(m[1])
	}
	p.qemuPath, p.imgPath, p.version, p.machineType = path, imgPath, ver, mt
	return nil
}

// hasMachineType reports whether this QEMU knows machine type mt.
func (p *Plugin) hasMachineType(ctx context.Context, mt string) bool {
	out, err := exec.CommandContext(ctx, p.qemuPath, "-machine", "help").Output()
	if err != nil {
		return false
	}
	for _, line := range bytes.Split(out, []byte("\n")) {
		if f := bytes.Fields(line); len(f) > 0 && string(f[0]) == mt {
			return true
		}
	}
	return false
}

// kvmUsable: /dev/kvm opens and runs guests (see kvmprobe).
func kvmUsable() bool {
	ok, _ := kvmprobe.Usable("/dev/kvm")
	return ok
}
