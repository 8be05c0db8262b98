package walkup

import (
	"bufio"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testcli"
)

// TestMemoryIsHashedWhileTheMachineRuns: after a cold boot the guest
// fills 96 MiB of its 256 MiB of RAM; while it runs on, the session hashes its RAM
// file ahead (status says so), and the suspend then hashes only what
// the guest changed since, far less than it filled. The point resumes
// (its sums are checked against the bytes as the guest reads them).
func TestMemoryIsHashedWhileTheMachineRuns(t *testing.T) {
	const fill = 96
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1 soulpad.dirty_mib="+strconv.Itoa(fill), "crypt-luks")
	t.Setenv("SOULPAD_SESSION_CHECKPOINT_MINUTES", "0")
	t.Setenv("SOULPAD_MACHINE_MEMORY_MIB", "256")
	t.Setenv("SOULPAD_PAD_VAULT_SIZE_MIB", "1024")
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	_, buf, done := e.StartRunArgs(t)
	testcli.WaitFor(t, buf, done, "the machine is running", 90*time.Second)
	deadline := time.Now().Add(3 * time.Minute)
	for !strings.Contains(consoleText(t, e), "soulpad-guest: dirtied") {
		if time.Now().After(deadline) {
			out, errOut, code := e.Run(t, "console", "--dump")
			t.Fatalf("the guest did not fill its RAM in 3 minutes: console --dump: exit %d %s %s\nrun:\n%s", code, out, errOut, buf.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Two more rounds: one began after the fill ended.
	first := hashRounds(t, e)
	for hashRounds(t, e) < first+2 {
		if time.Now().After(deadline) {
			status, _, _ := e.Run(t, "status")
			t.Fatalf("no two rounds of hashing ahead after the fill:\n%s", status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, errOut, code := e.Run(t, "suspend"); code != 0 {
		t.Fatalf("suspend: exit %d %s %s", code, out, errOut)
	}
	testcli.Wait(t, done, buf)
	ahead, atSuspend := suspendHashed(t, e.Pad)
	t.Logf("hashed ahead %d MiB; at the suspend %.1f MiB", ahead>>20, float64(atSuspend)/(1<<20))
	if ahead < fill<<20 {
		t.Fatalf("%d bytes hashed ahead; want at least the %d MiB the guest filled", ahead, fill)
	}
	if atSuspend > fill<<20/2 {
		t.Fatalf("the suspend hashed %d bytes after %d MiB were hashed ahead; want under half the fill", atSuspend, fill)
	}
	last := e.Counters(t)
	_, buf, done = e.StartRunArgs(t)
	testcli.WaitFor(t, buf, done, "the machine is running", 90*time.Second)
	if !strings.Contains(buf.String(), "resumed ") {
		t.Fatalf("the point did not resume:\n%s", buf.String())
	}
	e.WaitCounter(t, len(last)+2)
	if out, errOut, code := e.Run(t, "suspend"); code != 0 {
		t.Fatalf("suspend: exit %d %s %s", code, out, errOut)
	}
	testcli.Wait(t, done, buf)
	if strings.Contains(buf.String(), "refused") {
		t.Fatalf("the resumed point was refused:\n%s", buf.String())
	}
}

func consoleText(t *testing.T, e testcli.Env) string {
	out, _, _ := e.Run(t, "console", "--dump")
	return out
}

var roundsRE = regexp.MustCompile(`hashed ahead of the suspend in (\d+) round`)

// hashRounds is how many rounds of hashing ahead status counts.
func hashRounds(t *testing.T, e testcli.Env) int {
	status, _, _ := e.Run(t, "status")
	m := roundsRE.FindStringSubmatch(status)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// suspendHashed is what the last session's suspend found hashed ahead
// and what it hashed itself, from the journal.
func suspendHashed(t *testing.T, padDir string) (ahead, atSuspend int64) {
	f := newestJournal(t, padDir)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	seen := false
	for sc.Scan() {
		var e struct {
			Message string `json:"message"`
			Fields  struct {
				Ahead  int64 `json:"hashed_ahead_bytes"`
				Hashed int64 `json:"hashed_bytes"`
			} `json:"fields"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Message == "suspend point sealed" {
			ahead, atSuspend, seen = e.Fields.Ahead, e.Fields.Hashed, true
		}
	}
	if !seen {
		t.Fatal("the journal has no sealed suspend point")
	}
	return ahead, atSuspend
}
