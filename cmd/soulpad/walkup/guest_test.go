package walkup_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/internal/testcli"
	"github.com/soulpad/soulpad/internal/testlibvirt"
)

var clockRE = regexp.MustCompile(`soulpad-counter \d+ clock (\d+)`)

// guestClockLag is how far the guest's clock (its last console tick)
// is behind this host's.
func guestClockLag(t *testing.T, e testcli.Env) time.Duration {
	t.Helper()
	c := consoleDump(t, e)
	now := time.Now()
	m := clockRE.FindAllStringSubmatch(c, -1)
	if len(m) == 0 {
		t.Fatalf("the console shows no clock:\n%s", c)
	}
	secs, _ := strconv.ParseInt(m[len(m)-1][1], 10, 64)
	return now.Sub(time.Unix(secs, 0))
}

// TestGuestClockIsSetAfterResume: the demo guest runs QEMU's guest agent;
// status says it answers, and after the pad slept the resumed guest's
// clock is this host's again (it stood still while the pad slept).
func TestGuestClockIsSetAfterResume(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a guest")
	}
	eachVMM(t, guestClockAfterResume)
}

// eachVMM runs test with vmm-qemu and with vmm-libvirt (on the libvirtd
// the test setup starts).
func eachVMM(t *testing.T, test func(t *testing.T)) {
	t.Run("vmm-qemu", test)
	t.Run("vmm-libvirt", func(t *testing.T) {
		testlibvirt.Require(t)
		testbin.Build(t, "plugins/vmm-libvirt")
		t.Setenv("SOULPAD_PLUGINS_VMM", "vmm-libvirt")
		test(t)
	})
}

func guestClockAfterResume(t *testing.T) {
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", "crypt-plain")
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	_, buf, done := e.StartRun(t)
	testcli.WaitFor(t, buf, done, "guest: the guest agent answers", 2*time.Minute)
	if out, _, _ := e.Run(t, "status"); !strings.Contains(out, "guest      the guest agent answers") {
		t.Fatalf("status does not say the guest agent answers:\n%s", out)
	}
	suspend(t, e, done, buf)

	const slept = 20 * time.Second
	time.Sleep(slept)
	_, buf, done = e.StartRun(t)
	testcli.WaitFor(t, buf, done, "clock is set", time.Minute)
	ticks := len(e.Counters(t))
	e.WaitCounter(t, ticks+2)
	lag := guestClockLag(t, e)
	t.Logf("after %s asleep the guest's clock is %s behind", slept, lag)
	if lag < -2*time.Second || lag > 3*time.Second {
		t.Fatalf("after %s asleep and a resume the guest's clock is %s behind this host's; want within 2 s (and the tick's print)", slept, lag)
	}
	suspend(t, e, done, buf)
}
