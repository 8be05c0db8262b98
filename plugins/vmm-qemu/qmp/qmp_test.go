package qmp

import (
	"bufio"
	"errors"
	"strings"
	"testing"
)

func TestReadLineBounds(t *testing.T) {
	r := bufio.NewReaderSize(strings.NewReader(`{"return": {}}`+"\n"+strings.Repeat("x", MaxLine+1)+"\n"), 64<<10)
	if l, err := readLine(r); err != nil || string(l) != `{"return": {}}`+"\n" {
		t.Fatalf("%q %v", l, err)
	}
	if _, err := readLine(r); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("a 16 MiB+ message: %v", err)
	}
}

func FuzzReadLine(f *testing.F) {
	f.Add([]byte("{\"QMP\": {}}\n{\"event\": \"STOP\"}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReaderSize(strings.NewReader(string(b)), 16)
		total := 0
		for {
			l, err := readLine(r)
			total += len(l)
			if err != nil {
				break
			}
			if len(l) == 0 || l[len(l)-1] != '\n' {
				t.Fatalf("line %q without its newline", l)
			}
		}
		if total != len(b) {
			t.Fatalf("read %d of %d bytes", total, len(b))
		}
	})
}
