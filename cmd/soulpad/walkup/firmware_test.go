package walkup_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/soulpad/soulpad/internal/testcli"
)

// withMachine sets keys of the test pad's machine block (key, value as
// HCL, …).
func withMachine(t *testing.T, e testcli.Env, kv ...string) {
	t.Helper()
	b, err := os.ReadFile(e.Cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(kv); i += 2 {
		line := "  " + kv[i] + " = " + kv[i+1]
		re := regexp.MustCompile(`(?m)^\s*` + kv[i] + `\s*=.*$`)
		if re.MatchString(s) {
			s = re.ReplaceAllLiteralString(s, line)
		} else {
			s = strings.Replace(s, "machine {", "machine {\n"+line, 1)
		}
	}
	if err := os.WriteFile(e.Cfg, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

var uefiBootRE = regexp.MustCompile(`soulpad-guest: uefi, this boot ([0-9a-f]+)`)

// TestUEFIVariablesTravelWithTheMachine: a machine with UEFI firmware
// boots OVMF; what the guest writes into its variable store is there
// after a suspend, a resume and a cold boot (the store lives in the
// vault, kept with the points, not on the PC).
func TestUEFIVariablesTravelWithTheMachine(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a guest")
	}
	if _, err := os.Stat("/usr/share/OVMF/OVMF_CODE_4M.fd"); err != nil {
		t.Skip("OVMF is not installed (make deps installs it)")
	}
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", "crypt-gocryptfs")
	withMachine(t, e, "firmware", `"uefi"`, "memory_mib", "256")
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: exit %d\n%s%s", code, out, errOut)
	}
	_, buf, done := e.StartRun(t)
	first := e.WaitCounter(t, 2)
	c := consoleDump(t, e)
	m := uefiBootRE.FindStringSubmatch(c)
	if m == nil || !strings.Contains(c, "uefi, last boot none") {
		t.Fatalf("the first boot is not a UEFI boot with an empty variable store:\n%s", c)
	}
	suspend(t, e, done, buf)

	second, out := e.Session(t, 2)
	if !strings.Contains(out, "resumed ") || second[0] <= first[len(first)-1] {
		t.Fatalf("the UEFI machine did not resume (counter %v after %v):\n%s", second, first, out)
	}

	_, buf, done = e.StartRunArgs(t, "--cold-boot")
	e.WaitCounter(t, 1)
	if c := consoleDump(t, e); !strings.Contains(c, "uefi, last boot "+m[1]) {
		t.Fatalf("a cold boot does not find what the first boot wrote into the variable store (%s):\n%s", m[1], c)
	}
	suspend(t, e, done, buf)
}
