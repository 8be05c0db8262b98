package padimage

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteBIOSBoot checks the bytes grub-bios-setup would write: boot.img's
// code in the MBR with core.img's LBA, the boot drive and the drive check
// NOPed, the partition table and signature kept, and core.img's block list
// naming the sectors after its first.
func TestWriteBIOSBoot(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk")
	disk := make([]byte, 64*512)
	for i := 0x1be; i < 0x1fe; i++ {
		disk[i] = byte(i) // a partition table to keep
	}
	disk[510], disk[511] = 0x55, 0xaa
	core := bytes.Repeat([]byte{0xc0}, 512) // core.img's first sector
	copy(disk[40*512:], core)
	if err := os.WriteFile(img, disk, 0o644); err != nil {
		t.Fatal(err)
	}
	boot := bytes.Repeat([]byte{0xb0}, 512)
	if err := writeBIOSBoot(img, boot, 40, 9); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if v := binary.LittleEndian.Uint64(got[0x5c:]); v != 40 {
		t.Errorf("kernel sector %d, want 40", v)
	}
	if got[0x64] != 0xff || got[0x66] != 0x90 || got[0x67] != 0x90 {
		t.Errorf("boot drive %#x, drive check % x", got[0x64], got[0x66:0x68])
	}
	if got[0] != 0xb0 || got[0x1b7] != 0xb0 {
		t.Error("boot code not written")
	}
	if !bytes.Equal(got[0x1b8:0x200], disk[0x1b8:0x200]) {
		t.Error("the disk signature, partition table or boot signature changed")
	}
	bl := got[40*512+0x200-12:]
	if s, n := binary.LittleEndian.Uint64(bl), binary.LittleEndian.Uint16(bl[8:]); s != 41 || n != 8 {
		t.Errorf("block list: start %d length %d, want 41 and 8", s, n)
	}
	if !bytes.Equal(got[40*512:40*512+0x200-12], core[:0x200-12]) {
		t.Error("core.img's code changed")
	}
	if !bytes.Equal(got[41*512:], disk[41*512:]) || !bytes.Equal(got[512:40*512], disk[512:40*512]) {
		t.Error("bytes outside the MBR and core.img's first sector changed")
	}

	// No protective MBR: refused, nothing written.
	disk[510] = 0
	if err := os.WriteFile(img, disk, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeBIOSBoot(img, boot, 40, 9); err == nil {
		t.Error("an image without a boot signature was patched")
	}
	if got, _ := os.ReadFile(img); !bytes.Equal(got, disk) {
		t.Error("a refused image was changed")
	}
	if err := writeBIOSBoot(img, boot[:100], 40, 9); err == nil {
		t.Error("a short boot.img was taken")
	}
}

// A killed build's scratch is removed by the next; a running one's is not.
func TestSweepStale(t *testing.T) {
	dir := t.TempDir()
	mine, err := Scratch(dir, "pad-")
	if err != nil {
		t.Fatal(err)
	}
	dead := filepath.Join(dir, ".soulpad-image-work-1")
	os.Mkdir(dead, 0o700)
	os.WriteFile(filepath.Join(dead, ownerFile), []byte("4194305"), 0o600) // no such pid
	other := filepath.Join(dir, ".soulpad-image-unmarked")
	os.Mkdir(other, 0o700)
	if got := SweepStale(dir); len(got) != 1 || got[0] != dead {
		t.Fatalf("swept %v, want only %s", got, dead)
	}
	for _, d := range []string{mine, other} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed", d)
		}
	}
}
