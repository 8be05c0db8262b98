package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/soulpad/soulpad/sdk/sdktest"
	"github.com/soulpad/soulpad/sdk/vmm"
	"github.com/soulpad/soulpad/sdk/vmm/vmmtest"
)

var opts = vmmtest.Options{
	Config: []byte(`{"tick_ms": 2}`),
	Spec: func(t *testing.T, dir string) vmm.Spec {
		return vmm.Spec{Name: "example", MemoryMiB: 64, VCPUs: 1, CPUModel: "portable", Accelerator: "tcg"}
	},
	PowerOffSpec: func(t *testing.T, dir string) vmm.Spec {
		return vmm.Spec{Name: "example", MemoryMiB: 64, VCPUs: 1, CPUModel: "portable", Accelerator: "tcg",
			Extra: map[string]string{"power_off_after_ms": "100"}}
	},
	// The guest's progress is its tick count, from Status ("ticks=N").
	Progress: func(ctx context.Context, v vmm.VMM, m vmmtest.Machine) (uint64, bool) {
		st, err := v.Status(ctx, vmm.StatusRequest{Name: m.Spec.Name})
		if err != nil || !strings.HasPrefix(st.Detail, "ticks=") {
			return 0, false
		}
		n, err := strconv.ParseUint(strings.TrimPrefix(st.Detail, "ticks="), 10, 64)
		return n, err == nil
	},
}

// The conformance suite, in-process over go-plugin's in-memory gRPC…
func TestConformanceInProcess(t *testing.T) {
	vmmtest.Run(t, sdktest.InProcess(t, New()).(vmm.VMM), opts)
}

// …and against the built binary, as the core will run it.
func TestConformanceBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "vmm-example")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	vmmtest.Run(t, sdktest.Binary(t, bin).(vmm.VMM), opts)
}
