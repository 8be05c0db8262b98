package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("source broke") }

func TestWriteReplacesWholeOrNotAtAll(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.json")
	if err := WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A source that fails half-way leaves the old file and no temp file.
	if err := Write(p, 0o600, time.Time{}, failing{}); err == nil || !strings.Contains(err.Error(), "source broke") {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Fatalf("the old file became %q", b)
	}
	mtime := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := Write(p, 0o640, mtime, strings.NewReader("new")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(mtime) {
		t.Fatalf("stat: %v %v %v", fi.Mode(), fi.ModTime(), err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Fatalf("content %q", b)
	}
	if err := Copy(p, filepath.Join(dir, "g"), 0o600); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("left behind: %v", ents)
	}
	// Two writers at once get unique temp names: neither sees the other's.
	done := make(chan error, 2)
	for _, s := range []string{"aaaa", "bbbb"} {
		go func(s string) { done <- WriteFile(p, []byte(strings.Repeat(s, 1<<16)), 0o600) }(s)
	}
	for i := 0; i < 2; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(p)
	if len(b) != 4<<16 || strings.Count(string(b), string(b[:1])) != len(b) {
		t.Fatal("a mixed file")
	}
}
