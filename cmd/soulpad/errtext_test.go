package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/soulpad/soulpad/internal/testcli"
	"github.com/soulpad/soulpad/sdk"
)

// A message that says what went wrong in words does not end with the
// kind that sets the exit status; a short one keeps it, as its words
// need it.
func TestErrorTextDropsTheKindWhereTheWordsSayIt(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("crypt-luks: a passphrase needs at least 20 characters (or use a key file): %w", sdk.ErrInvalidArgument),
			"crypt-luks: a passphrase needs at least 20 characters (or use a key file)"},
		{fmt.Errorf("pad /x: no point starts with \"nosuch\": %w", sdk.ErrNotFound), "pad /x: no point starts with \"nosuch\""},
		{fmt.Errorf("machine soul: %w", sdk.ErrAlreadyExists), "machine soul: already exists"},
		// The text alone, without the kind, is left as it is.
		{errors.New("the store says no such key exists here: not found"), "the store says no such key exists here: not found"},
		{fmt.Errorf("store-s3: hank is checked out by pc-a since today: %w", sdk.ErrBusy), "store-s3: hank is checked out by pc-a since today"},
		{fmt.Errorf("wrong words twice over and again: %w: %w", sdk.ErrInvalidArgument, sdk.ErrNotFound), "wrong words twice over and again"},
	} {
		if got := errText(c.err); got != c.want {
			t.Errorf("errText(%q) = %q; want %q", c.err, got, c.want)
		}
	}
}

// soulpad bench's wrong flags are wrong arguments (exit 2) before any
// pad is made: an --os image that is not there, a size that is none, and
// a config whose machine boots no kernel without --os (which it names).
func TestBenchRefusesWrongFlagsFirst(t *testing.T) {
	e := testcli.Setup(t) // its machine boots no kernel
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--os", filepath.Join(t.TempDir(), "nosuch.qcow2")}, "--os: "},
		{[]string{"bench"}, "or measure a disk image with --os"},
	} {
		out, errOut, code := e.Run(t, c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) || out != "" {
			t.Errorf("soulpad %s: exit %d; want 2 and %q, nothing run:\n%s%s", strings.Join(c.args, " "), code, c.want, out, errOut)
		}
	}
}
