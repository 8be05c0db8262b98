package padimage_test

import (
	"regexp"
	"testing"
	"time"
)

// unplugAndReplug pulls the pad out of pc, where the machine runs on
// point, as someone who walks off with it mid-session would, and plugs
// it into another PC. The PC stops the machine at once (nothing can
// reach the pad: it is a power cut, not a suspend), says so and powers
// off; its host OS, loaded into memory at boot, is still there to do so.
// The next boot resumes the newest point, point, says what was lost, and
// the machine goes on from where that point left it (its counter at
// least last). It returns the point sealed when that session is
// suspended.
func unplugAndReplug(t *testing.T, dir string, pc *pc, img, keyDisk, pcDisk, point string, last int) string {
	t.Helper()
	pc.qmpRun(t, "device_del", map[string]any{"id": padStick})
	pc.unplugged = true
	pulled := time.Now()
	pc.waitFor(t, regexp.MustCompile(`the pad was unplugged: stopping the machine`), time.Minute)
	t.Logf("the machine was stopped %.1f s after the pad was pulled out", time.Since(pulled).Seconds())
	pc.waitFor(t, regexp.MustCompile(`soulpad-host: the pad was unplugged`), time.Minute)
	pc.waitExit(t, 2*time.Minute)

	pc = boot(t, dir, "replug", img, keyDisk, pcDisk)
	lost := pc.waitFor(t, regexp.MustCompile(`ended without suspending \(crash, kill or power loss\)[^\n]*`), 8*time.Minute)
	t.Logf("plugged in again: %s", lost[0])
	pc.waitFor(t, regexp.MustCompile(`resumed `+regexp.QuoteMeta(point)), 5*time.Minute)
	if first := pc.waitCounter(t, 1, 5*time.Minute); first < last {
		t.Fatalf("after the unplug the machine resumed with its counter at %d, below %d where point %s left it", first, last, point)
	}
	pc.powerButton(t)
	m := pc.waitFor(t, regexp.MustCompile(`sealed (\S+),`), 5*time.Minute)
	pc.waitExit(t, 2*time.Minute)
	return m[1]
}
