package lv_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/internal/testguest"
	"github.com/soulpad/soulpad/internal/testlibvirt"
	"github.com/soulpad/soulpad/plugins/vmm-libvirt/lv"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/sdktest"
	"github.com/soulpad/soulpad/sdk/vmm"
	"github.com/soulpad/soulpad/sdk/vmm/vmmtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	testlibvirt.Stop()
	os.Exit(code)
}

// guestSpec is the demo guest, as every VMM plugin's tests run it.
var guestSpec = testguest.Spec

func opts(t *testing.T) vmmtest.Options {
	uri := testlibvirt.Require(t)
	return vmmtest.Options{Spec: guestSpec, Settle: 2 * time.Second, Config: []byte(`{"uri": "` + uri + `"}`)}
}

func TestConformanceInProcess(t *testing.T) {
	o := opts(t)
	vmmtest.Run(t, sdktest.InProcess(t, lv.New()).(vmm.VMM), o)
}

func TestConformanceBinary(t *testing.T) {
	o := opts(t)
	vmmtest.Run(t, sdktest.Binary(t, testbin.Build(t, "plugins/vmm-libvirt")).(vmm.VMM), o)
}

// A wrong URI is one clear error naming it, and nothing is left behind.
func TestWrongURIIsClearAndChangesNothing(t *testing.T) {
	testguest.RequireQEMU(t)
	v := sdktest.InProcess(t, lv.New()).(vmm.VMM)
	ctx := context.Background()
	const bad = "qemu+unix:///system?socket=/nonexistent/libvirt-sock"
	if _, err := v.Configure(ctx, sdk.ConfigureRequest{Config: []byte(`{"uri": "` + bad + `"}`)}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	spec := guestSpec(t, dir)
	before, _ := os.ReadDir(dir)
	_, err := v.Start(ctx, vmm.StartRequest{Spec: spec, MachineDir: dir})
	if !errors.Is(err, sdk.ErrIncompatibleHost) || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "libvirtd running") {
		t.Fatalf("Start with a wrong URI: %v; want sdk.ErrIncompatibleHost naming the URI and what to check", err)
	}
	after, _ := os.ReadDir(dir)
	if len(after) != len(before) {
		t.Fatalf("a failed start left files: %v → %v", before, after)
	}
}
