package main

import (
	"bytes"
	"testing"
)

// What a hostile host name or journal line carries reaches the terminal
// as '?', and ordinary text, tabs and newlines as they are.
func TestTermSafeDefusesEscapes(t *testing.T) {
	for in, want := range map[string]string{
		"pc-7\tok\n":                   "pc-7\tok\n",
		"héllo wörld":                  "héllo wörld",
		"evil\x1b]0;owned\x07host":     "evil?]0;owned?host",
		"csi\u009b2Jx":                 "csi?2Jx",
		"bad\xffutf8\r":                "bad?utf8?",
		"\x1b[2J\x1b[1;1Hfake prompt$": "?[2J?[1;1Hfake prompt$",
	} {
		var b bytes.Buffer
		if _, err := termSafe(&b).Write([]byte(in)); err != nil || b.String() != want {
			t.Errorf("termSafe(%q) = %q, %v; want %q", in, b.String(), err, want)
		}
	}
}

func FuzzCleanText(f *testing.F) {
	f.Add("evil\x1b]0;owned\x07host")
	f.Fuzz(func(t *testing.T, s string) {
		out := cleanText(s)
		for _, c := range []byte(out) {
			if c < 0x20 && c != '\n' && c != '\t' || c == 0x7f {
				t.Fatalf("cleanText(%q) = %q keeps control byte %#x", s, out, c)
			}
		}
	})
}
