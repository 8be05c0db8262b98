package walkup_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/internal/testcli"
	"github.com/soulpad/soulpad/internal/testlibvirt"
	"github.com/soulpad/soulpad/internal/testos"
)

// waitConsoleFor polls the running machine's console until it matches
// re, and returns the console and the last match's groups.
func waitConsoleFor(t *testing.T, e testcli.Env, done chan error, buf *testcli.SyncBuffer, re *regexp.Regexp, d time.Duration) (string, []string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		out, _, _ := e.Run(t, "console", "--dump")
		if m := re.FindAllStringSubmatch(out, -1); len(m) > 0 {
			return out, m[len(m)-1]
		}
		select {
		case err := <-done:
			t.Fatalf("soulpad run ended (%v) before the console showed %s:\n%s\nconsole:\n%s", err, re, buf.String(), tail(out, 40))
		default:
		}
		if time.Now().After(deadline) {
			_, errOut, code := e.Run(t, "console", "--dump")
			t.Fatalf("the console did not show %s in %s (console --dump: exit %d %s):\n%s\nsoulpad run:\n%s", re, d, code, errOut, tail(out, 40), buf.String())
		}
		time.Sleep(time.Second)
	}
}

// waitTickAbove waits until the resumed machine's console (its log
// begins at the resume) shows the counter past n; its first tick must
// already be past the last one before the suspend (before): a counter
// that starts again is a cold boot, not a resume.
func waitTickAbove(t *testing.T, e testcli.Env, done chan error, buf *testcli.SyncBuffer, before, n int) string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, _, _ := e.Run(t, "console", "--dump")
		if m := tickRE.FindAllStringSubmatch(out, -1); len(m) > 0 {
			if first, _ := strconv.Atoi(m[0][1]); first <= before || strings.Contains(out, "last tick on disk") {
				t.Fatalf("after the resume the counter began at %d (before the suspend: %d): the system booted again:\n%s", first, before, tail(out, 30))
			}
			if v, _ := strconv.Atoi(m[len(m)-1][1]); v > n {
				return out
			}
		}
		select {
		case err := <-done:
			t.Fatalf("soulpad run ended (%v):\n%s", err, buf.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the counter did not pass %d after the resume (a cold boot?):\n%s", n, tail(out, 30))
		}
		time.Sleep(time.Second)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var (
	tickRE     = regexp.MustCompile(`soulpad-counter (\d+) clock (\d+)`)
	loginRE    = regexp.MustCompile(`soulpad-test login:`)
	lastDiskRE = regexp.MustCompile(`last tick on disk: (\d+|none)`)
)

// requireRealOS skips the real-OS tests unless SOULPAD_REALOS_TEST=1:
// `make test` runs them in a step of their own after the rest (their
// guests boot a whole Debian under TCG, and do not share the CPU with the
// other packages' guests), and so does `make realos-test`.
func requireRealOS(t *testing.T) {
	t.Helper()
	if testing.Short() || !realOSAsked {
		t.Skip("boots a real OS: SOULPAD_REALOS_TEST=1 (make realos-test; make test runs it)")
	}
}

// realOSAsked is SOULPAD_REALOS_TEST, read once and taken out of the
// environment: soulpad refuses SOULPAD_* variables that name no config
// key, and the tests' soulpad runs inherit this process's environment.
var realOSAsked = func() bool {
	v := os.Getenv("SOULPAD_REALOS_TEST") != ""
	os.Unsetenv("SOULPAD_REALOS_TEST")
	return v
}()

// realOSPad imports the test Debian system as format (via qemu-img, as a
// user's VM would come) onto a new pad with the given firmware.
func realOSPad(t *testing.T, format, firmware string, machine ...string) testcli.Env {
	t.Helper()
	raw := testos.Debian(t)
	img := filepath.Join(t.TempDir(), "debian."+format)
	args := []string{"convert", "-f", "raw", "-O", format}
	if format == "vmdk" {
		args = append(args, "-o", "subformat=streamOptimized")
	}
	if b, err := exec.Command("qemu-img", append(args, raw, img)...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v %s", err, b)
	}
	e := testcli.QEMUEnv(t, "", "crypt-plain")
	withoutKernel(t, e)
	withMachine(t, e, append([]string{"memory_mib", "512", "firmware", strconv.Quote(firmware)}, machine...)...)
	if out, errOut, code := e.Run(t, "init", "--disk", img); code != 0 {
		t.Fatalf("init --disk %s: exit %d\n%s%s", filepath.Base(img), code, out, errOut)
	}
	os.Remove(img)
	return e
}

// TestRealOSWalksWithBIOS takes a real Debian system, imported from a
// VMware disk, through the walk with BIOS firmware: it boots to its login
// prompt; suspended, moved to another path and resumed in a new process,
// its counter goes on and, after the pad slept, its clock is this PC's;
// a cold boot finds on its disk what it wrote before the suspend.
func TestRealOSWalksWithBIOS(t *testing.T) {
	requireRealOS(t)
	t.Run("vmm-qemu", realOSWalk)
	t.Run("vmm-libvirt", func(t *testing.T) {
		testlibvirt.Require(t)
		testbin.Build(t, "plugins/vmm-libvirt")
		t.Setenv("SOULPAD_PLUGINS_VMM", "vmm-libvirt")
		realOSResume(t)
	})
}

// realOSResume is the short walk (vmm-libvirt's in make test): boot to
// the login prompt, suspend, resume with the clock set, the counter on.
func realOSResume(t *testing.T) {
	bootSuspendResume(t, realOSPad(t, "vmdk", "bios"), "clock is set", nil)
}

// bootSuspendResume boots e's machine to its login prompt (and runs
// atLogin there, when given), suspends it, resumes it (the run says
// resumedSays) and sees its counter go on.
func bootSuspendResume(t *testing.T, e testcli.Env, resumedSays string, atLogin func(done chan error, buf *testcli.SyncBuffer)) {
	t.Helper()
	_, buf, done := e.StartRun(t)
	waitConsoleFor(t, e, done, buf, loginRE, 10*time.Minute)
	if atLogin != nil {
		atLogin(done, buf)
	}
	_, m := waitConsoleFor(t, e, done, buf, tickRE, 2*time.Minute)
	before, _ := strconv.Atoi(m[1])
	suspend(t, e, done, buf)
	_, buf, done = e.StartRun(t)
	testcli.WaitFor(t, buf, done, resumedSays, 2*time.Minute)
	waitTickAbove(t, e, done, buf, before, before+2)
	suspend(t, e, done, buf)
}

// typeAt types text at the running machine's serial console through
// `soulpad console` reading a pipe, and returns what it printed.
func typeAt(t *testing.T, e testcli.Env, text string) string {
	t.Helper()
	cmd := exec.Command(e.Bin, "console")
	cmd.Env = append(os.Environ(), "SOULPAD_CONFIG="+e.Cfg)
	cmd.Stdin = strings.NewReader(text) // a pipe
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("soulpad console <<< %q: %v\n%s", text, err, tail(string(out), 20))
	}
	return string(out)
}

