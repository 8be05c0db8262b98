package testcli

import (
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps what Errorf says.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(f string, a ...any) {
	r.errs = append(r.errs, f)
}

func TestCheckOwedCatchesATwiceSaidMessageAndAnUndocumentedExit(t *testing.T) {
	for _, c := range []struct {
		name           string
		stdout, stderr string
		code           int
		want           string
	}{
		{"once", "▸ unlock\n  unlock failed after 0.7 s\n", "soulpad: crypt-luks: wrong passphrase or key file\n", 5, ""},
		{"twice", "  unlock failed: crypt-luks: wrong passphrase or key file\n", "soulpad: crypt-luks: wrong passphrase or key file\n", 5, "more than once"},
		{"undocumented", "", "soulpad: something broke somewhere in here\n", 9, "not in the documented table"},
		{"killed", "", "", -1, "not in the documented table"},
		{"short message", "busy\n", "soulpad: busy\n", 3, ""},
	} {
		r := &recorder{TB: t}
		CheckOwed(r, []string{"run"}, c.stdout, c.stderr, c.code)
		got := strings.Join(r.errs, "|")
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("%s: CheckOwed said %q; want %q", c.name, got, c.want)
		}
	}
}
