package lv_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
func guestSpec(t *testing.T, dir string) vmm.Spec { return testguest.Spec(t, dir) }

func opts(t *testing.T) vmmtest.Options {
	uri := testlibvirt.Require(t)
	return vmmtest.Options{Spec: guestSpec, Progress: testguest.Progress, PowerOffSpec: testguest.PowerOffSpec, Config: []byte(`{"uri": "` + uri + `"}`)}
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

// A domain whose soulpad process is gone (crash, kill) is destroyed when
// the plugin next connects; a domain of a live process is left alone.
func TestDomainsOfDeadPluginsAreReaped(t *testing.T) {
	uri := testlibvirt.Require(t)
	testguest.RequireQEMU(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	create := func(name string, pid int) {
		t.Helper()
		x := fmt.Sprintf(`<domain type='qemu'><name>%s</name><metadata><soulpad:owner xmlns:soulpad='%s' pid='%d' host='%s'/></metadata>
<memory unit='MiB'>32</memory><os><type arch='x86_64'>hvm</type></os><devices><controller type='usb' model='none'/><memballoon model='none'/></devices></domain>`,
			name, lv.OwnerNS, pid, host)
		f := filepath.Join(t.TempDir(), "d.xml")
		os.WriteFile(f, []byte(x), 0o600)
		if out, err := exec.Command("virsh", "-c", uri, "create", f).CombinedOutput(); err != nil {
			t.Fatalf("virsh create: %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("virsh", "-c", uri, "destroy", name).Run() })
	}
	orphan, owned := fmt.Sprintf("soulpad-orphan-%d", time.Now().UnixNano()), fmt.Sprintf("soulpad-owned-%d", time.Now().UnixNano())
	create(orphan, dead.Process.Pid)
	create(owned, os.Getppid()) // the go command running this test: alive
	v := sdktest.InProcess(t, lv.New()).(vmm.VMM)
	ctx := context.Background()
	if _, err := v.Configure(ctx, sdk.ConfigureRequest{Config: []byte(`{"uri": "` + uri + `"}`)}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := v.Start(ctx, vmm.StartRequest{Spec: guestSpec(t, dir), MachineDir: dir}); err != nil {
		t.Fatal(err)
	}
	defer v.PowerOff(ctx, vmm.PowerOffRequest{Force: true})
	out, _ := exec.Command("virsh", "-c", uri, "list", "--name").Output()
	if strings.Contains(string(out), orphan) {
		t.Errorf("the orphaned domain %s still runs:\n%s", orphan, out)
	}
	if !strings.Contains(string(out), owned) {
		t.Errorf("the domain of a live process %s was destroyed:\n%s", owned, out)
	}
}
