package walkup_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testcli"
)

// The fault injector's view: kill -9 of soulpad, of each plugin and of
// QEMU at moments across the session (unlock, resume, run, suspend,
// shutdown), each followed by a run that must resume a sealed point with
// its own disk — the counter goes on from at least that point's value,
// never from 1 — and say what was lost.
// It runs with crypt-gocryptfs (the guest's RAM in the suspend stream) and
// with crypt-luks (XFS in the vault: the RAM is a file in the vault, and
// each point holds a clone of it).
func TestKillAnythingAnytimeResumesASealedPoint(t *testing.T) {
	for _, c := range []string{"crypt-gocryptfs", "crypt-luks"} {
		t.Run(c, func(t *testing.T) { killMatrix(t, c) })
	}
}

func killMatrix(t *testing.T, crypt string) {
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", crypt)
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	first, _ := e.Session(t, 3)
	// floor is the counter value of the newest point known to be sealed:
	// every resume must print more than it.
	floor := first[len(first)-1]

	type fault struct {
		name string
		// after is the output line the kill waits for; wait is the delay
		// after it; victim is the executable killed ("soulpad" itself, a
		// plugin, or QEMU).
		after  string
		wait   time.Duration
		victim string
		// suspend asks for a suspend before the kill.
		suspend bool
		// lost: the next run must say the work since the point is lost
		// and keep the disk as a point.
		lost bool
		// code is the exit status the killed run must end with (0: any).
		code int
	}
	faults := []fault{
		{name: "soulpad while running", after: "the machine is running", wait: 1500 * time.Millisecond, victim: "soulpad", lost: true},
		{name: "vmm plugin while running", after: "the machine is running", wait: 1500 * time.Millisecond, victim: "vmm-qemu", lost: true, code: 4},
		{name: "QEMU while running", after: "the machine is running", wait: 1500 * time.Millisecond, victim: "qemu-system-x86_64", lost: true, code: 4},
		{name: "crypt plugin while running", after: "the machine is running", wait: 1500 * time.Millisecond, victim: crypt, lost: true, code: 4},
		{name: "soulpad during unlock", after: "▸ unlock", victim: "soulpad"},
		{name: "soulpad during resume", after: "▸ resume", wait: 50 * time.Millisecond, victim: "soulpad"},
		{name: "soulpad at suspend 0 s", after: "suspending…", victim: "soulpad", suspend: true},
		{name: "soulpad at suspend 0.3 s", after: "suspending…", wait: 300 * time.Millisecond, victim: "soulpad", suspend: true},
		{name: "soulpad at suspend 1 s", after: "suspending…", wait: time.Second, victim: "soulpad", suspend: true},
		{name: "vmm plugin during suspend", after: "suspending…", wait: 200 * time.Millisecond, victim: "vmm-qemu", suspend: true},
		{name: "QEMU during suspend", after: "suspending…", wait: 200 * time.Millisecond, victim: "qemu-system-x86_64", suspend: true},
		{name: "crypt plugin during suspend", after: "suspending…", wait: 100 * time.Millisecond, victim: crypt, suspend: true},
		{name: "soulpad once sealed", after: "sealed ", victim: "soulpad", suspend: true},
		{name: "soulpad during shutdown", after: "▸ shutdown", victim: "soulpad", suspend: true},
	}
	recoverAndCheck := func(t *testing.T, what string, lost bool) {
		t.Helper()
		cmd, buf, done := e.StartRunArgs(t)
		testcli.WaitFor(t, buf, done, "the machine is running", 90*time.Second)
		out := buf.String()
		if !strings.Contains(out, "resumed ") {
			t.Fatalf("after %s the next run did not resume a point:\n%s", what, out)
		}
		vs := e.WaitCounter(t, 2)
		if vs[0] <= floor {
			t.Fatalf("after %s the counter went on from %d; the newest sealed point had reached %d:\n%s", what, vs[0], floor, out)
		}
		t.Logf("after %s: resumed, counter %d (point had ≥ %d)", what, vs[0], floor)
		if lost && (!strings.Contains(out, "is lost") || !strings.Contains(out, "its disk is kept as point")) {
			t.Errorf("after %s the run does not say what was lost and where the disk went:\n%s", what, out)
		}
		// Suspend cleanly: this becomes the new floor.
		last := e.Counters(t)
		if o, eo, code := e.Run(t, "suspend"); code != 0 {
			t.Fatalf("suspend: %s %s", o, eo)
		}
		if code := testcli.Ended(t, done, buf); code != 0 || !strings.Contains(buf.String(), "suspended to point") {
			t.Fatalf("the recovery run did not suspend (exit %d):\n%s", code, buf.String())
		}
		_ = cmd
		floor = last[len(last)-1]
	}
	for _, f := range faults {
		t.Run(strings.ReplaceAll(f.name, " ", "_"), func(t *testing.T) {
			cmd, buf, done := e.StartRunArgs(t)
			before := 0
			if f.suspend {
				testcli.WaitFor(t, buf, done, "the machine is running", 90*time.Second)
				vs := e.WaitCounter(t, 1)
				before = vs[len(vs)-1]
				if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
					t.Fatal(err)
				}
			}
			testcli.WaitFor(t, buf, done, f.after, 90*time.Second)
			time.Sleep(f.wait)
			if f.victim == "soulpad" {
				_ = cmd.Process.Kill()
			} else if !testcli.KillNamed(t, cmd.Process.Pid, f.victim) {
				t.Logf("no %s was running at that moment (the stage was over):\n%s", f.victim, buf.String())
			}
			code := testcli.Ended(t, done, buf)
			t.Logf("%s: the run ended with exit status %d", f.name, code)
			if f.suspend && sealedRE.MatchString(buf.String()) {
				floor = before // the point was sealed: it must be the one resumed
			}
			if f.code != 0 && code != f.code {
				t.Errorf("killing %s ended the run with status %d; want %d:\n%s", f.victim, code, f.code, buf.String())
			}
			// Whatever was killed, nothing of the vault stays mounted for
			// long (the plugins lock it when soulpad dies; the core
			// detaches it when the crypt plugin dies).
			vault := filepath.Join(e.Pad, "vault")
			plain := "/soulpad-" + padID(t, e.Pad) + "-" // the plaintext's mount point
			deadline := time.Now().Add(20 * time.Second)
			for {
				b, _ := os.ReadFile("/proc/self/mountinfo")
				if !bytes.Contains(b, []byte(" "+vault+" ")) && !bytes.Contains(b, []byte(plain)) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the vault is still mounted 20 s after %s was killed", f.victim)
				}
				time.Sleep(100 * time.Millisecond)
			}
			for {
				out, _ := exec.Command("pgrep", "-f", "gocryptfs.* "+vault).Output()
				if len(out) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("gocryptfs still serves the vault 20 s after %s was killed: %s", f.victim, out)
				}
				time.Sleep(50 * time.Millisecond)
			}
			recoverAndCheck(t, "kill -9 of "+f.name, f.lost)
		})
	}
}

