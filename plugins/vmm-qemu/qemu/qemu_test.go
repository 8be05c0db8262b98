package qemu_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/internal/testguest"
	"github.com/soulpad/soulpad/plugins/vmm-qemu/qemu"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/sdktest"
	"github.com/soulpad/soulpad/sdk/vmm"
	"github.com/soulpad/soulpad/sdk/vmm/vmmtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// guestSpec is the demo guest, as every VMM plugin's tests run it.
func guestSpec(t *testing.T, dir string) vmm.Spec { return testguest.Spec(t, dir) }

var opts = vmmtest.Options{Spec: guestSpec, Progress: testguest.Progress, PowerOffSpec: testguest.PowerOffSpec}

func TestConformanceInProcess(t *testing.T) {
	testguest.RequireQEMU(t)
	vmmtest.Run(t, sdktest.InProcess(t, qemu.New(sdktest.Logger(t, "vmm-qemu"))).(vmm.VMM), opts)
}

func TestConformanceBinary(t *testing.T) {
	testguest.RequireQEMU(t)
	vmmtest.Run(t, sdktest.Binary(t, testbin.Build(t, "plugins/vmm-qemu")).(vmm.VMM), opts)
}

// treeSums maps each file under dir to its content.
func treeSums(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			b, _ := os.ReadFile(p)
			out[p] = string(b)
		}
		return nil
	})
	return out
}

func same(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestBadInputChangesNothing(t *testing.T) {
	testguest.RequireQEMU(t)
	ctx := context.Background()
	p := sdktest.InProcess(t, qemu.New(sdktest.Logger(t, "vmm-qemu"))).(vmm.VMM)
	if _, err := p.Configure(ctx, sdk.ConfigureRequest{}); err != nil {
		t.Fatal(err)
	}
	mdir := t.TempDir()
	spec := guestSpec(t, mdir)
	start, err := p.Start(ctx, vmm.StartRequest{Spec: spec, MachineDir: mdir})
	if err != nil {
		t.Fatal(err)
	}
	// The console log (what the guest prints: the user's) stays off the
	// host's disk.
	if os.Getuid() == 0 && !strings.HasPrefix(start.Console.Log, "/run/soulpad/") {
		t.Errorf("the console log is at %s; want it under /run/soulpad (tmpfs)", start.Console.Log)
	}
	// Let the guest get going: its console shows the counter.
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(start.Console.Log)
		if strings.Contains(string(b), "soulpad-counter") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guest printed nothing in 60 s:\n%s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sdir := t.TempDir()
	sus, err := p.Suspend(ctx, vmm.SuspendRequest{Name: spec.Name, StateDir: sdir})
	if err != nil {
		t.Fatal(err)
	}
	if sus.Description == start.Description {
		t.Fatal("the suspend description does not record the disk state")
	}
	before := treeSums(t, mdir)
	stateBefore := treeSums(t, sdir)
	check := func(name string, err error, want error, words ...string) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("%s: %v; want %v", name, err, want)
		}
		for _, w := range words {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("%s: %q does not say %q", name, err, w)
			}
		}
		if st, _ := p.Status(ctx, vmm.StatusRequest{}); st.State != vmm.StateStopped {
			t.Fatalf("%s: the machine is %s after a failed resume", name, st.State)
		}
		if !same(before, treeSums(t, mdir)) || !same(stateBefore, treeSums(t, sdir)) {
			t.Fatalf("%s: a failed resume changed the machine or state files", name)
		}
	}

	other := spec
	other.MemoryMiB = 256
	_, err = p.Resume(ctx, vmm.ResumeRequest{Spec: other, MachineDir: mdir, StateDir: sdir, Description: sus.Description})
	check("different memory", err, sdk.ErrIncompatibleHost, "memory 128 MiB, the spec says 256 MiB")

	other = spec
	other.Disks = []vmm.Disk{{Name: "data", Path: "data.qcow2", Format: "qcow2", SizeMiB: 16}}
	_, err = p.Resume(ctx, vmm.ResumeRequest{Spec: other, MachineDir: mdir, StateDir: sdir, Description: sus.Description})
	check("different disks", err, sdk.ErrIncompatibleHost, "disks")

	_, err = p.Resume(ctx, vmm.ResumeRequest{Spec: spec, MachineDir: mdir, StateDir: t.TempDir(), Description: sus.Description})
	check("missing state file", err, sdk.ErrNotFound, "memory.state")

	bad := t.TempDir()
	for name, content := range stateBefore {
		if filepath.Base(name) == qemu.StateFile {
			content = content[:len(content)/3]
		}
		if err := os.WriteFile(filepath.Join(bad, filepath.Base(name)), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	badBefore := treeSums(t, bad)
	_, err = p.Resume(ctx, vmm.ResumeRequest{Spec: spec, MachineDir: mdir, StateDir: bad, Description: sus.Description})
	check("truncated state file", err, sdk.ErrCorrupt, "did not load")
	if !same(badBefore, treeSums(t, bad)) {
		t.Fatal("a failed resume changed the truncated state")
	}

	// A byte of the state changed on the pad (QEMU would load it: it is
	// in guest RAM): checked as it is loaded, the guest never runs.
	if len(sus.Sums) == 0 || !sus.Sums[0].OnLoad || sus.Sums[0].Name != qemu.StateFile {
		t.Fatalf("the suspend's sums %+v; want the state's, checked on load", sus.Sums)
	}
	flipped := t.TempDir()
	for name, content := range stateBefore {
		b := []byte(content)
		if filepath.Base(name) == qemu.StateFile {
			b[len(b)/2] ^= 0x55
		}
		if err := os.WriteFile(filepath.Join(flipped, filepath.Base(name)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err = p.Resume(ctx, vmm.ResumeRequest{Spec: spec, MachineDir: mdir, StateDir: flipped, Description: sus.Description, Sums: sus.Sums})
	check("a changed byte in the state", err, sdk.ErrCorrupt, "does not match its checksum")

	// QEMU missing from PATH.
	if _, err := p.Configure(ctx, sdk.ConfigureRequest{Config: []byte(`{"qemu": "qemu-system-nowhere"}`)}); err != nil {
		t.Fatal(err)
	}
	_, err = p.Resume(ctx, vmm.ResumeRequest{Spec: spec, MachineDir: mdir, StateDir: sdir, Description: sus.Description})
	check("QEMU missing", err, sdk.ErrIncompatibleHost, "qemu-system-nowhere not found", "install qemu-system-x86")

	// And the good state still resumes.
	if _, err := p.Configure(ctx, sdk.ConfigureRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Resume(ctx, vmm.ResumeRequest{Spec: spec, MachineDir: mdir, StateDir: sdir, Description: sus.Description}); err != nil {
		t.Fatalf("resume after the refusals: %v", err)
	}
	if _, err := p.PowerOff(ctx, vmm.PowerOffRequest{Force: true}); err != nil {
		t.Fatal(err)
	}
}
