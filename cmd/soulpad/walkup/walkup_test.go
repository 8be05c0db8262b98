package walkup_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/internal/testcli"
	"github.com/soulpad/soulpad/internal/testlibvirt"
)

// The same walk-up with the libvirt backend: the config names it
// (plugins.vmm, here through SOULPAD_PLUGINS_VMM) and nothing else changes.
func TestWalkUpWithLibvirt(t *testing.T) {
	testlibvirt.Require(t)
	testbin.Build(t, "plugins/vmm-libvirt")
	t.Setenv("SOULPAD_PLUGINS_VMM", "vmm-libvirt")
	walkUp(t, "crypt-gocryptfs")
}

func TestWalkUpWithQEMU(t *testing.T) {
	for _, c := range []string{"crypt-plain", "crypt-gocryptfs", "crypt-luks"} {
		t.Run(c, func(t *testing.T) { walkUp(t, c) })
	}
}

func walkUp(t *testing.T, cryptPlugin string) {
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", cryptPlugin)
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	first, out := e.Session(t, 3)
	if first[0] != 1 {
		t.Fatalf("a cold boot's counter starts at %d; want 1", first[0])
	}
	if !strings.Contains(out, "cold boot") {
		t.Fatalf("first run did not say it cold-booted:\n%s", out)
	}
	n := first[len(first)-1]
	dir, done := e.Plain(t, cryptPlugin)
	identity := testcli.DiskSector(t, dir, 1)
	done()
	if !strings.HasPrefix(identity, "soulpad-disk ") {
		t.Fatalf("the guest did not stamp its disk: %q", identity)
	}

	// Unplug, walk, plug in elsewhere: the pad moves, the old path is gone.
	moved := filepath.Join(t.TempDir(), "usb")
	if b, err := exec.Command("cp", "-a", e.Pad, moved).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, b)
	}
	if err := os.RemoveAll(e.Pad); err != nil {
		t.Fatal(err)
	}
	e.Pad = moved
	t.Setenv("SOULPAD_PAD_PATH", moved)

	second, out := e.Session(t, 3)
	if !strings.Contains(out, "resumed ") {
		t.Fatalf("second run did not resume:\n%s", out)
	}
	if second[0] <= n {
		t.Fatalf("after resume the counter printed %d first; want above %d (it must continue, not restart)", second[0], n)
	}
	n2 := second[len(second)-1]
	dir, done = e.Plain(t, cryptPlugin)
	defer done()
	if got := testcli.DiskSector(t, dir, 1); got != identity {
		t.Fatalf("disk identity changed across suspend/resume: %q → %q", identity, got)
	}
	if c := testcli.DiskSector(t, dir, 0); !strings.HasPrefix(c, "soulpad-counter ") {
		t.Fatalf("sector 0 = %q; want the guest's last counter", c)
	} else if v, _ := strconv.Atoi(strings.Fields(c)[1]); v < n2-2 {
		t.Fatalf("the disk's counter %d lags the console's %d: disk writes were lost", v, n2)
	}

	// A second cycle.
	third, _ := e.Session(t, 2)
	if third[0] <= n2 {
		t.Fatalf("after the second resume the counter printed %d; want above %d", third[0], n2)
	}
	st, _, _ := e.Run(t, "status", "--json")
	if n := strings.Count(st, `"cpu_model": "portable"`); n != 3 {
		t.Fatalf("status lists %d suspend points; want 3:\n%s", n, st)
	}
	// The journal says where each suspend's and resume's time went.
	j, _, _ := e.Run(t, "journal")
	want := []string{"resume phases: prepare ", ", launch ", ", state ", ", cont ", "suspend phases: stop ", ", seal "}
	if os.Getenv("SOULPAD_PLUGINS_VMM") == "vmm-libvirt" {
		want = []string{"resume phases: prepare ", ", restore ", "suspend phases: save ", ", seal "}
	}
	for _, want := range want {
		if !strings.Contains(j, want) {
			t.Errorf("the journal has no %q:\n%s", want, j)
		}
	}
}

func TestGuestPowerOffEndsTheSession(t *testing.T) {
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1 soulpad.poweroff_after=3", "crypt-plain")
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	_, buf, done := e.StartRun(t)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v\n%s", err, buf.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("the session did not end when the guest powered off:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "the guest powered off") {
		t.Fatalf("run output:\n%s", buf.String())
	}
	out, _, _ := e.Run(t, "status")
	if !strings.Contains(out, "none yet") {
		t.Fatalf("a powered-off session left a suspend point:\n%s", out)
	}
}