// sealedRE matches the suspend stage's report of a sealed point (not the
// "last sealed point" of an error message).
var sealedRE = regexp.MustCompile(`sealed \d{8}T\d{6}`)

// padID is the ID in the pad's pad.json.
func padID(t *testing.T, pad string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(pad, "pad.json"))
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &p); err != nil || p.ID == "" {
		t.Fatalf("pad.json: %v", err)
	}
	return p.ID
}

// crypt-luks killed while the machine runs: the session stops (exit
// status 4) instead of failing to suspend into a dead vault for ever, no
// mount of the vault's plaintext is left, and the next run resumes.
func TestKilledCryptLuksStopsTheSession(t *testing.T) {
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", "crypt-luks")
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	first, _ := e.Session(t, 2)
	cmd, buf, done := e.StartRunArgs(t)
	testcli.WaitFor(t, buf, done, "the machine is running", 90*time.Second)
	e.WaitCounter(t, 1)
	before, _ := os.ReadFile("/proc/self/mountinfo")
	if !testcli.KillNamed(t, cmd.Process.Pid, "crypt-luks") {
		t.Fatal("no crypt-luks process")
	}
	if code := testcli.Ended(t, done, buf); code != 4 || !strings.Contains(buf.String(), "without a suspend point") {
		t.Fatalf("exit %d; want 4 and a clear message:\n%s", code, buf.String())
	}
	after, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(after), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.Contains(f[4], "/soulpad-") && !bytes.Contains(before, []byte(f[4]+" ")) {
			t.Errorf("a new soulpad mount is left after the crypt plugin died: %s", l)
		}
	}
	_, buf, done = e.StartRunArgs(t)
	testcli.WaitFor(t, buf, done, "the machine is running", 90*time.Second)
	if v := e.WaitCounter(t, 1); !strings.Contains(buf.String(), "resumed ") || v[0] <= first[len(first)-1] {
		t.Fatalf("after the crash: counter %v\n%s", v, buf.String())
	}
	e.Run(t, "suspend")
	testcli.Ended(t, done, buf)
}

