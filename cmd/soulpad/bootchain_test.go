package main

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testcli"
)

// loopPad lays a disk out as soulpad image does (BIOS-BOOT, SOULPAD-EFI,
// SOULPAD-SYS with random bytes, SOULPAD-PAD with ext4), attaches it as
// a loop device and mounts the pad partition (a loop device of its own:
// the kernel here shows no partitions of loop devices). It returns the
// disk's device name and the mount point.
func loopPad(t *testing.T) (disk, mnt string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices and a mount")
	}
	for _, tool := range []string{"sgdisk", "losetup", "mke2fs", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing (make deps installs it)", tool)
		}
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "pad.img")
	b := make([]byte, 10<<20)
	_, _ = rand.Read(b)
	if err := os.WriteFile(img, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 128<<20); err != nil {
		t.Fatal(err)
	}
	sh := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	sh("sgdisk", "-o", "-n", "1:2048:+1M", "-t", "1:EF02", "-c", "1:BIOS-BOOT", "-n", "2:0:+4M", "-t", "2:EF00", "-c", "2:SOULPAD-EFI",
		"-n", "3:0:+4M", "-c", "3:SOULPAD-SYS", "-n", "4:0:0", "-c", "4:SOULPAD-PAD", img)
	first, _ := strconv.ParseInt(regexp.MustCompile(`First sector: (\d+)`).FindStringSubmatch(sh("sgdisk", "-i", "4", img))[1], 10, 64)
	last, _ := strconv.ParseInt(regexp.MustCompile(`Last sector: (\d+)`).FindStringSubmatch(sh("sgdisk", "-i", "4", img))[1], 10, 64)
	whole := sh("losetup", "--find", "--show", img)
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", whole).Run() })
	part := sh("losetup", "--find", "--show", "--offset", strconv.FormatInt(first*512, 10), "--sizelimit", strconv.FormatInt((last-first+1)*512, 10), img)
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", part).Run() })
	sh("mke2fs", "-q", "-t", "ext4", "-L", "SOULPAD-PAD", part)
	mnt = filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	sh("mount", part, mnt)
	t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
	return filepath.Base(whole), mnt
}

// TestRunStopsWhenTheBootChainChanged: a bootable pad whose boot
// partitions changed while it was locked (an evil maid's GRUB menu)
// stops after unlock, before the machine resumes; maintenance commands
// say so and go on; --accept-boot-change records the chain anew.
func TestRunStopsWhenTheBootChainChanged(t *testing.T) {
	disk, mnt := loopPad(t)
	e := testcli.Setup(t)
	// As the bootable pad's host OS runs soulpad: the pad on the disk it
	// booted from.
	t.Setenv("SOULPAD_PAD_PATH", filepath.Join(mnt, "pad"))
	t.Setenv("SOULPAD_PAD_BOOT_DISK", disk)
	if out, errOut, code := e.Run(t, "init", "--no-carry-plugins"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	// No record yet (a pad made before records, or by hand): said, not refused.
	if _, errOut, code := e.Run(t, "points"); code != 0 || !strings.Contains(errOut, "no record of the boot partitions of /dev/"+disk) {
		t.Fatalf("points on a pad without a record: exit %d\n%s", code, errOut)
	}
	session := func(args ...string) string {
		t.Helper()
		_, buf, done := e.StartRunArgs(t, args...)
		testcli.WaitFor(t, buf, done, "the machine is running", time.Minute)
		if out, errOut, code := e.Run(t, "suspend"); code != 0 {
			t.Fatalf("suspend: exit %d %s %s", code, out, errOut)
		}
		testcli.Wait(t, done, buf)
		return buf.String()
	}
	if out := session("--accept-boot-change"); !strings.Contains(out, "boot partitions recorded anew") {
		t.Fatalf("--accept-boot-change did not record the boot partitions:\n%s", out)
	}
	if out := session(); !strings.Contains(out, "boot partitions as recorded") {
		t.Fatalf("a run on the recorded chain does not say it was checked:\n%s", out)
	}
	before := e.Points(t)

	// The evil maid writes a byte of the EFI partition (GRUB's menu) on
	// the disk, through the disk's own device.
	f, err := os.OpenFile("/dev/"+disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("init=/bin/sh"), (2048+2048)*512+4096); err != nil {
		t.Fatal(err)
	}
	f.Close()

	_, buf, done := e.StartRunArgs(t) // not e.Run: a run that goes on would not end
	code := testcli.Ended(t, done, buf)
	out := buf.String()
	if code != 7 || !strings.Contains(out, "SOULPAD-EFI changed") || !strings.Contains(out, "capture your passphrase") || !strings.Contains(out, "--accept-boot-change") {
		t.Fatalf("run on a changed boot chain: exit %d, want 7 naming SOULPAD-EFI\n%s", code, out)
	}
	if strings.Contains(out, "the machine is running") || strings.Contains(out, "▸ resume") {
		t.Fatalf("the machine ran on a changed boot chain:\n%s", out)
	}
	if after := e.Points(t); len(after) != len(before) || after[len(after)-1].ID != before[len(before)-1].ID {
		t.Fatalf("the refused run changed the pad's points: %v, then %v", before, after)
	}
	// points warns and goes on (a passphrase change from a PC you trust must work).
	if _, errOut, code := e.Run(t, "points"); code != 0 || !strings.Contains(errOut, "SOULPAD-EFI changed") {
		t.Fatalf("points on a changed boot chain: exit %d\n%s", code, errOut)
	}
	if j, errOut, code := e.Run(t, "journal"); code != 0 || !strings.Contains(j, "SOULPAD-EFI changed") {
		t.Fatalf("the journal does not record the changed boot chain: exit %d\n%s%s", code, j, errOut)
	}
	// The owner changed it: accepted once, then checked as recorded.
	if out := session("--accept-boot-change"); !strings.Contains(out, "boot partitions recorded anew") {
		t.Fatalf("--accept-boot-change after a change:\n%s", out)
	}
	if out := session(); !strings.Contains(out, "boot partitions as recorded") {
		t.Fatalf("after the change was accepted:\n%s", out)
	}
}
