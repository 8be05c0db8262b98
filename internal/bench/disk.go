package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/ownerpid"
)

// Speed is a pad's throughput: a USB generation, or the disk as it is.
type Speed struct {
	Name string
	// BytesPerSecond caps reads and writes (0: not capped).
	BytesPerSecond uint64
}

// Speeds are the pads the bench knows: USB 2.0 as SoulPad measured it
// (about 35 MB/s), USB 3 (about 400 MB/s), and unthrottled.
var Speeds = map[string]Speed{
	"usb2": {"usb2", 35 << 20},
	"usb3": {"usb3", 400 << 20},
	"none": {"none", 0},
}

// PadDisk is a pad on a file system of its own on a loop device, which
// can be throttled and unplugged (unmounted, so nothing of it stays
// cached) like a USB disk.
type PadDisk struct {
	Image, Dev, MajMin, Mount string
	FS                        string
	throttled                 func() error
}

// NewPadDisk makes a sizeMiB image in dir with XFS (reflink, for mapped
// memory) or ext4, on a loop device, mounted at dir/mnt. Needs root.
func NewPadDisk(dir string, sizeMiB int64) (*PadDisk, error) {
	d := &PadDisk{Image: filepath.Join(dir, "pad.img"), Mount: filepath.Join(dir, "mnt")}
	if err := os.MkdirAll(d.Mount, 0o700); err != nil {
		return nil, err
	}
	f, err := os.Create(d.Image)
	if err != nil {
		return nil, err
	}
	err = f.Truncate(sizeMiB << 20)
	f.Close()
	if err != nil {
		return nil, err
	}
	d.FS = "ext4"
	mkfs := []string{"mkfs.ext4", "-q", "-F", d.Image}
	if _, err := exec.LookPath("mkfs.xfs"); err == nil {
		d.FS = "xfs"
		mkfs = []string{"mkfs.xfs", "-q", "-f", "-m", "reflink=1", d.Image}
	}
	if out, err := exec.Command(mkfs[0], mkfs[1:]...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s: %v: %s", mkfs[0], err, out)
	}
	out, err := exec.Command("losetup", "-f", "--show", d.Image).Output()
	if err != nil {
		return nil, fmt.Errorf("losetup: %w (the bench needs root for its pad's loop device)", err)
	}
	d.Dev = strings.TrimSpace(string(out))
	out, err = exec.Command("lsblk", "-dno", "MAJ:MIN", d.Dev).Output()
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("lsblk %s: %w", d.Dev, err)
	}
	d.MajMin = strings.TrimSpace(string(out))
	if err := d.Plug(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Plug mounts the pad's file system.
func (d *PadDisk) Plug() error {
	if out, err := exec.Command("mount", "-o", "noatime", d.Dev, d.Mount).CombinedOutput(); err != nil {
		return fmt.Errorf("mount %s: %v: %s", d.Dev, err, out)
	}
	return nil
}

// Unplug unmounts it: what was written is on the disk and nothing of it
// stays in the page cache.
func (d *PadDisk) Unplug() error {
	if out, err := exec.Command("umount", d.Mount).CombinedOutput(); err != nil {
		return fmt.Errorf("umount %s: %v: %s", d.Mount, err, out)
	}
	return nil
}

// Throttle caps the loop device's reads and writes at s (0: no cap).
func (d *PadDisk) Throttle(s Speed) error {
	if d.throttled != nil {
		if err := d.throttled(); err != nil {
			return err
		}
		d.throttled = nil
	}
	if s.BytesPerSecond == 0 {
		return nil
	}
	undo, err := throttle(d.MajMin, s.BytesPerSecond)
	if err != nil {
		return err
	}
	d.throttled = undo
	return nil
}

// Close unthrottles, unmounts, detaches and removes the image.
func (d *PadDisk) Close() error {
	var errs []error
	if d.throttled != nil {
		errs = append(errs, d.throttled())
	}
	// A mount still busy (a process of the cell's not yet gone) is tried
	// again, then detached lazily: never left mounted on a deleted image.
	if exec.Command("umount", d.Mount).Run() != nil {
		time.Sleep(time.Second)
		if exec.Command("umount", d.Mount).Run() != nil {
			errs = append(errs, exec.Command("umount", "-l", d.Mount).Run())
		}
	}
	if d.Dev != "" {
		errs = append(errs, exec.Command("losetup", "-d", d.Dev).Run())
	}
	errs = append(errs, os.Remove(d.Image))
	return errors.Join(errs...)
}

// throttle caps device majMin's reads and writes at bps, for every
// process: with cgroup v1 in the root blkio group (which the kernel's
// writeback also runs in), with cgroup v2 in io.max of a group the bench
// moves itself into (its children follow; v2 charges writeback to it).
func throttle(majMin string, bps uint64) (func() error, error) {
	const v1 = "/sys/fs/cgroup/blkio"
	if _, err := os.Stat(filepath.Join(v1, "blkio.throttle.write_bps_device")); err == nil {
		set := func(v uint64) error {
			for _, f := range []string{"blkio.throttle.write_bps_device", "blkio.throttle.read_bps_device"} {
				if err := os.WriteFile(filepath.Join(v1, f), []byte(fmt.Sprintf("%s %d", majMin, v)), 0); err != nil {
					return fmt.Errorf("throttle %s: %w", majMin, err)
				}
			}
			return nil
		}
		if err := set(bps); err != nil {
			return nil, err
		}
		return func() error { return set(0) }, nil
	}
	const v2 = "/sys/fs/cgroup"
	if _, err := os.Stat(filepath.Join(v2, "cgroup.controllers")); err != nil {
		return nil, errors.New("no cgroup blkio (v1) or io (v2) controller to throttle the pad with")
	}
	_ = os.WriteFile(filepath.Join(v2, "cgroup.subtree_control"), []byte("+io"), 0)
	g := filepath.Join(v2, "soulpad-bench")
	if err := os.MkdirAll(g, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(g, "io.max"), []byte(fmt.Sprintf("%s rbps=%d wbps=%d", majMin, bps, bps)), 0); err != nil {
		return nil, fmt.Errorf("throttle %s: %w", majMin, err)
	}
	if err := os.WriteFile(filepath.Join(g, "cgroup.procs"), []byte(fmt.Sprint(os.Getpid())), 0); err != nil {
		return nil, fmt.Errorf("throttle: join %s: %w", g, err)
	}
	return func() error {
		_ = os.WriteFile(filepath.Join(v2, "cgroup.procs"), []byte(fmt.Sprint(os.Getpid())), 0)
		return os.WriteFile(filepath.Join(g, "io.max"), []byte(majMin+" rbps=max wbps=max"), 0)
	}, nil
}

// pidFile in a cell's directory names the bench that owns it.
const pidFile = "bench.pid"

// SweepStale undoes what a bench that was killed left in dir: its pads'
// mounts, loop devices, throttles and images.
func SweepStale(dir string) []string {
	var swept []string
	cells, _ := filepath.Glob(filepath.Join(dir, "soulpad-bench-*"))
	for _, c := range cells {
		// Only a cell this user made (a real directory of its own, closed
		// to others): /tmp is everyone's, and another user could plant a
		// look-alike, or a symlink, for root to unmount and detach.
		if sdk.CheckPrivateDir(c) != nil || !ownerpid.Orphaned(filepath.Join(c, pidFile)) {
			continue
		}
		d := &PadDisk{Image: filepath.Join(c, "pad.img"), Mount: filepath.Join(c, "mnt")}
		_ = exec.Command("umount", d.Mount).Run()
		if out, err := exec.Command("losetup", "-j", d.Image).Output(); err == nil {
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				dev, _, ok := strings.Cut(l, ":")
				if !ok {
					continue
				}
				if mm, err := exec.Command("lsblk", "-dno", "MAJ:MIN", dev).Output(); err == nil {
					if undo, err := throttle(strings.TrimSpace(string(mm)), 1); err == nil {
						_ = undo()
					}
				}
				_ = exec.Command("losetup", "-d", dev).Run()
			}
		}
		if os.RemoveAll(c) == nil {
			swept = append(swept, c)
		}
	}
	return swept
}
