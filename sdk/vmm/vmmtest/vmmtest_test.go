package vmmtest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/sdktest"
	"github.com/soulpad/soulpad/sdk/vmm"
	"github.com/soulpad/soulpad/sdk/vmm/vmmtest"
)

// tickVMM is a minimal VMM for testing the suite itself: its guest is a
// counter that ticks every millisecond. With coldBootOnResume it is
// deliberately broken: Resume starts the counter from zero, as a plugin
// that boots instead of restoring would.
type tickVMM struct {
	coldBootOnResume bool

	mu      sync.Mutex
	running bool
	started time.Time
	base    uint64
}

func (v *tickVMM) Info(context.Context, sdk.InfoRequest) (sdk.InfoResponse, error) {
	return sdk.InfoResponse{Name: "vmm-tick", Kind: sdk.KindVMM, Version: "0", APIVersions: []int{vmm.APIVersion}}, nil
}
func (v *tickVMM) Configure(context.Context, sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	return sdk.ConfigureResponse{}, nil
}
func (v *tickVMM) count() uint64 { return v.base + uint64(time.Since(v.started)/time.Millisecond) }
func (v *tickVMM) Start(context.Context, vmm.StartRequest) (vmm.StartResponse, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.running {
		return vmm.StartResponse{}, sdk.ErrBusy
	}
	v.running, v.started, v.base = true, time.Now(), 0
	return vmm.StartResponse{Description: "tick"}, nil
}
func (v *tickVMM) Suspend(_ context.Context, r vmm.SuspendRequest) (vmm.SuspendResponse, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.running {
		return vmm.SuspendResponse{}, sdk.ErrNotRunning
	}
	b, _ := json.Marshal(map[string]uint64{"counter": v.count(), "pad": 1 << 40})
	if err := os.WriteFile(filepath.Join(r.StateDir, "mem"), b, 0o600); err != nil {
		return vmm.SuspendResponse{}, err
	}
	v.running = false
	return vmm.SuspendResponse{Files: []string{"mem"}, Description: "tick"}, nil
}
func (v *tickVMM) Resume(_ context.Context, r vmm.ResumeRequest) (vmm.ResumeResponse, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	b, err := os.ReadFile(filepath.Join(r.StateDir, "mem"))
	if err != nil {
		return vmm.ResumeResponse{}, fmt.Errorf("%v: %w", err, sdk.ErrNotFound)
	}
	var m map[string]uint64
	if err := json.Unmarshal(b, &m); err != nil {
		return vmm.ResumeResponse{}, fmt.Errorf("%v: %w", err, sdk.ErrCorrupt)
	}
	v.running, v.started, v.base = true, time.Now(), m["counter"]
	if v.coldBootOnResume {
		v.base = 0
	}
	return vmm.ResumeResponse{}, nil
}
func (v *tickVMM) PowerOff(context.Context, vmm.PowerOffRequest) (vmm.PowerOffResponse, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.running = false
	return vmm.PowerOffResponse{}, nil
}
func (v *tickVMM) Status(context.Context, vmm.StatusRequest) (vmm.StatusResponse, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.running {
		return vmm.StatusResponse{State: vmm.StateStopped}, nil
	}
	return vmm.StatusResponse{State: vmm.StateRunning, Detail: strconv.FormatUint(v.count(), 10)}, nil
}

var opts = vmmtest.Options{
	Spec: func(*testing.T, string) vmm.Spec { return vmm.Spec{Name: "t", MemoryMiB: 1, VCPUs: 1} },
	Progress: func(ctx context.Context, v vmm.VMM, m vmmtest.Machine) (uint64, bool) {
		st, err := v.Status(ctx, vmm.StatusRequest{Name: m.Spec.Name})
		n, perr := strconv.ParseUint(st.Detail, 10, 64)
		return n, err == nil && perr == nil
	},
	Timeout: 20 * time.Second,
}

// TestSuiteRunsTheBrokenPlugin is run in a child process by
// TestSuiteFailsABrokenPlugin; alone it is skipped.
func TestSuiteRunsTheBrokenPlugin(t *testing.T) {
	if os.Getenv("VMMTEST_BROKEN") == "" {
		t.Skip("run by TestSuiteFailsABrokenPlugin")
	}
	vmmtest.Run(t, sdktest.InProcess(t, &tickVMM{coldBootOnResume: true}).(vmm.VMM), opts)
}

// The suite passes a VMM that restores, and fails the same VMM when its
// Resume boots afresh instead: the suite is a gate, not a formality.
func TestSuiteFailsABrokenPlugin(t *testing.T) {
	vmmtest.Run(t, sdktest.InProcess(t, &tickVMM{}).(vmm.VMM), opts)

	cmd := exec.Command(os.Args[0], "-test.run", "^TestSuiteRunsTheBrokenPlugin$", "-test.v")
	cmd.Env = append(os.Environ(), "VMMTEST_BROKEN=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the suite passed a plugin that cold-boots on Resume:\n%s", out)
	}
	if !strings.Contains(string(out), "did not continue") || !strings.Contains(string(out), "--- FAIL: TestSuiteRunsTheBrokenPlugin/ResumeContinuesTheGuest") {
		t.Fatalf("the suite failed the broken plugin, but not for the right reason:\n%s", out)
	}
}
