package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A key or passphrase file may come from a stick someone handed over:
// a device, a pipe or a huge file is refused before it is read whole.
func TestSecretFilesAreBounded(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "soulpad.key")
	os.WriteFile(ok, []byte("a key of some bytes"), 0o600)
	if b, err := readSecretFile(ok, maxKeyFile); err != nil || string(b) != "a key of some bytes" {
		t.Fatalf("a key file: %q, %v", b, err)
	}
	big := filepath.Join(dir, "big.key")
	f, _ := os.Create(big)
	f.Truncate(maxKeyFile + 1)
	f.Close()
	if _, err := readSecretFile(big, maxKeyFile); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("a key file of %d bytes: %v; want it refused", maxKeyFile+1, err)
	}
	if _, err := readSecretFile("/dev/zero", maxKeyFile); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("/dev/zero as a key file: %v; want it refused", err)
	}
}
