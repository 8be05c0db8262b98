package lifecycle

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/detect"
)

func TestNeededAndMissingFeatures(t *testing.T) {
	spr := detect.HostProfile{CPU: detect.CPU{Flags: strings.Fields("fpu sse sse2 avx512f amx_tile constant_tsc vmx arch_perfmon pni lm")}}
	// As a hypervisor shows it: no mtrr, mca or mce.
	atom := detect.HostProfile{CPU: detect.CPU{Flags: strings.Fields("apic clflush cmov cx16 cx8 de fpu fxsr lahf_lm lm mmx msr nx pae pat pge pni pse pse36 sep sse sse2 syscall tsc sse4_2")}}

	need := NeededFeatures(CPUMax, spr)
	if !slices.Contains(need, "amx_tile") || !slices.Contains(need, "avx512f") {
		t.Errorf("max on a Sapphire Rapids host needs %v; want amx_tile and avx512f among them", need)
	}
	for _, hostOnly := range []string{"constant_tsc", "vmx", "arch_perfmon"} {
		if slices.Contains(need, hostOnly) {
			t.Errorf("%s describes the host, not the guest's instruction set; needed = %v", hostOnly, need)
		}
	}
	if got := MissingFeatures(need, atom); !slices.Equal(got, []string{"amx_tile", "avx512f"}) {
		t.Errorf("missing on the Atom = %v; want [amx_tile avx512f]", got)
	}
	if got := MissingFeatures(NeededFeatures(CPUPortable, spr), atom); got != nil {
		t.Errorf("the portable model misses %v on a small x86-64 host; want nothing", got)
	}
	if got := MissingFeatures(need, detect.HostProfile{}); got != nil {
		t.Errorf("a host without known flags: missing %v; want nil (nothing to check)", got)
	}
	if NeededFeatures("Skylake-Server", spr) != nil {
		t.Error("a model the core does not know should need nothing it can check")
	}
}

func TestFitMemory(t *testing.T) {
	host := detect.HostProfile{MemTotalBytes: 2 << 30, MemAvailableBytes: 1 << 30}
	if m, warn, err := fitMemory(512, host, true); m != 512 || warn != "" || err != nil {
		t.Errorf("512 MiB on a host with 1 GiB free: %d %q %v", m, warn, err)
	}
	if _, _, err := fitMemory(1024, host, true); !errors.Is(err, sdk.ErrIncompatibleHost) || !strings.Contains(err.Error(), "768 MiB") {
		t.Errorf("resume of 1 GiB with 1 GiB free: %v; want ErrIncompatibleHost naming 768 MiB", err)
	}
	if m, warn, err := fitMemory(1024, host, false); m != 768 || !strings.Contains(warn, "768") || err != nil {
		t.Errorf("cold boot of 1 GiB with 1 GiB free: %d %q %v; want 768 and a warning", m, warn, err)
	}
	if _, _, err := fitMemory(1024, detect.HostProfile{MemAvailableBytes: 200 << 20}, false); !errors.Is(err, sdk.ErrIncompatibleHost) {
		t.Errorf("a host with 200 MiB free: %v; want ErrIncompatibleHost", err)
	}
	if m, _, err := fitMemory(4096, detect.HostProfile{}, true); m != 4096 || err != nil {
		t.Errorf("unknown host memory: %d %v; want no check", m, err)
	}
}
