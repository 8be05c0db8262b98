package pad

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// An unplugged pad is a power cut: nothing more reaches it, so the
// machine is stopped at once rather than suspended into a vault that is
// gone. Its block device tells: when a USB disk is pulled out, the kernel
// removes the disk and its partitions from sysfs (and a disk that loses
// its medium reports a size of 0), while the file system on it may still
// answer reads from its cache for a while.

// sysfs is where the kernel's sysfs is mounted (a test's tree instead).
var sysfs = "/sys"

// DeviceWatch tells whether the block device holding a pad is still
// there.
type DeviceWatch struct {
	// Node is the device's sysfs directory (/sys/dev/block/M:m).
	Node string
}

// WatchDevice finds the block device holding dir. ok is false when dir
// is not on a block device sysfs knows (tmpfs, a network or FUSE file
// system, btrfs's anonymous devices): then nothing can be watched.
func WatchDevice(dir string) (w DeviceWatch, ok bool) {
	var st unix.Stat_t
	if unix.Stat(dir, &st) != nil {
		return DeviceWatch{}, false
	}
	node := filepath.Join(sysfs, fmt.Sprintf("dev/block/%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if _, err := os.Stat(filepath.Join(node, "size")); err != nil {
		return DeviceWatch{}, false
	}
	return DeviceWatch{Node: node}, true
}

// Gone reports a device that was removed (its sysfs node went away) or
// lost its medium (its size is 0). A read that fails for another reason
// is not taken for an unplug.
func (w DeviceWatch) Gone() bool {
	if w.Node == "" {
		return false
	}
	b, err := os.ReadFile(filepath.Join(w.Node, "size"))
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	if err != nil {
		_, serr := os.Stat(w.Node)
		return errors.Is(serr, fs.ErrNotExist)
	}
	return string(bytes.TrimSpace(b)) == "0"
}

// OnRemovableDisk reports whether dir is on a disk that can be in one
// PC at a time: a USB or SD disk, or one the kernel marks removable. A
// lock such a pad carries from another host was left by a session the
// pad was pulled out of, which cannot be writing to it any more (a pad on
// a network share could still be written by the other host).
func OnRemovableDisk(dir string) bool {
	w, ok := WatchDevice(dir)
	if !ok {
		return false
	}
	real, err := filepath.EvalSymlinks(w.Node)
	if err != nil {
		return false
	}
	if strings.Contains(real, "/usb") || strings.Contains(real, "/mmc_host/") {
		return true
	}
	// The disk's own node: a partition's parent directory.
	for _, d := range []string{real, filepath.Dir(real)} {
		if b, err := os.ReadFile(filepath.Join(d, "removable")); err == nil {
			return string(bytes.TrimSpace(b)) == "1"
		}
	}
	return false
}

// ErrUnplugged: the pad's device went away while it was in use.
var ErrUnplugged = errors.New("the pad was unplugged")