// A point taken with the portable CPU model on another host (a recorded
// AMD EPYC without KVM) resumes here.
func TestWalkUpToAnotherHostWithThePortableModel(t *testing.T) {
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", "crypt-plain")
	testbin.Build(t, "plugins/detect-linux")
	testbin.Build(t, "internal/testplugins/detect-static")
	e.OnHost(t, testcli.RecordedProfile(t, "amd-nokvm", false))
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	first, _ := e.Session(t, 3)
	e.OnHost(t, "")
	second, out := e.Session(t, 2)
	if !strings.Contains(out, "resumed ") || second[0] <= first[len(first)-1] {
		t.Fatalf("no resume on this host (counter %v after %v):\n%s", second, first, out)
	}
	st, _, _ := e.Run(t, "status")
	here, _ := os.Hostname()
	if !strings.Contains(st, "build-epyc: AMD EPYC 7302") || !strings.Contains(st, here+":") {
		t.Fatalf("status does not show both hosts (build-epyc and %s):\n%s", here, st)
	}
}

// A point taken with CPU model "max" on a host with AMX (a recorded Xeon
// Sapphire Rapids) is refused here before QEMU starts, naming what this
// host lacks, and the pad is left as it was.
func TestPointNeedingMissingFeaturesIsRefused(t *testing.T) {
	if b, _ := os.ReadFile("/proc/cpuinfo"); strings.Contains(string(b), " amx_tile") {
		t.Skip("this host has AMX: the recorded host's features are all here")
	}
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", "crypt-plain")
	testbin.Build(t, "plugins/detect-linux")
	testbin.Build(t, "internal/testplugins/detect-static")
	t.Setenv("SOULPAD_MACHINE_CPU_MODEL", "max")
	t.Setenv("SOULPAD_MACHINE_ACCELERATOR", "tcg")
	e.OnHost(t, testcli.RecordedProfile(t, "intel-kvm", false))
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	_, out := e.Session(t, 2)
	if !strings.Contains(out, `CPU model "max"`) {
		t.Fatalf("a cold boot with cpu_model max gave no warning:\n%s", out)
	}
	before := testcli.TreeHash(t, filepath.Join(e.Pad, "vault"))
	e.OnHost(t, "")
	stdout, stderr, code := e.Run(t, "run")
	if code == 0 {
		t.Fatalf("run resumed a point that needs AMX:\n%s", stdout)
	}
	for _, want := range []string{"needs CPU features this host", "amx_tile", "lab-xeon-07", "--cold-boot", "nothing was changed"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, stderr)
		}
	}
	if after := testcli.TreeHash(t, filepath.Join(e.Pad, "vault")); after != before {
		t.Fatal("the refused resume changed the vault")
	}
}

// libvirtd down (here: a URI whose socket does not exist): one clear
// error naming the URI and what to check, and the pad as it was.
func TestLibvirtDownIsClearAndPadUntouched(t *testing.T) {
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", "crypt-plain")
	testbin.Build(t, "plugins/vmm-libvirt")
	t.Setenv("SOULPAD_PLUGINS_VMM", "vmm-libvirt")
	const bad = "qemu+unix:///system?socket=/nonexistent/libvirt-sock"
	f, err := os.OpenFile(e.Cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "plugin \"vmm-libvirt\" {\n  uri = %q\n}\n", bad)
	f.Close()
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	before := testcli.TreeHash(t, filepath.Join(e.Pad, "vault"))
	_, stderr, code := e.Run(t, "run")
	if code == 0 || !strings.Contains(stderr, bad) || !strings.Contains(stderr, "libvirtd running") {
		t.Fatalf("run with libvirtd unreachable: exit %d\n%s", code, stderr)
	}
	if after := testcli.TreeHash(t, filepath.Join(e.Pad, "vault")); after != before {
		t.Fatal("the failed run changed the vault")
	}
}

// A byte of the sealed state changed on the pad: vmm-qemu checks the state
// as QEMU loads it, and the guest never runs; the point is refused with
// what to do, and kept.
func TestDamagedStateIsRefusedBeforeTheGuestRuns(t *testing.T) {
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", "crypt-plain")
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	e.Session(t, 2)
	pts := e.Points(t)
	latest := pts[len(pts)-1].ID
	state := filepath.Join(e.Pad, "vault", "machines", "soul", "points", latest, "memory.state")
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x55
	if err := os.WriteFile(state, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := e.Run(t, "run")
	if code == 0 {
		t.Fatalf("run resumed a damaged point:\n%s", out)
	}
	for _, want := range []string{"memory.state does not match its checksum", "soulpad run --point ID"} {
		if !strings.Contains(out+errOut, want) {
			t.Errorf("the refusal does not say %q:\n%s%s", want, out, errOut)
		}
	}
	if strings.Contains(out, "the machine is running") {
		t.Errorf("the guest ran on a damaged state:\n%s", out)
	}
	if after := e.Points(t); len(after) != len(pts) {
		t.Errorf("points before %d, after %d: the damaged point must be kept", len(pts), len(after))
	}
}
