package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/soulpad/soulpad/internal/testcli"
)

func TestParseSizeMiB(t *testing.T) {
	for in, want := range map[string]int64{"8G": 8192, "8GiB": 8192, "8gb": 8192, "2048M": 2048, "2048": 2048, " 1T ": 1 << 20, "512MiB": 512} {
		if got, err := parseSizeMiB(in); err != nil || got != want {
			t.Errorf("parseSizeMiB(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "G", "-1G", "0", "8X", "1.5G", "99999999999T", "8 G"} {
		if got, err := parseSizeMiB(in); err == nil {
			t.Errorf("parseSizeMiB(%q) = %d, want an error", in, got)
		}
	}
}

func FuzzParseSizeMiB(f *testing.F) {
	for _, s := range []string{"8G", "512M", "2048", "1TiB", "", "-3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSizeMiB(s)
		if err == nil && (n <= 0 || n > 1<<40) {
			t.Fatalf("parseSizeMiB(%q) = %d", s, n)
		}
	})
}

// Wrong options are refused before a pad is made or anything is built.
func TestImageRefusesBadOptionsFirst(t *testing.T) {
	e := testcli.Setup(t)
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"image"}, "--out FILE is required"},
		{[]string{"image", "--out", dir}, "is not a regular file"},
		{[]string{"image", "--out", filepath.Join(dir, "p.img"), "--size", "10M"}, "at least 512 MiB"},
		{[]string{"image", "--out", filepath.Join(dir, "p.img"), "--size", "lots"}, "want a size such as 8G"},
		{[]string{"image", "--out", filepath.Join(dir, "p.img"), "--console", "tty9"}, `--console "tty9"`},
		{[]string{"image", "--out", filepath.Join(dir, "p.img"), "--key-label", "a b"}, `--key-label "a b"`},
		{[]string{"image", "--out", filepath.Join(dir, "p.img"), "--key-label", "K;reboot"}, `--key-label "K;reboot"`},
		{[]string{"image", "--out", filepath.Join(dir, "p.img"), "--key-label", "K$(id)"}, `--key-label "K$(id)"`},
	} {
		_, errOut, code := e.Run(t, c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errOut, c.want)
		}
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("a refused image left %v", left)
	}
	if _, err := os.Stat(e.Pad); err == nil {
		t.Error("a refused image made a pad")
	}
}
