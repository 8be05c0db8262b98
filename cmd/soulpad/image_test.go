package main

import "testing"

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
