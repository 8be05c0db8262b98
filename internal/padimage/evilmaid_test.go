package padimage_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// evilMaid changes the image's boot chain as someone who held the pad
// for an hour could, and boots it: a changed system partition is refused
// by the initramfs before anything runs from it; a changed GRUB menu (the
// kernel's command line) is caught after unlock, before the machine
// resumes. Both offer to power off, never a shell.
func evilMaid(t *testing.T, dir, img, keyDisk, pcDisk string) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The system partition's last byte (padding after the squashfs: it
	// still mounts, so only the digest can tell).
	last := (partSector(t, img, 3, "Last")+1)*512 - 1
	orig := make([]byte, 1)
	if _, err := f.ReadAt(orig, last); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{orig[0] ^ 0xff}, last); err != nil {
		t.Fatal(err)
	}
	pc := boot(t, dir, "maid-sys", img, keyDisk, pcDisk)
	pc.waitFor(t, regexp.MustCompile(`soulpad-boot: the system partition \S+ is not the one this pad was built with`), 3*time.Minute)
	pc.send(t, "off\n")
	select {
	case err := <-pc.done:
		pc.done <- err // for the cleanup's wait
	case <-time.After(2 * time.Minute):
		t.Fatal("the PC did not power off after a refused system partition")
	}
	if txt := pc.text(); strings.Contains(txt, "soulpad-host:") || strings.Contains(txt, "▸ unlock") {
		t.Fatalf("the host OS ran from a changed system partition:\n%s", pc.tail(30))
	}
	if _, err := f.WriteAt(orig, last); err != nil {
		t.Fatal(err)
	}

	// GRUB's menu, edited on the EFI partition (FAT, written with mtools).
	esp := fmt.Sprintf("%s@@%d", img, partSector(t, img, 2, "First")*512)
	cfg := filepath.Join(dir, "grub.cfg")
	run(t, "mcopy", "-o", "-i", esp, "::/boot/grub/grub.cfg", cfg)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, cfg, string(b)+"# an evil maid was here\n")
	run(t, "mcopy", "-o", "-i", esp, cfg, "::/boot/grub/grub.cfg")
	pc = boot(t, dir, "maid-esp", img, keyDisk, pcDisk)
	pc.waitFor(t, regexp.MustCompile(`SOULPAD-EFI changed`), 5*time.Minute)
	pc.waitFor(t, regexp.MustCompile(`soulpad run ended with status 7`), time.Minute)
	if txt := pc.text(); strings.Contains(txt, "▸ resume") || strings.Contains(txt, "cold boot") {
		t.Fatalf("the machine ran on a changed boot chain:\n%s", pc.tail(30))
	}
	pc.send(t, "off\n")
	pc.waitExit(t, 2*time.Minute)
	t.Log("an evil maid's system partition was refused before it ran, and her GRUB menu after unlock, before the machine resumed")
}

// partSector is partition n's First or Last sector in img's GPT.
func partSector(t *testing.T, img string, n int, which string) int64 {
	t.Helper()
	out, err := exec.Command("sgdisk", "-i", strconv.Itoa(n), img).Output()
	if err != nil {
		t.Fatalf("sgdisk: %v", err)
	}
	m := regexp.MustCompile(which + ` sector: (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("sgdisk -i %d: %s", n, out)
	}
	v, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return v
}
