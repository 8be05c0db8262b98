package walkup_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testcli"
)

var (
	checkpointRE = regexp.MustCompile(`  checkpoint (\S+): the machine paused`)
	resumesRE    = regexp.MustCompile(`resumes from its checkpoint (\S+) `)
)

// TestKillsWhileRunningLoseOnlySinceTheLastCheckpoint is the kill matrix
// while the machine runs with checkpoints (every 6 s): whichever process
// is killed (soulpad, the VMM plugin, QEMU, the crypt plugin), a few
// seconds after a checkpoint, the next run resumes that checkpoint (the
// newest point), says what was lost, and the machine goes on from it: a
// crash loses the time since the last checkpoint, not the session.
func TestKillsWhileRunningLoseOnlySinceTheLastCheckpoint(t *testing.T) {
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", "crypt-luks")
	t.Setenv("SOULPAD_SESSION_CHECKPOINT_MINUTES", "0.1")
	// Each kill leaves points (a disk point among them): room for them
	// all and for the machine's memory (a vault without it skips
	// checkpoints: TestRoomToRunNeedsTheMachinesRAM).
	t.Setenv("SOULPAD_PAD_VAULT_SIZE_MIB", "1536")
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	for _, victim := range []string{"soulpad", "vmm-qemu", "qemu-system-x86_64", "crypt-luks"} {
		t.Run(victim, func(t *testing.T) {
			cmd, buf, done := e.StartRunArgs(t)
			testcli.WaitFor(t, buf, done, "the machine is running", 90*time.Second)
			// A checkpoint, then the machine runs on past it.
			for deadline := time.Now().Add(2 * time.Minute); len(checkpointRE.FindAllString(buf.String(), -1)) < 1; time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("no checkpoint in 2 minutes:\n%s", buf.String())
				}
			}
			// At most what the checkpoint holds (the guest may not have
			// ticked yet when a checkpoint comes soon after the resume).
			floor := 0
			if vs := e.Counters(t); len(vs) > 0 {
				floor = vs[len(vs)-1] - 1
			}
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
				if vs := e.Counters(t); len(vs) > 0 && vs[len(vs)-1] >= floor+3 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the machine did not run on past counter %d after the checkpoint (counters %v):\n%s", floor+3, e.Counters(t), buf.String())
				}
			}
			ms := checkpointRE.FindAllStringSubmatch(buf.String(), -1)
			newest := ms[len(ms)-1][1]
			if victim == "soulpad" {
				_ = cmd.Process.Kill()
			} else if !testcli.KillNamed(t, cmd.Process.Pid, victim) {
				t.Fatalf("no %s under soulpad", victim)
			}
			cut := time.Now()
			code := testcli.Ended(t, done, buf)
			if ms = checkpointRE.FindAllStringSubmatch(buf.String(), -1); ms[len(ms)-1][1] != newest {
				newest = ms[len(ms)-1][1] // one more came as the kill landed
			}
			t.Logf("kill -9 of %s: exit %d", victim, code)

			_, buf, done = e.StartRunArgs(t)
			testcli.WaitFor(t, buf, done, "the machine is running", 90*time.Second)
			out := buf.String()
			// The newest seen, or one sealed as the kill landed, before
			// its line was printed (points are named by time).
			m := resumesRE.FindStringSubmatch(out)
			if m == nil || m[1] < newest || !strings.Contains(out, "resumed "+m[1]) {
				t.Fatalf("after the kill of %s the run does not resume the newest checkpoint %s:\n%s", victim, newest, out)
			}
			newest = m[1]
			if got := e.WaitCounter(t, 1)[0]; got < floor {
				t.Fatalf("after the kill of %s the counter went on from %d; the checkpoint held ≥ %d", victim, got, floor)
			}
			t.Logf("kill -9 of %s: the next run resumed checkpoint %s, %.1f s after the kill", victim, newest, time.Since(cut).Seconds())
			if o, eo, code := e.Run(t, "suspend"); code != 0 {
				t.Fatalf("suspend: %s %s", o, eo)
			}
			if code := testcli.Ended(t, done, buf); code != 0 {
				t.Fatalf("the recovery run: exit %d\n%s", code, buf.String())
			}
		})
	}
}
