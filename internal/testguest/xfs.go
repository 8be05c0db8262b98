package testguest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// XFSDir returns a fresh directory on an XFS file system with reflink,
// as crypt-luks makes inside a vault of 512 MiB or more: a sparse image
// of size bytes, loop-mounted for the test and unmounted after it. It
// skips the test (fails it in CI) without root or mkfs.xfs.
func XFSDir(t testing.TB, size int64) string {
	t.Helper()
	miss := func(why string) {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s; `make test` installs what is needed and runs as root", why)
		}
		t.Skip(why)
	}
	if _, err := exec.LookPath("mkfs.xfs"); err != nil {
		miss("mkfs.xfs is missing (scripts/deps.sh installs xfsprogs)")
	}
	if os.Geteuid() != 0 {
		miss("a loop mount needs root")
	}
	base := t.TempDir()
	img := filepath.Join(base, "xfs.img")
	f, err := os.Create(img)
	if err == nil {
		err = f.Truncate(size)
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.xfs", "-q", "-f", "-K", "-m", "reflink=1", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs: %v: %s", err, out)
	}
	mnt := filepath.Join(base, "mnt") // base is the test's own
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount the XFS image: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("unmount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}
