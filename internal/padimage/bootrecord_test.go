package padimage

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// layoutImage writes a small disk laid out as soulpad image lays a pad
// out (sgdisk, the same names and partition GUIDs of its own), with
// random bytes in the boot code and the first three partitions.
func layoutImage(t *testing.T, dir string) (img, sysGUID, padGUID string) {
	t.Helper()
	if _, err := exec.LookPath("sgdisk"); err != nil {
		t.Skip("sgdisk is missing (make deps installs it)")
	}
	img = filepath.Join(dir, "pad.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 24<<20); err != nil {
		t.Fatal(err)
	}
	sysGUID, padGUID = "0d1f8a52-3c4b-4f6e-9a7b-1c2d3e4f5a6b", "6b5a4f3e-2d1c-4b7a-8e6f-5a4b3c2d1e0f"
	out, err := exec.Command("sgdisk", "-o",
		"-n", "1:2048:+1M", "-t", "1:EF02", "-c", "1:BIOS-BOOT",
		"-n", "2:0:+4M", "-t", "2:EF00", "-c", "2:SOULPAD-EFI",
		"-n", "3:0:+3M", "-c", "3:SOULPAD-SYS", "-u", "3:"+sysGUID,
		"-n", "4:0:0", "-c", "4:SOULPAD-PAD", "-u", "4:"+padGUID, img).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk: %v\n%s", err, out)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	es, err := readGPT(f, 4)
	if err != nil {
		t.Fatal(err)
	}
	fill := func(off, n int64) {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	fill(0, 440)
	for _, e := range es[:3] {
		fill(e.First*512, (e.Last-e.First+1)*512)
	}
	return img, sysGUID, padGUID
}

// flip changes one byte of a copy of img at off and returns the copy.
func flip(t *testing.T, img string, off int64) string {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x5a
	c := filepath.Join(t.TempDir(), "changed.img")
	if err := os.WriteFile(c, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestBootRecordCatchesEachChangedPartAndOnlyThose(t *testing.T) {
	ctx := context.Background()
	img, sysGUID, padGUID := layoutImage(t, t.TempDir())
	rec, err := Measure(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	if rec.SysGUID != sysGUID || rec.PadGUID != padGUID || len(rec.Parts) != 5 {
		t.Fatalf("record: %+v", rec)
	}
	if err := rec.Check(ctx, Disk{Dev: img}); err != nil {
		t.Fatalf("the image as measured: %v", err)
	}
	f, _ := os.Open(img)
	es, err := readGPT(f, 4)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	at := func(n int, off int64) int64 { return es[n-1].First*512 + off }
	for _, c := range []struct {
		what string
		off  int64
		want string // the part named in the error; "" none
	}{
		{"the MBR's boot code", 100, "boot code (MBR)"},
		{"the system partition's GUID", 1024 + 2*128 + 16, "partition table"},
		{"the pad partition's first sector in the table", 1024 + 3*128 + 32, "partition table"},
		{"GRUB's core.img", at(1, 4000), "BIOS-BOOT"},
		{"a file on the EFI partition", at(2, 3<<20), "SOULPAD-EFI"},
		{"the last byte of the system partition", at(3, 3<<20-1), "SOULPAD-SYS"},
		{"the pad partition's contents", at(4, 1<<20), ""},
		{"the pad partition's end (grown to fill a disk)", 1024 + 3*128 + 40, ""},
		{"the backup GPT at the disk's end", 24<<20 - 512, ""},
	} {
		err := rec.Check(ctx, Disk{Dev: flip(t, img, c.off)})
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s changed: refused, but it is not part of the boot chain: %v", c.what, err)
		case c.want != "" && !errors.Is(err, ErrBootChanged):
			t.Errorf("%s changed: not caught (%v)", c.what, err)
		case c.want != "" && !strings.Contains(err.Error(), c.want+" changed"):
			t.Errorf("%s changed: the error does not name %s: %v", c.what, c.want, err)
		case c.want != "" && strings.Count(err.Error(), " changed (") != 1:
			t.Errorf("%s changed: the error names more than it: %v", c.what, err)
		}
	}
	// A disk whose table lost the system partition.
	b, _ := os.ReadFile(img)
	copy(b[1024+2*128:1024+3*128], make([]byte, 128))
	gone := filepath.Join(t.TempDir(), "gone.img")
	if err := os.WriteFile(gone, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rec.Check(ctx, Disk{Dev: gone}); !errors.Is(err, ErrBootChanged) || !strings.Contains(err.Error(), "SOULPAD-SYS is gone") {
		t.Errorf("a table without the system partition: %v", err)
	}
}

func TestBootRecordHoldsOnlyAPadsDisk(t *testing.T) {
	dir := t.TempDir()
	img, _, _ := layoutImage(t, dir)
	rec, err := Measure(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Holds(Disk{Dev: img}) {
		t.Error("the pad's own disk is not taken for it")
	}
	other := filepath.Join(dir, "other.img")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Truncate(other, 8<<20)
	if out, err := exec.Command("sgdisk", "-o", "-n", "1:0:0", "-c", "1:home", other).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk: %v\n%s", err, out)
	}
	if rec.Holds(Disk{Dev: other}) {
		t.Error("a PC's disk with a partition of its own is taken for the pad's")
	}
	// Renamed, but with the pad's GUID: still the pad's.
	renamed := filepath.Join(dir, "renamed.img")
	_ = os.WriteFile(renamed, nil, 0o600)
	_ = os.Truncate(renamed, 8<<20)
	if out, err := exec.Command("sgdisk", "-o", "-n", "1:0:0", "-c", "1:home", "-u", "1:"+strings.ToUpper(rec.PadGUID), renamed).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk: %v\n%s", err, out)
	}
	if !rec.Holds(Disk{Dev: renamed}) {
		t.Error("a disk holding the pad's partition GUID under another name is not taken for the pad's")
	}
	if rec.Holds(Disk{Dev: filepath.Join(dir, "missing")}) {
		t.Error("a missing disk holds the pad")
	}
}

func TestBootRecordSavedAndLoaded(t *testing.T) {
	dir := t.TempDir()
	if _, ok, err := LoadRecord(dir); ok || err != nil {
		t.Fatalf("no record: ok %v, %v", ok, err)
	}
	img, _, _ := layoutImage(t, dir)
	rec, err := Measure(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Save(dir, os.WriteFile); err != nil {
		t.Fatal(err)
	}
	got, ok, err := LoadRecord(dir)
	if err != nil || !ok || fmt.Sprint(got) != fmt.Sprint(rec) {
		t.Fatalf("loaded %+v, %v, %v; saved %+v", got, ok, err, rec)
	}
	if err := os.WriteFile(filepath.Join(dir, RecordFile), []byte(`{"parts":[{"name":"x","length":-1,"sha256":"00"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadRecord(dir); !errors.Is(err, ErrBootChanged) {
		t.Fatalf("a record that cannot be acted on: %v", err)
	}
}

// TestDiskOfFindsThePartitionsDisk reads a sysfs tree laid out as the
// kernel's for a pad on partition 4 of sdz.
func TestDiskOfFindsThePartitionsDisk(t *testing.T) {
	dir := t.TempDir()
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	fake := t.TempDir()
	dev := filepath.Join(fake, "devices", "pci0000:00", "usb1", "block", "sdz")
	for n := 1; n <= 4; n++ {
		p := filepath.Join(dev, fmt.Sprintf("sdz%d", n))
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "partition"), []byte(fmt.Sprintf("%d\n", n)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.MkdirAll(filepath.Join(dev, "queue"), 0o755)
	_ = os.MkdirAll(filepath.Join(fake, "block"), 0o755)
	_ = os.MkdirAll(filepath.Join(fake, "dev", "block"), 0o755)
	if err := os.Symlink(dev, filepath.Join(fake, "block", "sdz")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dev, "sdz4"), filepath.Join(fake, "dev", "block", fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)))); err != nil {
		t.Fatal(err)
	}
	old := sysfs
	sysfs = fake
	defer func() { sysfs = old }()
	d, ok := DiskOf(dir)
	if !ok || d.Dev != "/dev/sdz" || d.PadPart != 4 || d.Parts[3] != "/dev/sdz3" || len(d.Parts) != 4 {
		t.Fatalf("DiskOf: %+v, %v", d, ok)
	}
	// A file system on a whole disk (or tmpfs, overlay …): no partition.
	_ = os.Remove(filepath.Join(fake, "dev", "block", fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))))
	_ = os.Symlink(dev, filepath.Join(fake, "dev", "block", fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))))
	if d, ok := DiskOf(dir); ok {
		t.Fatalf("a file system on a whole disk: %+v", d)
	}
	if _, ok := DiskNamed("../sdz"); ok {
		t.Fatal("DiskNamed took a path")
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(`{"sys_guid":"a","pad_guid":"b","parts":[{"name":"x","part":2,"offset":0,"length":512,"sha256":"` + strings.Repeat("0", 64) + `"}]}`))
	f.Add([]byte(`{"parts":[]}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecord(b)
		if err != nil {
			if !errors.Is(err, ErrBootChanged) {
				t.Fatalf("a refused record's error does not say the boot chain changed: %v", err)
			}
			return
		}
		for _, x := range r.Parts {
			if x.Length <= 0 || x.Length > maxExtent || x.Offset < 0 || x.Offset > maxExtent || x.Part < 0 || len(x.SHA256) != 64 {
				t.Fatalf("accepted a part it cannot check: %+v", x)
			}
		}
	})
}

func FuzzReadGPT(f *testing.F) {
	seed := make([]byte, 34*512)
	copy(seed[512:], "EFI PART")
	seed[512+72] = 2
	seed[512+80] = 4
	seed[512+84] = 128
	copy(seed[1024:], bytes.Repeat([]byte{1}, 56))
	f.Add(seed)
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := readGPT(bytes.NewReader(b), 128)
		if err != nil {
			return
		}
		for _, e := range es {
			if e.First < 0 || e.Last < 0 || e.First > maxLBA || e.Last > maxLBA || e.Num < 1 || e.Num > 128 {
				t.Fatalf("an entry beyond reason: %+v", e)
			}
		}
	})
}

func TestSystemPartitionCheckedAtBootIsNotReadAgain(t *testing.T) {
	ctx := context.Background()
	img, _, _ := layoutImage(t, t.TempDir())
	rec, err := Measure(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	sys := ""
	for _, x := range rec.Parts {
		if x.Name == "SOULPAD-SYS" {
			sys = x.SHA256
		}
	}
	if got := rec.CheckedAtBoot("quiet console=ttyS0 soulpad.sysdigest=" + sys + " soulpad.pad=x"); len(got) != 1 || got[0] != "SOULPAD-SYS" {
		t.Fatalf("the recorded digest on the command line: %v", got)
	}
	for _, cmdline := range []string{"", "soulpad.sysdigest=" + strings.Repeat("0", 64), "soulpad.sysdigest=" + sys[:63]} {
		if got := rec.CheckedAtBoot(cmdline); got != nil {
			t.Fatalf("command line %q: %v, want nothing skipped", cmdline, got)
		}
	}
	f, _ := os.Open(img)
	es, _ := readGPT(f, 4)
	f.Close()
	changed := flip(t, img, es[2].First*512+100)
	if err := rec.Check(ctx, Disk{Dev: changed}); !errors.Is(err, ErrBootChanged) {
		t.Fatalf("a changed system partition: %v", err)
	}
	if err := rec.Check(ctx, Disk{Dev: changed}, rec.CheckedAtBoot("soulpad.sysdigest="+sys)...); err != nil {
		t.Fatalf("a system partition the boot checked is read again: %v", err)
	}
}
