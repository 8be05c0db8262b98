package x86cpu

import (
	"slices"
	"testing"
)

func TestNeeded(t *testing.T) {
	p := Needed(Portable, nil)
	if !slices.Contains(p, "sse2") || !slices.Contains(p, "pni") || slices.Contains(p, "avx") {
		t.Fatalf("portable needs %v", p)
	}
	if !slices.Equal(Needed("", nil), p) {
		t.Fatal("an empty model is the portable one")
	}
	host := Needed(Max, []string{"fpu", "avx2", "vmx", "avx2", "hypervisor", "amx_tile"})
	if !slices.Equal(host, []string{"amx_tile", "avx2", "fpu"}) {
		t.Fatalf("max on that host needs %v; want its instruction-set flags only", host)
	}
	if Needed("Skylake-Server", []string{"avx2"}) != nil {
		t.Fatal("a model not known here has unknown needs")
	}
	if flags := HostFlags(); len(flags) > 0 && !slices.Contains(flags, "sse2") {
		t.Fatalf("this x86-64 host's flags lack sse2: %v", flags)
	}
}
