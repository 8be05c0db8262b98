package walkup_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testcli"
)

// Two runs on one pad: the second is refused before it unlocks anything,
// naming the holder, and so are init, backup, credential and points; once
// the first suspends, the pad is free.
func TestOnePadOneSession(t *testing.T) {
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", "crypt-plain")
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	cmd, buf, done := e.StartRunArgs(t)
	testcli.WaitFor(t, buf, done, "the machine is running", 90*time.Second)
	holder := fmt.Sprintf("pid %d", cmd.Process.Pid)
	// The plugins and QEMU get a minimal environment: not soulpad's
	// SOULPAD_CONFIG (or anything else the user's shell holds).
	kids := testcli.Descendants(cmd.Process.Pid)
	if len(kids) == 0 {
		t.Fatal("no plugin processes under soulpad run")
	}
	for pid, name := range kids {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err == nil && bytes.Contains(env, []byte("SOULPAD_CONFIG=")) {
			t.Errorf("%s (pid %d) got soulpad's whole environment", name, pid)
		}
		// Nor is the guest's kernel command line on an argv other users read.
		if args, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(args, []byte("console=ttyS0 quiet")) {
			t.Errorf("%s (pid %d) has the guest's kernel command line in its argv", name, pid)
		}
	}
	journal := testcli.TreeHash(t, filepath.Join(e.Pad, "journal"))
	for _, args := range [][]string{{"run"}, {"run", "--cold-boot"}, {"init"}, {"points"}, {"backup"}, {"credential", "add", "--passphrase-file", "/dev/null"}} {
		out, errOut, code := e.Run(t, args...)
		if args[0] == "points" {
			// A listing needs no lock: it comes from the journal, and
			// nothing is unlocked.
			if code != 0 || !strings.Contains(errOut, "a session is running this pad") || strings.Contains(out, "▸ unlock") {
				t.Errorf("points while the pad runs: exit %d\n%s%s", code, out, errOut)
			}
			continue
		}
		if args[0] == "init" {
			if code == 0 || !strings.Contains(errOut, "in use") && !strings.Contains(errOut, "already exists") {
				t.Errorf("init on a running pad: exit %d %s", code, errOut)
			}
			continue
		}
		if args[0] == "backup" && strings.Contains(errOut, "no backup plugin") {
			t.Errorf("backup was not refused for the lock first: %s", errOut)
			continue
		}
		if code != 3 || !strings.Contains(errOut, holder) || !strings.Contains(errOut, "in use") {
			t.Errorf("soulpad %s while the pad runs: exit %d (want 3 naming %s)\n%s%s", strings.Join(args, " "), code, holder, out, errOut)
		}
		if strings.Contains(out, "▸ unlock") {
			t.Errorf("soulpad %s went on to unlock the vault:\n%s", args[0], out)
		}
	}
	if testcli.TreeHash(t, filepath.Join(e.Pad, "journal")) != journal {
		t.Error("a refused command wrote to the pad's journal")
	}
	st, _, _ := e.Run(t, "status")
	if !strings.Contains(st, "in use     by `soulpad run` ("+holder) {
		t.Errorf("status does not show the holder:\n%s", st)
	}
	vs := e.WaitCounter(t, 2)
	if _, _, code := e.Run(t, "suspend"); code != 0 {
		t.Fatal("suspend failed")
	}
	if code := testcli.Ended(t, done, buf); code != 0 {
		t.Fatalf("first run: exit %d\n%s", code, buf.String())
	}
	_, buf2, done2 := e.StartRunArgs(t)
	testcli.WaitFor(t, buf2, done2, "the machine is running", 90*time.Second)
	if !strings.Contains(buf2.String(), "resumed ") {
		t.Fatalf("the pad was not free after the first run suspended:\n%s", buf2.String())
	}
	if v := e.WaitCounter(t, 1); v[0] <= vs[len(vs)-1] {
		t.Fatalf("counter %d after %d", v[0], vs[len(vs)-1])
	}
	e.Run(t, "suspend")
	testcli.Ended(t, done2, buf2)
}

