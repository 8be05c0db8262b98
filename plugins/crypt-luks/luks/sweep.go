package luks

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"
)

// mount is one line of /proc/self/mountinfo.
type mount struct{ point, fstype, source string }

func mounts() []mount {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var ms []mount
	for _, l := range strings.Split(string(b), "\n") {
		left, right, ok := strings.Cut(l, " - ")
		lf, rf := strings.Fields(left), strings.Fields(right)
		if !ok || len(lf) < 5 || len(rf) < 2 {
			continue
		}
		ms = append(ms, mount{point: unescapeMount(lf[4]), fstype: rf[0], source: unescapeMount(rf[1])})
	}
	return ms
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// sweepDead cleans up after a crypt-luks process that was killed with a
// vault open: its payload's FUSE mount is left dead ("transport endpoint
// is not connected"), with a loop device and an ext4 mount over it that
// can no longer reach the container. Those go (lazily unmounted: nothing
// more can be written through them anyway). Live payloads, served by
// another crypt-luks for another pad, are left alone.
func sweepDead(log hclog.Logger) {
	all := mounts()
	for _, m := range all {
		if m.fstype != "fuse.soulpad-luks" {
			continue
		}
		if _, err := os.Stat(m.point); !errors.Is(err, syscall.ENOTCONN) {
			continue
		}
		volume := filepath.Join(m.point, "volume")
		backing, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
		for _, bf := range backing {
			b, err := os.ReadFile(bf)
			if err != nil || strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)") != volume {
				continue
			}
			dev := "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(bf)))
			for _, e := range all {
				if e.source == dev {
					if err := syscall.Unmount(e.point, syscall.MNT_DETACH); err == nil {
						log.Warn("unmounted a vault left by a crypt-luks that ended without locking it; what it had not written is lost", "mount", e.point, "device", dev)
					}
				}
			}
			_ = exec.Command("losetup", "-d", dev).Run()
		}
		if err := syscall.Unmount(m.point, syscall.MNT_DETACH); err == nil {
			_ = os.Remove(m.point)
			log.Warn("removed the dead payload mount of a crypt-luks that ended without locking its vault", "mount", m.point)
		}
	}
}
