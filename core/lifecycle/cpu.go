package lifecycle

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/detect"
	"github.com/soulpad/soulpad/sdk/vmm/x86cpu"
)

// CPU models a machine can be given (machine.cpu_model); what each needs
// of a host is the VMM plugin's to say (vmm.StartResponse.CPUFeatures),
// with package x86cpu as the default for plugins that do not.
const (
	CPUPortable = x86cpu.Portable
	CPUHost     = x86cpu.Host
	CPUMax      = x86cpu.Max
)

// NeededFeatures is what a point of a machine with CPU model model, taken
// on host, needs from the host that resumes it when the VMM plugin does not
// say: the x86 default (package x86cpu). nil means unknown.
func NeededFeatures(model string, host detect.HostProfile) []string {
	return x86cpu.Needed(model, host.CPU.Flags)
}

// MissingFeatures lists the features of need this host lacks; nil when the
// host's flags are unknown.
func MissingFeatures(need []string, host detect.HostProfile) []string {
	if len(host.CPU.Flags) == 0 {
		return nil
	}
	var missing []string
	for _, f := range need {
		if !host.HasFlag(f) {
			missing = append(missing, f)
		}
	}
	return missing
}

// HostSummary is one line about a host: name, CPU, cores, memory, KVM.
func HostSummary(p detect.HostProfile) string {
	cpu := p.CPU.ModelName
	if cpu == "" {
		cpu = p.CPU.Vendor
	}
	if cpu == "" {
		cpu = "CPU unknown"
	}
	kvm := "no KVM"
	if p.KVM {
		kvm = "KVM"
	}
	// A profile may come from a point taken on another PC: its strings
	// are printed as text, never as terminal controls.
	s := fmt.Sprintf("%s: %s, %d cores, %s", pad.Printable(orUnknown(p.Hostname)), pad.Printable(cpu), p.CPU.Cores, kvm)
	if p.MemTotalBytes > 0 {
		s += fmt.Sprintf(", %d MiB RAM (%d available)", p.MemTotalBytes>>20, p.MemAvailableBytes>>20)
	}
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "unnamed host"
	}
	return s
}

// hostReserveMiB is memory left to the host when a machine is sized.
const hostReserveMiB = 256

// fitMemory checks a machine of mib MiB against what host can give.
// A resume needs exactly mib; a cold boot may shrink to fit (down to 64
// MiB) and says so.
func fitMemory(mib uint64, host detect.HostProfile, resume bool) (uint64, string, error) {
	if host.MemAvailableBytes == 0 {
		return mib, "", nil
	}
	avail := host.MemAvailableBytes >> 20
	can := uint64(0)
	if avail > hostReserveMiB {
		can = avail - hostReserveMiB
	}
	if mib <= can {
		return mib, "", nil
	}
	if resume {
		return 0, "", fmt.Errorf("the machine has %d MiB of RAM and this host can give %d MiB (%d MiB available, %d kept for the host): free memory and run again: %w",
			mib, can, avail, hostReserveMiB, sdk.ErrIncompatibleHost)
	}
	if can < 64 {
		return 0, "", fmt.Errorf("this host can give only %d MiB of RAM (%d MiB available); the machine needs at least 64 MiB: %w", can, avail, sdk.ErrIncompatibleHost)
	}
	return can, fmt.Sprintf("the machine gets %d MiB of RAM instead of %d: that is what this host can give", can, mib), nil
}

// ProbeHost describes this host with the configured detect plugin (or the
// core's minimal probe when none is configured) and says which was used.
func ProbeHost(ctx context.Context, cfg *config.Config, log hclog.Logger) (detect.HostProfile, string, error) {
	if cfg.Plugins.Detect == "" {
		return minimalProfile(), "built-in probe", nil
	}
	host, dp, err := startOne(ctx, cfg, log, nil, cfg.Plugins.Detect, sdk.KindDetect)
	if err != nil {
		return detect.HostProfile{}, "", err
	}
	defer host.Close()
	out, err := dp.Detect().Probe(ctx, detect.ProbeRequest{})
	if err != nil {
		return detect.HostProfile{}, "", dp.Err("probe", err)
	}
	return out.Profile, dp.Name, nil
}
