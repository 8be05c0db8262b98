package lifecycle

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/detect"
)

// CPU models a machine can be given (machine.cpu_model):
//
//   - "portable" (default): a named baseline x86-64 model (QEMU's qemu64)
//     that every x86-64 host offers, so a suspend point resumes anywhere;
//   - "host" or "max": every feature of this CPU, fastest, but a point
//     then resumes only on hosts that have the same features;
//   - any other name is handed to the VMM as is; its needs are not known
//     to the core, which then checks nothing before resume.
const (
	CPUPortable = "portable"
	CPUHost     = "host"
	CPUMax      = "max"
)

// portableFeatures are the instruction-set features of the portable model
// (QEMU's qemu64) that guest code uses and the host must have, by their
// /proc/cpuinfo names. Its system features (APIC, MTRR, PAT, machine
// check, …) are emulated by the VMM whatever the host has, and hypervisors
// often hide them from /proc/cpuinfo, so they are not required.
var portableFeatures = []string{
	"clflush", "cmov", "cx16", "cx8", "fpu", "fxsr", "lahf_lm", "lm", "mmx", "nx", "pni", "sse", "sse2", "syscall",
}

// isaFeatures are the /proc/cpuinfo flags that name instructions or state
// a guest's programs may start using once they see them, and so must stay
// on a host that resumes the guest. Flags that describe the host (cache,
// power, mitigations, virtualisation extensions) are left out.
var isaFeatures = map[string]bool{}

func init() {
	for _, f := range strings.Fields(`3dnowprefetch abm adx aes amx_bf16 amx_fp16 amx_int8 amx_tile avx avx2
		avx512_4fmaps avx512_4vnniw avx512_bf16 avx512_bitalg avx512_fp16 avx512_vbmi2 avx512_vnni
		avx512_vp2intersect avx512_vpopcntdq avx512bw avx512cd avx512dq avx512er avx512f avx512ifma avx512pf
		avx512vbmi avx512vl avx_vnni avx_vnni_int8 avx_ifma avx_ne_convert bmi1 bmi2 cldemote clflushopt clwb
		clzero cmpccxadd f16c fma fma4 fsgsbase fsrm fxsr_opt gfni lzcnt misalignsse mmxext movbe movdir64b
		movdiri pclmulqdq pconfig pku popcnt rdpid rdrand rdseed rdtscp serialize sha_ni sse4_1 sse4_2 sse4a
		ssse3 tbm vaes vpclmulqdq waitpkg wbnoinvd xop xsave xsavec xsaveopt xsaves xgetbv1`) {
		isaFeatures[f] = true
	}
	for _, f := range portableFeatures {
		isaFeatures[f] = true
	}
}

// NeededFeatures is what a suspend point of a machine with CPU model
// model, taken on host, needs from the host that resumes it. nil means
// unknown (a model the core does not know, or a host without CPU flags).
func NeededFeatures(model string, host detect.HostProfile) []string {
	switch model {
	case "", CPUPortable:
		return slices.Clone(portableFeatures)
	case CPUHost, CPUMax:
		var out []string
		for _, f := range host.CPU.Flags {
			if isaFeatures[f] {
				out = append(out, f)
			}
		}
		slices.Sort(out)
		return out
	}
	return nil
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
	s := fmt.Sprintf("%s: %s, %d cores, %s", orUnknown(p.Hostname), cpu, p.CPU.Cores, kvm)
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
