package main_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/internal/testguest"
	"github.com/soulpad/soulpad/internal/testlibvirt"
	"github.com/soulpad/soulpad/internal/testluks"
	"github.com/soulpad/soulpad/plugins/detect-linux/linux"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/detect"
)

var counterRE = regexp.MustCompile(`soulpad-counter (\d+)`)

// counters returns the counter values the console printed so far.
func (e env) counters(t *testing.T) []int {
	t.Helper()
	out, _, code := e.run(t, "console", "--dump")
	if code != 0 {
		return nil
	}
	var vs []int
	for _, m := range counterRE.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[1])
		vs = append(vs, n)
	}
	return vs
}

// waitCounter waits until the console shows at least n ticks.
func (e env) waitCounter(t *testing.T, n int) []int {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if vs := e.counters(t); len(vs) >= n {
			return vs
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the guest printed fewer than %d counter ticks in 90 s", n)
	return nil
}

// cryptBlocks configures each crypt plugin for the walk-up tests.
var cryptBlocks = map[string]string{
	"crypt-plain":     `plugin "crypt-plain" { allow_no_encryption = true }`,
	"crypt-gocryptfs": `plugin "crypt-gocryptfs" { scrypt_logn = 12 }`,
	"crypt-luks": `plugin "crypt-luks" {
  argon2_memory_kib = 8192
  argon2_iterations = 4
}`,
}

// qemuEnv is a pad that runs the demo guest with vmm-qemu and the given
// crypt plugin (its passphrase in a file beside the config).
func qemuEnv(t *testing.T, cmdline, cryptPlugin string) env {
	t.Helper()
	kernel, initrd := testguest.Build(t)
	bin := testbin.Build(t, "cmd/soulpad")
	testbin.Build(t, "plugins/"+cryptPlugin)
	testbin.Build(t, "plugins/vmm-qemu")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "site.hcl")
	if err := os.WriteFile(filepath.Join(dir, "passphrase"), []byte("a long walk-up test passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hcl := fmt.Sprintf(`
pad {
  path           = "pad"
  vault_size_mib = 512
}
unlock { passphrase_file = "passphrase" }
machine {
  memory_mib    = 128
  disk_size_mib = 16
  kernel        = %q
  initrd        = %q
  cmdline       = %q
}
plugins {
  dirs  = [%q]
  crypt = %q
  vmm   = "vmm-qemu"
}
%s
`, kernel, initrd, cmdline, testbin.Dir(), cryptPlugin, cryptBlocks[cryptPlugin])
	if err := os.WriteFile(cfg, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	return env{bin: bin, cfg: cfg, pad: filepath.Join(dir, "pad")}
}

// diskSector reads a 512-byte sector of the machine's current disk.
// For an encrypted vault, plainDir is where the test mounted it.
func diskSector(t *testing.T, plainDir string, sector int) string {
	t.Helper()
	dir := filepath.Join(plainDir, "machines", "soul", "disks", "root")
	cur, err := os.ReadFile(filepath.Join(dir, "current"))
	if err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(t.TempDir(), "sector.raw")
	cmd := exec.Command("qemu-img", "dd", "-f", "qcow2", "-O", "raw", "bs=512", fmt.Sprintf("count=%d", sector+1), fmt.Sprintf("skip=%d", sector),
		"if="+strings.TrimSpace(string(cur)), "of="+raw)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("qemu-img dd: %v %s", err, b)
	}
	out, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) > 512 {
		out = out[len(out)-512:]
	}
	return strings.TrimRight(string(out), "\x00")
}

// session runs one `soulpad run` that is suspended once the console shows
// at least minTicks ticks; it returns the ticks seen.
func (e env) session(t *testing.T, minTicks int) ([]int, string) {
	t.Helper()
	_, buf, done := e.startRun(t)
	vs := e.waitCounter(t, minTicks)
	out, errOut, code := e.run(t, "suspend")
	if code != 0 {
		t.Fatalf("suspend: exit %d %s %s", code, out, errOut)
	}
	wait(t, done, buf)
	if !strings.Contains(buf.String(), "suspended to point") {
		t.Fatalf("run did not end suspended:\n%s", buf.String())
	}
	return vs, buf.String()
}

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

// plain gives the vault's plaintext directory while the pad is locked:
// the vault itself for crypt-plain, a read-only look otherwise.
func (e env) plain(t *testing.T, cryptPlugin string) (string, func()) {
	t.Helper()
	vault := filepath.Join(e.pad, "vault")
	switch cryptPlugin {
	case "crypt-plain":
		return vault, func() {}
	case "crypt-gocryptfs":
		mnt := t.TempDir()
		cmd := exec.Command("gocryptfs", "-q", "-ro", vault, mnt)
		cmd.Stdin = strings.NewReader("a long walk-up test passphrase\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("gocryptfs: %v %s", err, out)
		}
		return mnt, func() { exec.Command("fusermount3", "-u", mnt).Run() }
	case "crypt-luks":
		// cryptsetup alone decrypts a copy (no device-mapper needed).
		return testluks.Decrypt(t, vault, []byte("a long walk-up test passphrase")), func() {}
	}
	t.Fatalf("no way to look into %s", cryptPlugin)
	return "", nil
}

func walkUp(t *testing.T, cryptPlugin string) {
	e := qemuEnv(t, "console=ttyS0 quiet panic=-1", cryptPlugin)
	if out, errOut, code := e.run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	first, out := e.session(t, 3)
	if first[0] != 1 {
		t.Fatalf("a cold boot's counter starts at %d; want 1", first[0])
	}
	if !strings.Contains(out, "cold boot") {
		t.Fatalf("first run did not say it cold-booted:\n%s", out)
	}
	n := first[len(first)-1]
	dir, done := e.plain(t, cryptPlugin)
	identity := diskSector(t, dir, 1)
	done()
	if !strings.HasPrefix(identity, "soulpad-disk ") {
		t.Fatalf("the guest did not stamp its disk: %q", identity)
	}

	// Unplug, walk, plug in elsewhere: the pad moves, the old path is gone.
	moved := filepath.Join(t.TempDir(), "usb")
	if b, err := exec.Command("cp", "-a", e.pad, moved).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, b)
	}
	if err := os.RemoveAll(e.pad); err != nil {
		t.Fatal(err)
	}
	e.pad = moved
	t.Setenv("SOULPAD_PAD_PATH", moved)

	second, out := e.session(t, 3)
	if !strings.Contains(out, "resumed ") {
		t.Fatalf("second run did not resume:\n%s", out)
	}
	if second[0] <= n {
		t.Fatalf("after resume the counter printed %d first; want above %d (it must continue, not restart)", second[0], n)
	}
	n2 := second[len(second)-1]
	dir, done = e.plain(t, cryptPlugin)
	defer done()
	if got := diskSector(t, dir, 1); got != identity {
		t.Fatalf("disk identity changed across suspend/resume: %q → %q", identity, got)
	}
	if c := diskSector(t, dir, 0); !strings.HasPrefix(c, "soulpad-counter ") {
		t.Fatalf("sector 0 = %q; want the guest's last counter", c)
	} else if v, _ := strconv.Atoi(strings.Fields(c)[1]); v < n2-2 {
		t.Fatalf("the disk's counter %d lags the console's %d: disk writes were lost", v, n2)
	}

	// A second cycle.
	third, _ := e.session(t, 2)
	if third[0] <= n2 {
		t.Fatalf("after the second resume the counter printed %d; want above %d", third[0], n2)
	}
	st, _, _ := e.run(t, "status", "--json")
	if n := strings.Count(st, `"cpu_model": "portable"`); n != 3 {
		t.Fatalf("status lists %d suspend points; want 3:\n%s", n, st)
	}
}

func TestGuestPowerOffEndsTheSession(t *testing.T) {
	e := qemuEnv(t, "console=ttyS0 quiet panic=-1 soulpad.poweroff_after=3", "crypt-plain")
	if out, errOut, code := e.run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	_, buf, done := e.startRun(t)
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
	out, _, _ := e.run(t, "status")
	if !strings.Contains(out, "none yet") {
		t.Fatalf("a powered-off session left a suspend point:\n%s", out)
	}
}

// recordedProfile writes the profile detect-linux reads from one of its
// recorded host trees (plugins/detect-linux/linux/testdata) as JSON, for
// detect-static to report; kvm overrides the recorded KVM.
func recordedProfile(t *testing.T, host string, kvm bool) string {
	t.Helper()
	d := linux.New()
	root := filepath.Join(testbin.Root(t), "plugins", "detect-linux", "linux", "testdata", host)
	cfg, _ := json.Marshal(map[string]string{"root": root})
	if _, err := d.Configure(context.Background(), sdk.ConfigureRequest{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	out, err := d.Probe(context.Background(), detect.ProbeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out.Profile.KVM = kvm
	b, _ := json.Marshal(out.Profile)
	path := filepath.Join(t.TempDir(), host+".json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// onHost makes the next sessions see a recorded host (detect-static with
// its profile) or, with profile "", this host (detect-linux).
func (e env) onHost(t *testing.T, profile string) {
	t.Helper()
	if profile == "" {
		t.Setenv("SOULPAD_PLUGINS_DETECT", "detect-linux")
		return
	}
	t.Setenv("SOULPAD_PLUGINS_DETECT", "detect-static")
	f, err := os.OpenFile(e.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "plugin \"detect-static\" {\n  profile_file = %q\n}\n", profile)
}

// A point taken with the portable CPU model on another host (a recorded
// AMD EPYC without KVM) resumes here.
func TestWalkUpToAnotherHostWithThePortableModel(t *testing.T) {
	e := qemuEnv(t, "console=ttyS0 quiet panic=-1", "crypt-plain")
	testbin.Build(t, "plugins/detect-linux")
	testbin.Build(t, "internal/testplugins/detect-static")
	e.onHost(t, recordedProfile(t, "amd-nokvm", false))
	if out, errOut, code := e.run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	first, _ := e.session(t, 3)
	e.onHost(t, "")
	second, out := e.session(t, 2)
	if !strings.Contains(out, "resumed ") || second[0] <= first[len(first)-1] {
		t.Fatalf("no resume on this host (counter %v after %v):\n%s", second, first, out)
	}
	st, _, _ := e.run(t, "status")
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
	e := qemuEnv(t, "console=ttyS0 quiet panic=-1", "crypt-plain")
	testbin.Build(t, "plugins/detect-linux")
	testbin.Build(t, "internal/testplugins/detect-static")
	t.Setenv("SOULPAD_MACHINE_CPU_MODEL", "max")
	t.Setenv("SOULPAD_MACHINE_ACCELERATOR", "tcg")
	e.onHost(t, recordedProfile(t, "intel-kvm", false))
	if out, errOut, code := e.run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	_, out := e.session(t, 2)
	if !strings.Contains(out, `CPU model "max"`) {
		t.Fatalf("a cold boot with cpu_model max gave no warning:\n%s", out)
	}
	before := treeHash(t, filepath.Join(e.pad, "vault"))
	e.onHost(t, "")
	stdout, stderr, code := e.run(t, "run")
	if code == 0 {
		t.Fatalf("run resumed a point that needs AMX:\n%s", stdout)
	}
	for _, want := range []string{"needs CPU features this host", "amx_tile", "lab-xeon-07", "--cold-boot", "nothing was changed"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, stderr)
		}
	}
	if after := treeHash(t, filepath.Join(e.pad, "vault")); after != before {
		t.Fatal("the refused resume changed the vault")
	}
}

// treeHash hashes every path and file under root.
func treeHash(t *testing.T, root string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintln(h, p)
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// libvirtd down (here: a URI whose socket does not exist): one clear
// error naming the URI and what to check, and the pad as it was.
func TestLibvirtDownIsClearAndPadUntouched(t *testing.T) {
	e := qemuEnv(t, "console=ttyS0 quiet panic=-1", "crypt-plain")
	testbin.Build(t, "plugins/vmm-libvirt")
	t.Setenv("SOULPAD_PLUGINS_VMM", "vmm-libvirt")
	const bad = "qemu+unix:///system?socket=/nonexistent/libvirt-sock"
	f, err := os.OpenFile(e.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "plugin \"vmm-libvirt\" {\n  uri = %q\n}\n", bad)
	f.Close()
	if out, errOut, code := e.run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	before := treeHash(t, filepath.Join(e.pad, "vault"))
	_, stderr, code := e.run(t, "run")
	if code == 0 || !strings.Contains(stderr, bad) || !strings.Contains(stderr, "libvirtd running") {
		t.Fatalf("run with libvirtd unreachable: exit %d\n%s", code, stderr)
	}
	if after := treeHash(t, filepath.Join(e.pad, "vault")); after != before {
		t.Fatal("the failed run changed the vault")
	}
}
