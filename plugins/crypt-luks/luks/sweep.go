package luks

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/soulpad/soulpad/sdk/mountinfo"
)

// sweepDead cleans up after a crypt-luks process that was killed with a
// vault open: its payload's FUSE mount is left dead ("transport endpoint
// is not connected"), with a loop device and an ext4 mount over it that
// can no longer reach the container. Those go (lazily unmounted: nothing
// more can be written through them anyway). Live payloads, served by
// another crypt-luks for another pad, are left alone.
func sweepDead(log hclog.Logger) {
	all := mountinfo.Mounts()
	for _, m := range all {
		if m.FSType != "fuse.soulpad-luks" {
			continue
		}
		if _, err := os.Stat(m.Point); !errors.Is(err, syscall.ENOTCONN) {
			continue
		}
		volume := filepath.Join(m.Point, "volume")
		backing, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
		for _, bf := range backing {
			b, err := os.ReadFile(bf)
			if err != nil || strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)") != volume {
				continue
			}
			dev := "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(bf)))
			for _, e := range all {
				if e.Source == dev {
					if err := syscall.Unmount(e.Point, syscall.MNT_DETACH); err == nil {
						log.Warn("unmounted a vault left by a crypt-luks that ended without locking it; what it had not written is lost", "mount", e.Point, "device", dev)
					}
				}
			}
			_ = exec.Command("losetup", "-d", dev).Run()
		}
		if err := syscall.Unmount(m.Point, syscall.MNT_DETACH); err == nil {
			_ = os.Remove(m.Point)
			log.Warn("removed the dead payload mount of a crypt-luks that ended without locking its vault", "mount", m.Point)
		}
	}
}
