package vmm

import (
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/ownerpid"
)

// RunDir makes a private run directory for one machine under
// sdk.RuntimeDir (tmpfs, not the host's disk): its sockets and the
// guest's console log, which are the user's. prefix names the plugin's
// directories ("qemu-", "libvirt-"); those left by killed plugins are
// swept first (SweepRunDirs, with socket the one a live machine answers
// on).
func RunDir(prefix, socket string) (string, error) {
	base := sdk.RuntimeDir()
	SweepRunDirs(base, prefix, socket)
	dir, err := os.MkdirTemp(base, prefix)
	if err != nil {
		return "", err
	}
	if err := ownerpid.Mark(filepath.Join(dir, runDirOwner)); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// runDirOwner in a run directory holds the pid of the plugin that made it.
const runDirOwner = "owner.pid"

// SweepRunDirs removes the run directories base/prefix* of machines that
// are gone (their plugin was killed outright): nobody answers on their
// socket. A directory younger than a minute may be one being set up; it
// stays, unless the plugin that made it is gone too.
func SweepRunDirs(base, prefix, socket string) {
	dirs, _ := filepath.Glob(filepath.Join(base, prefix+"*"))
	for _, d := range dirs {
		fi, err := os.Lstat(d)
		if err != nil || !fi.IsDir() {
			continue
		}
		if time.Since(fi.ModTime()) < time.Minute && !ownerpid.Orphaned(filepath.Join(d, runDirOwner)) {
			continue
		}
		c, err := net.DialTimeout("unix", filepath.Join(d, socket), 200*time.Millisecond)
		if err == nil {
			c.Close()
			continue
		}
		_ = os.RemoveAll(d)
	}
}
