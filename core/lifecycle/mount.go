package lifecycle

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// mounted reports whether dir is a mount point (from /proc/self/mountinfo).
func mounted(dir string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	dir = filepath.Clean(dir)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMount(fields[4]) == dir {
			return true
		}
	}
	return false
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// detachMount makes sure nothing of a vault stays mounted at dir after
// its crypt plugin is gone: every mount stacked there is detached lazily
// (a FUSE daemon then ends on its own), and dir is removed. As root this
// is umount2(MNT_DETACH); otherwise fusermount3 -uz.
func detachMount(dir string) error {
	var errs []error
	for i := 0; i < 8 && mounted(dir); i++ {
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
