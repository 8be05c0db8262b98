package lifecycle

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/sdk/mountinfo"
)

// detachMount makes sure nothing of a vault stays mounted at dir after
// its crypt plugin is gone: every mount stacked there is detached lazily
// (a FUSE daemon then ends on its own), and dir is removed. As root this
// is umount2(MNT_DETACH); otherwise fusermount3 -uz.
func detachMount(dir string) error {
	var errs []error
	for i := 0; i < 8 && mountinfo.IsMountPoint(dir); i++ {
		err := unix.Unmount(dir, unix.MNT_DETACH)
		if errors.Is(err, unix.EPERM) {
			if out, ferr := exec.Command("fusermount3", "-u", "-z", dir).CombinedOutput(); ferr != nil {
				err = fmt.Errorf("fusermount3 -u -z %s: %v: %s", dir, ferr, strings.TrimSpace(string(out)))
			} else {
				err = nil
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("detach the vault's plaintext at %s: %w", dir, err))
			break
		}
	}
	if len(errs) == 0 {
		_ = os.Remove(dir)
	}
	return errors.Join(errs...)
}

// sweepMountDirs removes the empty mount directories that sessions killed
// outright left in the temp directory (their plugins locked the vault,
// but nobody removed the directory): this pad's at once (its lock is
// held, so none is in use), other pads' once they are a minute old (one
// younger may be a session's being set up). A directory that is still a
// mount point is left alone.
func sweepMountDirs(padID string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "soulpad-*-*"))
	for _, d := range dirs {
		id, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), "soulpad-"), "-")
		if !pad.ValidID(id) {
			continue
		}
		fi, err := os.Lstat(d)
		if err != nil || !fi.IsDir() || mountinfo.IsMountPoint(d) || (id != padID && time.Since(fi.ModTime()) < time.Minute) {
			continue
		}
		_ = os.Remove(d) // only if empty
	}
}