// logInAndType logs in as root at the console's login prompt and types
// line at the shell; its output must match want, whose groups it returns.
func logInAndType(t *testing.T, e testcli.Env, done chan error, buf *testcli.SyncBuffer, line string, want *regexp.Regexp) []string {
	t.Helper()
	typeAt(t, e, "root\n")
	waitConsoleFor(t, e, done, buf, regexp.MustCompile(`root@soulpad-test:~# `), time.Minute)
	typeAt(t, e, line+"\n")
	_, m := waitConsoleFor(t, e, done, buf, want, time.Minute)
	return m
}

// secureBootIs logs in and asks the firmware's SecureBoot variable
// whether Secure Boot is on: it must be as want says.
func secureBootIs(t *testing.T, e testcli.Env, want bool) func(chan error, *testcli.SyncBuffer) {
	return func(done chan error, buf *testcli.SyncBuffer) {
		t.Helper()
		m := logInAndType(t, e, done, buf,
			`echo secure-boot-$(od -An -tu1 -j4 -N1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c | tr -d ' ')-$((6*7))`,
			regexp.MustCompile(`secure-boot-(\d*)-42`))
		if m[1] != "0" && m[1] != "1" {
			t.Fatalf("in the guest, the firmware's SecureBoot variable reads %q; want 0 or 1", m[1])
		}
		if on := m[1] == "1"; on != want {
			t.Fatalf("in the guest, Secure Boot is %q (its SecureBoot variable); want on=%v", m[1], want)
		}
	}
}

