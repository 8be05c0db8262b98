package luks

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	luksgo "github.com/anatol/luks.go"
)

// KernelAvailable reports whether device-mapper can be used here.
func KernelAvailable() bool {
	if _, err := os.Stat("/dev/mapper/control"); err != nil {
		return false
	}
	b, err := os.ReadFile("/proc/misc")
	return err == nil && strings.Contains(string(b), "device-mapper")
}

// kernelVolume is a vault opened with dm-crypt.
type kernelVolume struct {
	name    string // device-mapper name
	loopDev string // loop device set up for a container file, if any
	mnt     string
}

// kernelUnlock opens the container at path with dm-crypt through luks.go
// and mounts its file system at mnt.
func kernelUnlock(path string, secret []byte, name, mnt string) (*kernelVolume, error) {
	kv := &kernelVolume{name: name, mnt: mnt}
	dev := path
	if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() {
		out, err := exec.Command("losetup", "--find", "--show", path).Output()
		if err != nil {
			return nil, fmt.Errorf("crypt-luks: losetup %s: %w", path, err)
		}
		kv.loopDev = strings.TrimSpace(string(out))
		dev = kv.loopDev
	}
	u, err := unseal(dev, secret)
	if err != nil {
		kv.detachLoop()
		return nil, err
	}
	// luks.go hands the key to device-mapper as a hex string on the heap:
	// under secretDo it is erased once garbage.
	secretDo(func() { err = u.vol.SetupMapper(name) })
	u.wipe()
	if err != nil {
		kv.detachLoop()
		return nil, fmt.Errorf("crypt-luks: device-mapper: %w", err)
	}
	node, err := dmNode(name)
	if err == nil {
		err = mountRetry(node, mnt)
	}
	if err != nil {
		_ = luksgo.Lock(name)
		kv.detachLoop()
		return nil, fmt.Errorf("crypt-luks: mount %s: %w", mnt, err)
	}
	return kv, nil
}

// dmNode finds the block device of a device-mapper name: /dev/mapper/<name>
// where udev made it, else /dev/dm-N from sysfs (devtmpfs makes those).
func dmNode(name string) (string, error) {
	for i := 0; i < 100; i++ {
		if _, err := os.Stat("/dev/mapper/" + name); err == nil {
			return "/dev/mapper/" + name, nil
		}
		dms, _ := filepath.Glob("/sys/block/dm-*/dm/name")
		for _, f := range dms {
			b, err := os.ReadFile(f)
			if err == nil && strings.TrimSpace(string(b)) == name {
				node := "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(f)))
				if _, err := os.Stat(node); err == nil {
					return node, nil
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "", fmt.Errorf("no device node for %s", name)
}

func mountRetry(dev, mnt string) error {
	var err error
	for i := 0; i < 20; i++ {
		var fsType string
		if fsType, err = detectFS(dev); err == nil {
			err = syscall.Mount(dev, mnt, fsType, syscall.MS_NOSUID|syscall.MS_NODEV, mountData(fsType, ""))
		}
		if err == nil {
			return os.Chmod(mnt, 0o700) // mkfs makes the root 0755
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}

// unmountRetry unmounts mnt, retrying while it is busy.
func unmountRetry(mnt string) error {
	var err error
	for i := 0; i < 50; i++ {
		err = syscall.Unmount(mnt, 0)
		if err == nil || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

func (kv *kernelVolume) detachLoop() {
	if kv.loopDev != "" {
		_ = exec.Command("losetup", "-d", kv.loopDev).Run()
		kv.loopDev = ""
	}
}

// lock unmounts, removes the mapping (the kernel forgets the key) and
// detaches the loop device.
func (kv *kernelVolume) lock() error {
	if err := unmountRetry(kv.mnt); err != nil {
		return fmt.Errorf("unmount %s: %w", kv.mnt, err)
	}
	var err error
	for i := 0; i < 20; i++ {
		if err = luksgo.Lock(kv.name); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("remove mapping %s: %w", kv.name, err)
	}
	kv.detachLoop()
	return nil
}
