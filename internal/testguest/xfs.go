package testguest

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/soulpad/soulpad/sdk/ownerpid"
)

// ownerFile, beside an XFSDir image, holds the test process's pid.
const ownerFile = "xfs.owner"

// sweepXFSDirs unmounts and removes the XFSDir mounts of test processes
// that are gone (killed, or timed out), whose cleanup never ran.
func sweepXFSDirs() {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || fields[2] != "xfs" || filepath.Base(fields[1]) != "mnt" {
			continue
		}
		base := filepath.Dir(fields[1])
		if !ownerpid.Orphaned(filepath.Join(base, ownerFile)) {
			continue
		}
		if exec.Command("umount", fields[1]).Run() == nil {
			_ = os.RemoveAll(base)
		}
	}
}

// XFSDir returns a fresh directory on an XFS file system with reflink,
// as crypt-luks makes inside a vault of 512 MiB or more: a sparse image
// of size bytes, loop-mounted for the test and unmounted after it (or,
// when the test process was killed, by the next XFSDir). It
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
	sweepXFSDirs()
	base := t.TempDir()
	if err := ownerpid.Mark(filepath.Join(base, ownerFile)); err != nil {
		t.Fatal(err)
	}
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
