package vmm

import (
	"fmt"
	"strings"
	"time"
)

// Phase is one timed part of a suspend or resume ("stop", "state",
// "launch", "cont"…), reported so that the journal and the benchmarks can
// say where the time went.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// Timer cuts one operation into phases, each ended by Mark.
type Timer struct {
	last   time.Time
	phases []Phase
}

// NewTimer starts the first phase now.
func NewTimer() *Timer { return &Timer{last: time.Now()} }

// Mark ends the phase running since the last mark (or NewTimer) and names
// it; the next phase starts now.
func (t *Timer) Mark(name string) {
	now := time.Now()
	t.phases = append(t.phases, Phase{Name: name, Seconds: now.Sub(t.last).Seconds()})
	t.last = now
}

// Phases are the phases marked so far.
func (t *Timer) Phases() []Phase { return t.phases }

// FormatPhases prints phases as "stop 0.01 s, state 0.42 s".
func FormatPhases(ps []Phase) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.2f s", p.Name, p.Seconds)
	}
	return b.String()
}
