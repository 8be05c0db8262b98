package pad

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeBlockNode makes, in a sysfs tree of the test's own, the node of the
// device holding dir, with the given size, and points sysfs at the tree.
func fakeBlockNode(t *testing.T, dir, size string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	part := filepath.Join(root, "devices/pci0000:00/usb1/1-1/host0/block/sdb/sdb2")
	if err := os.MkdirAll(part, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(part, "size"), []byte(size+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "dev/block"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "dev/block", fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err := os.Symlink(part, link); err != nil {
		t.Fatal(err)
	}
	old := sysfs
	sysfs = root
	t.Cleanup(func() { sysfs = old })
	return part
}

func TestUnpluggedPadIsSeenFromSysfs(t *testing.T) {
	dir := t.TempDir()
	part := fakeBlockNode(t, dir, "4194304")
	w, ok := WatchDevice(dir)
	if !ok {
		t.Fatal("a pad on a block device sysfs knows cannot be watched")
	}
	if w.Gone() {
		t.Fatal("a pad still plugged in is taken for unplugged")
	}
	// The medium gone (a card reader's card pulled out): size 0.
	if err := os.WriteFile(filepath.Join(part, "size"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !w.Gone() {
		t.Error("a device of size 0 is not taken for unplugged")
	}
	// The disk pulled out: the kernel removes its nodes.
	if err := os.RemoveAll(filepath.Dir(part)); err != nil {
		t.Fatal(err)
	}
	if !w.Gone() {
		t.Error("a device whose sysfs node went away is not taken for unplugged")
	}
}

func TestPadOffABlockDeviceIsNotWatched(t *testing.T) {
	old := sysfs
	sysfs = t.TempDir() // no node for any device
	t.Cleanup(func() { sysfs = old })
	if w, ok := WatchDevice(t.TempDir()); ok || w.Gone() {
		t.Errorf("a pad sysfs knows nothing of is watched (%v) or gone (%v)", ok, w.Gone())
	}
	if _, ok := WatchDevice(filepath.Join(t.TempDir(), "missing")); ok {
		t.Error("a missing pad directory is watched")
	}
}

func TestOnlyARemovableDiskTakesOverAForeignLock(t *testing.T) {
	dir := t.TempDir()
	fakeBlockNode(t, dir, "4194304") // under …/usb1/…: a USB disk
	if !OnRemovableDisk(dir) {
		t.Fatal("a pad on a USB disk is not taken for removable")
	}
	foreign := Holder{Command: "run", PID: 1, Host: "another-pc", HostID: "0123", Since: time.Now()}
	f, err := openLockFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(foreign)
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	f.Close()
	l, err := LockPad(dir, "run", false)
	if err != nil {
		t.Fatalf("a foreign lock on a USB pad (pulled out of that PC) was not taken over: %v", err)
	}
	if l.Previous == nil || l.Previous.Host != "another-pc" {
		t.Errorf("the takeover does not say whose lock it was: %+v", l.Previous)
	}
	l.Release()

	// The same pad on a fixed disk (or a share): refused until break-lock.
	fixed := filepath.Join(sysfs, "devices/pci0000:00/ata1/host1/block/sda/sda1")
	if err := os.MkdirAll(fixed, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fixed, "size"), []byte("100\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(fixed), "removable"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := blockLink(t, sysfs, dir)
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(fixed, link); err != nil {
		t.Fatal(err)
	}
	if OnRemovableDisk(dir) {
		t.Fatal("a pad on a fixed disk is taken for removable")
	}
	f, _ = openLockFile(dir)
	_ = f.Truncate(0)
	_, _ = f.WriteAt(b, 0)
	f.Close()
	if _, err := LockPad(dir, "run", false); !errors.Is(err, ErrPadLocked) {
		t.Fatalf("a foreign lock on a fixed disk: %v; want it refused", err)
	}
}

// blockLink is the dev/block link for dir's device in the sysfs tree root.
func blockLink(t *testing.T, root, dir string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "dev/block", fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)))
}
