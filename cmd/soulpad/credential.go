package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/lifecycle"
	"github.com/soulpad/soulpad/sdk/crypt"
)

type credFlags struct {
	passphraseFile string
	keyFile        string
	// label names what the terminal prompt asks for (default "Passphrase").
	label string
}

// check refuses, before any stage runs, a --passphrase-file or
// --key-file (or the config's unlock file) that is not there: a wrong
// argument, exit status 2.
func (f *credFlags) check(cfg *config.Config) error {
	for _, c := range [][2]string{{"--key-file", f.keyFile}, {"--passphrase-file", f.passphraseFile},
		{"unlock.key_file", cfg.Unlock.KeyFile}, {"unlock.passphrase_file", cfg.Unlock.PassphraseFile}} {
		if c[1] == "" {
			continue
		}
		if st, err := os.Stat(c[1]); err != nil {
			return usageErr(fmt.Errorf("%s %s: %w", c[0], c[1], errors.Unwrap(err)))
		} else if !st.Mode().IsRegular() {
			return usageErr(fmt.Errorf("%s %s is not a regular file", c[0], c[1]))
		}
	}
	return nil
}

// credential returns the credential source: --key-file, --passphrase-file,
// the config's unlock block, or a terminal prompt without echo. Never argv.
func (f *credFlags) credential(cfg *config.Config, confirm bool) lifecycle.CredentialFunc {
	return func(context.Context) (crypt.Credential, error) {
		keyFile := firstNonEmpty(f.keyFile, cfg.Unlock.KeyFile)
		passFile := firstNonEmpty(f.passphraseFile, cfg.Unlock.PassphraseFile)
		switch {
		case keyFile != "":
			b, err := readSecretFile(keyFile, maxKeyFile)
			if err != nil {
				return crypt.Credential{}, fmt.Errorf("key file: %w", err)
			}
			if len(b) == 0 {
				return crypt.Credential{}, fmt.Errorf("key file %s is empty", keyFile)
			}
			return crypt.Credential{KeyFile: b}, nil
		case passFile != "":
			b, err := readSecretFile(passFile, maxPassphraseFile)
			if err != nil {
				return crypt.Credential{}, fmt.Errorf("passphrase file: %w", err)
			}
			b = bytes.TrimRight(b, "\r\n")
			if len(b) == 0 {
				return crypt.Credential{}, fmt.Errorf("passphrase file %s is empty", passFile)
			}
			return crypt.Credential{Passphrase: b}, nil
		}
		label := f.label
		if label == "" {
			label = "Passphrase"
		}
		return prompt(label, confirm)
	}
}

// tries is how often a wrong credential may be given: three times at a
// terminal prompt (as cryptsetup does), once from a file.
func (f *credFlags) tries(cfg *config.Config) int {
	if firstNonEmpty(f.keyFile, cfg.Unlock.KeyFile, f.passphraseFile, cfg.Unlock.PassphraseFile) != "" {
		return 1
	}
	return 3
}

func prompt(label string, confirm bool) (crypt.Credential, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil || !term.IsTerminal(int(tty.Fd())) {
		return crypt.Credential{}, errors.New("no terminal to ask for the passphrase on: use --passphrase-file FILE or --key-file FILE (or unlock.passphrase_file in the config)")
	}
	defer tty.Close()
	fmt.Fprint(tty, label+": ")
	p, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	if err != nil {
		return crypt.Credential{}, fmt.Errorf("read passphrase: %w", err)
	}
	if confirm {
		fmt.Fprint(tty, label+" again: ")
		q, err := term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(tty)
		if err != nil {
			return crypt.Credential{}, fmt.Errorf("read passphrase: %w", err)
		}
		same := bytes.Equal(p, q)
		for i := range q {
			q[i] = 0
		}
		if !same {
			return crypt.Credential{}, errors.New("the two passphrases differ; nothing was created")
		}
	}
	return crypt.Credential{Passphrase: p}, nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// The largest key file (cryptsetup's own limit) and passphrase file read:
// a file on a stick someone handed over may be anything.
const (
	maxKeyFile        = 8 << 20
	maxPassphraseFile = 64 << 10
)

// readSecretFile reads a key or passphrase file: a regular file (not a
// device or a pipe that never ends) of at most max bytes.
func readSecretFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%v)", path, st.Mode().Type())
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		clear(b)
		return nil, fmt.Errorf("%s is larger than %s, more than a key or passphrase file holds", path, lifecycle.HumanBytes(max))
	}
	return b, nil
}
