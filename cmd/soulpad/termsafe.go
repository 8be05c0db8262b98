package main

import (
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// termSafe wraps w so that text from the pad, its journal, a store or
// another PC (a host name, a message) cannot drive the terminal: control
// characters but newline and tab, and bytes that are not UTF-8, are
// written as '?'. JSON output needs none of this (encoding/json escapes
// them).
func termSafe(w io.Writer) io.Writer { return safeWriter{w} }

type safeWriter struct{ w io.Writer }

func (s safeWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(s.w, cleanText(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// cleanText is s with what a terminal would act on made visible as '?'.
func cleanText(s string) string {
	clean := true
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || (unicode.IsControl(r) && r != '\n' && r != '\t') {
			clean = false
			break
		}
		i += n
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || (unicode.IsControl(r) && r != '\n' && r != '\t') {
			b.WriteByte('?')
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
