package main_test

// What a newcomer meets first: wrong arguments are exit status 2 before
// anything runs, messages are said once, read-only commands work while a
// run holds the pad, and what soulpad does on its own is announced.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/soulpad/soulpad/internal/testcli"
)

// A point that is not there is a wrong argument: exit status 2, and the
// message names the points there are instead of ending in "not found".
func TestRunPointThatIsNotThereIsAWrongArgument(t *testing.T) {
	e := testcli.Setup(t)
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	for _, args := range [][]string{{"run", "--point", "nosuch"}, {"points", "rm", "nosuch"}} {
		_, errOut, code := e.Run(t, args...)
		if code != 2 || !strings.Contains(errOut, `no suspend point "nosuch"`) || strings.HasSuffix(strings.TrimSpace(errOut), "not found") {
			t.Errorf("soulpad %s: exit %d; want 2 and the points there are\n%s", strings.Join(args, " "), code, errOut)
		}
	}
}

// Without a config, a missing pad says that the built-in config was used
// (its pad.path is ./soulpad-pad); with one, it does not.
func TestMissingPadSaysTheBuiltInConfigWasUsed(t *testing.T) {
	e := testcli.Setup(t)
	cmd := exec.Command(e.Bin, "status")
	cmd.Dir = t.TempDir()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SOULPAD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "no pad at") || !strings.Contains(string(out), "the built-in config was used") {
		t.Fatalf("status with no config and no pad:\n%s", out)
	}
	if _, errOut, _ := e.Run(t, "status"); !strings.Contains(errOut, "no pad at") || strings.Contains(errOut, "built-in config") {
		t.Fatalf("status with a config and no pad:\n%s", errOut)
	}
}

// Listing the points needs no lock: while a run holds the pad (and its
// vault), points lists them from the journal, as status does.
func TestPointsWhileARunHoldsThePad(t *testing.T) {
	e := testcli.Setup(t)
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	_, buf, done := e.StartRun(t)
	e.Run(t, "suspend")
	testcli.Wait(t, done, buf)
	m := regexp.MustCompile(`suspended to point (\S+);`).FindStringSubmatch(buf.String())
	if m == nil {
		t.Fatalf("no point sealed:\n%s", buf.String())
	}
	_, buf, done = e.StartRun(t)
	out, errOut, code := e.Run(t, "points")
	if code != 0 || !strings.Contains(out, m[1]) || !strings.Contains(errOut, "a session is running this pad") {
		t.Errorf("points while a run holds the pad: exit %d\n%s%s", code, out, errOut)
	}
	js, _, code := e.Run(t, "points", "--json")
	if code != 0 || !strings.Contains(js, `"id": "`+m[1]+`"`) {
		t.Errorf("points --json while a run holds the pad: exit %d\n%s", code, js)
	}
	e.Run(t, "suspend")
	testcli.Wait(t, done, buf)
}

// A file the config names that is not there is the config's problem,
// found by config check and by init before anything is made, at its key
// (exit status 2).
func TestConfigNamesAMissingKernel(t *testing.T) {
	e := testcli.Setup(t)
	t.Setenv("SOULPAD_MACHINE_KERNEL", filepath.Join(t.TempDir(), "no-such-vmlinuz"))
	for _, args := range [][]string{{"config", "check", "--no-plugins"}, {"init"}} {
		_, errOut, code := e.Run(t, args...)
		if code != 2 || !strings.Contains(errOut, "machine.kernel") || !strings.Contains(errOut, "no-such-vmlinuz") {
			t.Errorf("soulpad %s with a missing kernel: exit %d\n%s", strings.Join(args, " "), code, errOut)
		}
	}
	if _, err := os.Stat(e.Pad); err == nil {
		t.Error("init made a pad although the kernel is missing")
	}
}

// A passphrase or key file that is not there is a wrong argument, found
// before any stage runs (nothing is booted or detected first).
func TestMissingPassphraseFileIsAWrongArgument(t *testing.T) {
	e := testcli.Setup(t)
	missing := filepath.Join(t.TempDir(), "no-such-passphrase")
	for _, args := range [][]string{{"run", "--passphrase-file", missing}, {"init", "--key-file", missing}, {"points", "--passphrase-file", missing}} {
		out, errOut, code := e.Run(t, args...)
		if code != 2 || !strings.Contains(errOut, missing) || strings.Contains(out, "▸ boot") {
			t.Errorf("soulpad %s: exit %d; want 2, naming the file, before any stage\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
}

// Retention says what it removed, in the suspend's line and at the end.
func TestRetentionIsAnnounced(t *testing.T) {
	e := testcli.Setup(t)
	f, _ := os.OpenFile(e.Cfg, os.O_APPEND|os.O_WRONLY, 0)
	fmt.Fprintln(f, "session { keep_points = 1 }")
	f.Close()
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	var first string
	for i := 0; i < 2; i++ {
		_, buf, done := e.StartRun(t)
		e.Run(t, "suspend")
		testcli.Wait(t, done, buf)
		m := regexp.MustCompile(`suspended to point (\S+);`).FindStringSubmatch(buf.String())
		if m == nil {
			t.Fatalf("no point:\n%s", buf.String())
		}
		if i == 0 {
			first = m[1]
			continue
		}
		if !strings.Contains(buf.String(), "removed the oldest point(s) "+first+" (session.keep_points = 1)") {
			t.Fatalf("the second run removed %s without a word in its suspend line:\n%s", first, buf.String())
		}
	}
}

// A refused run says why once: not on its stage's line, in a table of
// zeros and again at the end.
func TestARefusedRunSaysWhyOnce(t *testing.T) {
	e := testcli.Setup(t)
	out, errOut, code := e.Run(t, "run") // no pad yet
	all := out + errOut
	if code == 0 || strings.Count(all, "no pad at") != 1 || strings.Contains(all, "STAGE") {
		t.Errorf("a run with no pad: exit %d; want the reason once and no stage table\n%s", code, all)
	}
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	_, buf, done := e.StartRun(t)
	out, errOut, code = e.Run(t, "run") // the pad is in use
	all = out + errOut
	if code != 3 || strings.Count(all, "is in use by") != 1 || strings.Contains(all, "STAGE") {
		t.Errorf("a second run on a pad in use: exit %d; want 3, the reason once and no stage table\n%s", code, all)
	}
	e.Run(t, "suspend")
	testcli.Wait(t, done, buf)
}