// Eight run/suspend cycles with session.keep_points = 3: the pad's size
// stops growing, the oldest points go, and each kept point still resumes.
// A kill -9 leaves a disk point that --point boots and prune --disks
// removes; --point resumes an older point with its own disk.
func TestPointsHistoryRetentionAndChoice(t *testing.T) {
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", "crypt-plain")
	f, err := os.OpenFile(e.Cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "session { keep_points = 3 }")
	f.Close()
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	var sizes []int64
	last := map[string]int{} // point → last counter seen before it
	for i := 1; i <= 8; i++ {
		vs, _ := e.Session(t, 2)
		pts := e.Points(t)
		last[pts[len(pts)-1].ID] = vs[len(vs)-1]
		sizes = append(sizes, testcli.DuBytes(t, e.Pad))
		t.Logf("cycle %d: pad %.1f MiB, %d points", i, float64(sizes[i-1])/(1<<20), len(pts))
		if n := len(pts); n > 3 {
			t.Fatalf("cycle %d: %d points kept; want at most 3", i, n)
		}
	}
	if sizes[7] > sizes[3]+sizes[3]/4 {
		t.Fatalf("the pad keeps growing: %d bytes after 4 cycles, %d after 8", sizes[3], sizes[7])
	}
	pts := e.Points(t)
	if len(pts) != 3 || !pts[2].Latest || pts[2].Parent != pts[1].ID || pts[1].Parent != pts[0].ID {
		t.Fatalf("points after 8 cycles: %+v", pts)
	}

	// --point: the oldest kept point resumes with its own memory.
	oldest := pts[0].ID
	_, buf, done := e.StartRunArgs(t, "--point", oldest)
	testcli.WaitFor(t, buf, done, "the machine is running", 90*time.Second)
	vs := e.WaitCounter(t, 1)
	if vs[0] <= last[oldest] || vs[0] > last[pts[1].ID] {
		t.Fatalf("--point %s went on from %d; that point had reached %d (the next one %d)", oldest, vs[0], last[oldest], last[pts[1].ID])
	}
	e.Run(t, "suspend")
	if code := testcli.Ended(t, done, buf); code != 0 {
		t.Fatalf("run --point: exit %d\n%s", code, buf.String())
	}
	pts = e.Points(t)
	if got := pts[len(pts)-1]; got.Parent != oldest {
		t.Fatalf("the new point's parent is %q; want %s", got.Parent, oldest)
	}

	// A crash: the next run resumes the newest point and keeps the disk.
	cmd, buf, done := e.StartRunArgs(t)
	testcli.WaitFor(t, buf, done, "the machine is running", 90*time.Second)
	e.WaitCounter(t, 2)
	_ = cmd.Process.Kill()
	testcli.Ended(t, done, buf)
	_, buf, done = e.StartRunArgs(t)
	testcli.WaitFor(t, buf, done, "the machine is running", 90*time.Second)
	e.Run(t, "suspend")
	testcli.Ended(t, done, buf)
	var disk string
	for _, p := range e.Points(t) {
		if p.Kind == "disk" {
			disk = p.ID
		}
	}
	if disk == "" {
		t.Fatalf("no disk point after a crash:\n%s", buf.String())
	}
	// It boots (a cold boot of that disk: the counter starts again).
	_, buf, done = e.StartRunArgs(t, "--point", disk)
	testcli.WaitFor(t, buf, done, "the machine is running", 90*time.Second)
	if v := e.WaitCounter(t, 1); v[0] != 1 || !strings.Contains(buf.String(), "disk kept in point "+disk) {
		t.Fatalf("--point %s (a disk point): counter %v\n%s", disk, v, buf.String())
	}
	e.Run(t, "suspend")
	testcli.Ended(t, done, buf)
	// rm refuses the newest without --force; prune --disks drops the disk point.
	if _, errOut, code := e.Run(t, "points", "rm", e.Points(t)[len(e.Points(t))-1].ID); code == 0 || !strings.Contains(errOut, "--force") {
		t.Fatalf("rm of the newest point: exit %d %s", code, errOut)
	}
	if out, errOut, code := e.Run(t, "points", "prune", "--disks"); code != 0 || !strings.Contains(out, disk) {
		t.Fatalf("prune --disks: exit %d %s %s", code, out, errOut)
	}
	for _, p := range e.Points(t) {
		if p.Kind == "disk" {
			t.Fatalf("prune --disks left %+v", p)
		}
	}
	// What is left still resumes.
	_, buf, done = e.StartRunArgs(t)
	testcli.WaitFor(t, buf, done, "the machine is running", 90*time.Second)
	if !strings.Contains(buf.String(), "resumed ") {
		t.Fatalf("after pruning:\n%s", buf.String())
	}
	e.Run(t, "suspend")
	testcli.Ended(t, done, buf)
	if b, err := exec.Command("qemu-img", "check", filepath.Join(e.Pad, "vault", "machines", "soul", "disk")).CombinedOutput(); err != nil {
		t.Fatalf("the base image: %v %s", err, b)
	}
}

// At a terminal prompt a wrong passphrase may be retyped twice (as with
// cryptsetup); the third wrong one ends with exit status 5, nothing
// changed, and no message repeats its prefix.
func TestPassphraseThreeTriesAtThePrompt(t *testing.T) {
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("script (util-linux) is needed to give soulpad a terminal")
	}
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", "crypt-gocryptfs")
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	hcl, _ := os.ReadFile(e.Cfg)
	if err := os.WriteFile(e.Cfg, []byte(strings.Replace(string(hcl), `unlock { passphrase_file = "passphrase" }`, "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	before := testcli.TreeHash(t, filepath.Join(e.Pad, "vault"))
	atPrompt := func(typed string) (string, int) {
		cmd := exec.Command("script", "-q", "-e", "-c", e.Bin+" points", "/dev/null")
		cmd.Env = append(os.Environ(), "SOULPAD_CONFIG="+e.Cfg)
		cmd.Stdin = strings.NewReader(typed)
		out, err := cmd.CombinedOutput()
		code := 0
		if x, ok := err.(*exec.ExitError); ok {
			code = x.ExitCode()
		}
		return string(out), code
	}
	out, code := atPrompt("wrong one\nwrong two\nwrong three\n")
	if code != 5 || strings.Count(out, "Passphrase:") != 3 || !strings.Contains(out, "3 tries") {
		t.Fatalf("three wrong passphrases: exit %d\n%s", code, out)
	}
	if strings.Count(out, "crypt-gocryptfs:") > 1 {
		t.Errorf("a doubled prefix:\n%s", out)
	}
	if testcli.TreeHash(t, filepath.Join(e.Pad, "vault")) != before {
		t.Fatal("wrong passphrases changed the vault")
	}
	out, code = atPrompt("wrong one\na long walk-up test passphrase\n")
	if code != 0 || !strings.Contains(out, "no suspend points yet") || !strings.Contains(out, "2 of 3 tries left") {
		t.Fatalf("a wrong then the right passphrase: exit %d\n%s", code, out)
	}
}
