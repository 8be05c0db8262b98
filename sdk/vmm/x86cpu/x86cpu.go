// Package x86cpu knows which host CPU features the guest CPU models of
// x86 VMMs need, for VMM plugins to report them (vmm.StartResponse and
// vmm.ResumeResponse CPUFeatures): a suspend point resumes only on a host
// that has them all.
//
// Models (the machine's cpu_model):
//
//   - "portable" (or empty): a baseline x86-64 model (QEMU's qemu64) that
//     every x86-64 host offers, without the hypervisor's own features
//     (KVM's paravirtual clock, x2APIC), so a point resumes anywhere,
//     under KVM or TCG;
//   - "host" or "max": every feature of this CPU, fastest, but a point
//     then resumes only on hosts that have the same features;
//   - any other name is the VMM's own; its needs are not known here.
package x86cpu

import (
	"bufio"
	"os"
	"slices"
	"strings"
)

// Model names.
const (
	Portable = "portable"
	Host     = "host"
	Max      = "max"
)

// portable are the instruction-set features of the portable model
// (QEMU's qemu64) that guest code uses and the host must have, by their
// /proc/cpuinfo names. Its system features (APIC, MTRR, PAT, machine
// check, …) are emulated by the VMM whatever the host has, and hypervisors
// often hide them from /proc/cpuinfo, so they are not required.
var portable = []string{
	"clflush", "cmov", "cx16", "cx8", "fpu", "fxsr", "lahf_lm", "lm", "mmx", "nx", "pni", "sse", "sse2", "syscall",
}

// isa are the /proc/cpuinfo flags that name instructions or state a
// guest's programs may start using once they see them, and so must stay
// on a host that resumes the guest. Flags that describe the host (cache,
// power, mitigations, virtualisation extensions) are left out.
var isa = map[string]bool{}

func init() {
	for _, f := range strings.Fields(`3dnowprefetch abm adx aes amx_bf16 amx_fp16 amx_int8 amx_tile avx avx2
		avx512_4fmaps avx512_4vnniw avx512_bf16 avx512_bitalg avx512_fp16 avx512_vbmi2 avx512_vnni
		avx512_vp2intersect avx512_vpopcntdq avx512bw avx512cd avx512dq avx512er avx512f avx512ifma avx512pf
		avx512vbmi avx512vl avx_vnni avx_vnni_int8 avx_ifma avx_ne_convert bmi1 bmi2 cldemote clflushopt clwb
		clzero cmpccxadd f16c fma fma4 fsgsbase fsrm fxsr_opt gfni lzcnt misalignsse mmxext movbe movdir64b
		movdiri pclmulqdq pconfig pku popcnt rdpid rdrand rdseed rdtscp serialize sha_ni sse4_1 sse4_2 sse4a
		ssse3 tbm vaes vpclmulqdq waitpkg wbnoinvd xop xsave xsavec xsaveopt xsaves xgetbv1`) {
		isa[f] = true
	}
	for _, f := range portable {
		isa[f] = true
	}
}

// Needed is what a point of a machine with CPU model model, running on a
// host with hostFlags (/proc/cpuinfo names), needs from the host that
// resumes it, sorted. nil means unknown (a model not known here, or no
// host flags for "host" and "max").
func Needed(model string, hostFlags []string) []string {
	switch model {
	case "", Portable:
		out := slices.Clone(portable)
		slices.Sort(out)
		return out
	case Host, Max:
		var out []string
		for _, f := range hostFlags {
			if isa[f] {
				out = append(out, f)
			}
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return nil
}

// HostFlags reads this host's CPU flags from /proc/cpuinfo (the first
// CPU's); nil if it cannot.
func HostFlags() []string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "flags" {
			return strings.Fields(v)
		}
	}
	return nil
}
