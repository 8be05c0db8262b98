package vmm

import (
	"testing"
	"time"
)

func TestTimerMarksConsecutivePhases(t *testing.T) {
	tm := NewTimer()
	time.Sleep(20 * time.Millisecond)
	tm.Mark("stop")
	tm.Mark("state")
	ps := tm.Phases()
	if len(ps) != 2 || ps[0].Name != "stop" || ps[1].Name != "state" {
		t.Fatalf("phases %+v; want stop then state", ps)
	}
	if ps[0].Seconds < 0.02 || ps[1].Seconds >= ps[0].Seconds {
		t.Fatalf("phases %+v: stop took the 20 ms sleep, state almost nothing", ps)
	}
	if got := FormatPhases([]Phase{{"stop", 0.014}, {"state", 1.5}}); got != "stop 0.01 s, state 1.50 s" {
		t.Fatalf("FormatPhases = %q", got)
	}
}
