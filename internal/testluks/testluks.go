// Package testluks reads a LUKS2 vault with cryptsetup alone, for tests
// that check what crypt-luks wrote without trusting crypt-luks.
package testluks

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Run runs a command with stdin and fails the test on error; it returns
// the trimmed output.
func Run(t testing.TB, stdin []byte, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// WithLoop runs f with a loop device over file; cryptsetup's offline
// re-encryption wants a block device.
func WithLoop(t testing.TB, file string, f func(dev string)) {
	t.Helper()
	dev := Run(t, nil, "losetup", "--find", "--show", file)
	defer Run(t, nil, "losetup", "-d", dev)
	f(dev)
}

// Decrypt decrypts a copy of container in place with cryptsetup alone
// (`reencrypt --decrypt`, no device-mapper needed: it moves the plaintext
// to offset 0) and mounts the file system inside read-only; the mount goes with
// the test.
func Decrypt(t testing.TB, container string, pass []byte) string {
	t.Helper()
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.img")
	Run(t, nil, "cp", "--sparse=always", container, plain)
	WithLoop(t, plain, func(dev string) {
		Run(t, pass, "cryptsetup", "reencrypt", "--decrypt", "--header", filepath.Join(dir, "header"), "--batch-mode", "--key-file", "-", dev)
	})
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o700)
	opts := "loop,ro"
	if typ, _ := exec.Command("blkid", "-o", "value", "-s", "TYPE", plain).Output(); strings.TrimSpace(string(typ)) == "xfs" {
		opts += ",nouuid" // the original may be mounted: same UUID
	}
	Run(t, nil, "mount", "-o", opts, plain, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	return mnt
}
