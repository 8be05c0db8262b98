package sdk

import (
	"errors"
	"strings"
	"testing"
)

type testConfig struct {
	Repository string   `json:"repository"`
	Fill       bool     `json:"fill"`
	Threads    int      `json:"argon2_threads"`
	Ratio      float64  `json:"ratio"`
	Dirs       []string `json:"dirs"`
}

func TestDecodeSaysWhatIsWrong(t *testing.T) {
	for in, want := range map[string][]string{
		`{"repositry": "/r"}`:        {`unknown key "repositry"`, `did you mean "repository"?`, "valid keys: argon2_threads, dirs, fill, ratio, repository"},
		`{"fill": "maybe"}`:          {`key "fill": want true or false, not string`},
		`{"argon2_threads": "lots"}`: {`key "argon2_threads": want a whole number, not string`},
		`{"argon2_threads": [1]}`:    {`want a whole number, not array`},
		`{"zzzzzz": 1}`:              {`unknown key "zzzzzz"; valid keys:`},
		`[1, 2]`:                     {"not an object"},
	} {
		var c testConfig
		err := ConfigureRequest{Config: []byte(in)}.Decode(&c)
		if err == nil || !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", in, err)
			continue
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", in, err, w)
			}
		}
		if strings.Contains(in, "zzzz") && strings.Contains(err.Error(), "did you mean") {
			t.Errorf("%s: %q guesses a key far from it", in, err)
		}
	}
}

// Strings, as environment variables give them, become the key's type.
func TestDecodeTakesStringsForTypedKeys(t *testing.T) {
	var c testConfig
	in := `{"repository": "007", "fill": "true", "argon2_threads": " 4", "ratio": "0.5", "dirs": "a, b,,c"}`
	if err := (ConfigureRequest{Config: []byte(in)}).Decode(&c); err != nil {
		t.Fatal(err)
	}
	if c.Repository != "007" || !c.Fill || c.Threads != 4 || c.Ratio != 0.5 || strings.Join(c.Dirs, "|") != "a|b|c" {
		t.Fatalf("decoded %+v", c)
	}
}

func TestNearest(t *testing.T) {
	cands := []string{"vmm-qemu", "vmm-libvirt", "crypt-luks", "repository"}
	for in, want := range map[string]string{"vmm-qmeu": "vmm-qemu", "vmm-qemu": "vmm-qemu", "crypt-lusk": "crypt-luks", "repositry": "repository", "backup-foo": "", "x": ""} {
		if got := Nearest(in, cands); got != want {
			t.Errorf("Nearest(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"repository": "r", "fill": "1", "dirs": "a,b"}`))
	f.Add([]byte(`{"repositry": 3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c testConfig
		if err := (ConfigureRequest{Config: b}).Decode(&c); err != nil && !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("%q: %v does not wrap ErrInvalidConfig", b, err)
		}
	})
}
