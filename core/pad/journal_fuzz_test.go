package pad

import (
	"bytes"
	"strings"
	"testing"
)

// A line longer than an entry may be (a damaged file) is skipped and the
// entries after it are still read.
func TestJournalSkipsAnOverlongLine(t *testing.T) {
	in := `{"stage":"boot","event":"start"}` + "\n" + strings.Repeat("x", maxEntry+10) + "\n" + `{"stage":"run","event":"end"}` + "\n"
	es, err := parseJournal(strings.NewReader(in))
	if err != nil || len(es) != 2 || es[1].Stage != "run" {
		t.Fatalf("entries %+v, %v; want boot and run", es, err)
	}
}

func FuzzParseJournal(f *testing.F) {
	f.Add([]byte(`{"stage":"boot","event":"start","fields":{"point":"x"}}` + "\n" + `garbage` + "\n"))
	f.Add([]byte("\n\n{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := parseJournal(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if len(es) > bytes.Count(b, []byte("\n"))+1 {
			t.Fatalf("%d entries from %d lines", len(es), bytes.Count(b, []byte("\n"))+1)
		}
	})
}