func realOSWalk(t *testing.T) {
	e := realOSPad(t, "vmdk", "bios")
	_, buf, done := e.StartRun(t)
	waitConsoleFor(t, e, done, buf, loginRE, 10*time.Minute)
	// A file written at the shell (typed through soulpad console, the
	// markers computed so that the echo of the line does not match).
	logInAndType(t, e, done, buf, `echo note-$((6*7)) >/root/note && sync && echo written-$((6*7))`, regexp.MustCompile(`written-42`))
	_, m := waitConsoleFor(t, e, done, buf, tickRE, 2*time.Minute)
	testcli.WaitFor(t, buf, done, "guest: the guest agent answers", 2*time.Minute)
	before, _ := strconv.Atoi(m[1])
	suspend(t, e, done, buf)

	moved := filepath.Join(t.TempDir(), "usb")
	if b, err := exec.Command("cp", "-a", "--sparse=always", e.Pad, moved).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, b)
	}
	os.RemoveAll(e.Pad)
	e.Pad = moved
	t.Setenv("SOULPAD_PAD_PATH", moved)
	time.Sleep(15 * time.Second) // the pad sleeps; the guest's clock stands still

	_, buf, done = e.StartRun(t)
	testcli.WaitFor(t, buf, done, "clock is set", 2*time.Minute)
	if !strings.Contains(buf.String(), "resumed ") {
		t.Fatalf("the real OS was not resumed:\n%s", buf.String())
	}
	// Past tick 20: the counter has synced its file to disk at least
	// twice (every 10 ticks) before the machine is suspended again.
	waitTickAbove(t, e, done, buf, before, max(before+2, 25))
	lag := guestClockLag(t, e)
	t.Logf("real OS: after 15 s asleep and a resume its clock is %s behind", lag)
	if lag < -2*time.Second || lag > 3*time.Second {
		t.Fatalf("after a resume the real OS's clock is %s behind this PC's; want within 2 s", lag)
	}
	suspend(t, e, done, buf)

	_, buf, done = e.StartRunArgs(t, "--cold-boot")
	_, m = waitConsoleFor(t, e, done, buf, lastDiskRE, 10*time.Minute)
	if n, err := strconv.Atoi(m[1]); err != nil || n < 20 {
		t.Fatalf("after a cold boot the system found %q as its last tick on disk; want what it synced before the suspend (20 or more)", m[1])
	}
	waitConsoleFor(t, e, done, buf, loginRE, 5*time.Minute)
	logInAndType(t, e, done, buf, `echo found-$(cat /root/note)`, regexp.MustCompile(`found-note-42`))
	suspend(t, e, done, buf)
}

// TestRealOSBootsWithUEFI: the same system imported from qcow2 boots with
// UEFI firmware (GRUB's EFI loader on its ESP) and resumes.
func TestRealOSBootsWithUEFI(t *testing.T) {
	requireRealOS(t)
	e := realOSPad(t, "qcow2", "uefi")
	bootSuspendResume(t, e, "resumed ", secureBootIs(t, e, false))
}

// TestRealOSBootsWithSecureBoot: with machine.secure_boot the firmware
// (OVMF with Microsoft's keys enrolled) boots Debian's signed shim, GRUB
// and kernel; the guest finds Secure Boot on; the machine resumes.
func TestRealOSBootsWithSecureBoot(t *testing.T) {
	requireRealOS(t)
	e := realOSPad(t, "qcow2", "uefi", "secure_boot", "true")
	bootSuspendResume(t, e, "resumed ", secureBootIs(t, e, true))
}

// TestRealOSRunsOnCompatibleDevices: with machine.devices = "compatible"
// the same system boots from a SATA disk with an e1000 NIC (what a guest
// without virtio drivers needs) and resumes.
func TestRealOSRunsOnCompatibleDevices(t *testing.T) {
	requireRealOS(t)
	e := realOSPad(t, "qcow2", "bios", "devices", `"compatible"`)
	bootSuspendResume(t, e, "resumed ", nil)
}