// A run killed outright leaves no mount directory behind once the next
// run has been through unlock.
func TestKilledRunLeavesNoMountDirectory(t *testing.T) {
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", "crypt-gocryptfs")
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	b, _ := os.ReadFile(filepath.Join(e.Pad, "pad.json"))
	var meta struct{ ID string }
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	left := func() []string {
		m, _ := filepath.Glob(filepath.Join(os.TempDir(), "soulpad-"+meta.ID+"-*"))
		return m
	}
	cmd, buf, done := e.StartRunArgs(t)
	testcli.WaitFor(t, buf, done, "the machine is running", 90*time.Second)
	// QEMU's run directory (sockets, the guest's console log) is in its
	// argv: it must go with the killed session.
	var runDir string
	for pid, name := range testcli.Descendants(cmd.Process.Pid) {
		if name == "qemu-system-x86_64" {
			args, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if m := regexp.MustCompile(`path=([^,\x00]*)/qmp\.sock`).FindSubmatch(args); m != nil {
				runDir = string(m[1])
			}
		}
	}
	if runDir == "" {
		t.Fatal("QEMU's run directory not found in its argv")
	}
	_ = cmd.Process.Kill()
	testcli.Ended(t, done, buf)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(runDir); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("QEMU's run directory %s (with the guest's console log) is left 15 s after soulpad was killed", runDir)
		}
	}
	if len(left()) == 0 {
		t.Fatal("no mount directory was left by the killed run: the test sees nothing")
	}
	_, buf, done = e.StartRunArgs(t)
	testcli.WaitFor(t, buf, done, "the machine is running", 90*time.Second)
	if l := left(); len(l) != 1 {
		t.Errorf("mount directories of the pad while one session runs: %v; want only its own", l)
	}
	e.Run(t, "suspend")
	testcli.Ended(t, done, buf)
	if l := left(); len(l) != 0 {
		t.Errorf("left in the temp directory after a clean end: %v", l)
	}
}

// A walk-up leaves nothing in the host's temp directory (vault mounts,
// plugin work files, gocryptfs's output) and removes its control socket:
// the paths README lists are all that soulpad writes on the host.
func TestWalkUpLeavesNoTraces(t *testing.T) {
	for _, c := range []string{"crypt-gocryptfs", "crypt-luks"} {
		t.Run(c, func(t *testing.T) {
			e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", c)
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp) // soulpad's and its plugins' temp directory
			if out, errOut, code := e.Run(t, "init"); code != 0 {
				t.Fatalf("init: %s %s", out, errOut)
			}
			e.Session(t, 2)
			e.Session(t, 1)
			ents, _ := os.ReadDir(tmp)
			var left []string
			for _, en := range ents {
				left = append(left, en.Name())
			}
			if len(left) > 0 {
				t.Errorf("left in TMPDIR after two walk-ups: %v", left)
			}
			b, _ := os.ReadFile(filepath.Join(e.Pad, "pad.json"))
			var meta struct{ ID string }
			_ = json.Unmarshal(b, &meta)
			if _, err := os.Stat(filepath.Join("/run/soulpad", meta.ID+".sock")); os.Getuid() == 0 && err == nil {
				t.Error("the control socket is left in /run/soulpad")
			}
		})
	}
}
