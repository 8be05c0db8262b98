package lifecycle

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// A step that outlasts its note's delay says what it does and how long it
// took; a quick one says nothing.
func TestSlowStepsSayWhatTheyDo(t *testing.T) {
	var mu sync.Mutex
	var said []string
	r := &runner{progress: func(f string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		said = append(said, fmt.Sprintf(f, a...))
	}}
	r.slowNote(time.Hour, "  quick")()
	if len(said) != 0 {
		t.Fatalf("a quick step said %q", said)
	}
	done := r.slowNote(10*time.Millisecond, "  merging old disk overlays")
	time.Sleep(100 * time.Millisecond)
	done()
	mu.Lock()
	defer mu.Unlock()
	if len(said) != 2 || !strings.HasPrefix(said[0], "  merging old disk overlays") || !strings.Contains(said[1], "done in") {
		t.Fatalf("a slow step said %q", said)
	}
}
