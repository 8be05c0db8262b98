package walkup_test

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/soulpad/soulpad/internal/testcli"
)

// sourceDisk makes an 8 MiB raw disk such as a user's VM would have: a
// partition table's signature and, in sector 1, the identity the demo
// guest prints at boot.
func sourceDisk(t *testing.T, dir, identity string) string {
	t.Helper()
	raw := filepath.Join(dir, "source.raw")
	b := make([]byte, 8<<20)
	b[510], b[511] = 0x55, 0xaa
	copy(b[512:], "soulpad-disk "+identity+"\n")
	// Data past the first MiB, so the import has more than one cluster.
	for i := 3 << 20; i < 4<<20; i++ {
		b[i] = byte(i * 7)
	}
	if err := os.WriteFile(raw, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return raw
}

func qemuImgConvert(t *testing.T, src, dst, format string, opts ...string) {
	t.Helper()
	args := append([]string{"convert", "-f", "raw", "-O", format}, opts...)
	if out, err := exec.Command("qemu-img", append(args, src, dst)...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert to %s: %v %s", format, err, out)
	}
}

// ova packs an OVF description and a stream-optimised VMDK as VMware and
// VirtualBox export them.
func ova(t *testing.T, raw, dst string) {
	t.Helper()
	vmdk := filepath.Join(t.TempDir(), "disk1.vmdk")
	qemuImgConvert(t, raw, vmdk, "vmdk", "-o", "subformat=streamOptimized")
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	ovf := []byte(`<?xml version="1.0"?><Envelope><References><File ovf:href="disk1.vmdk" ovf:id="file1"/></References></Envelope>`)
	if err := tw.WriteHeader(&tar.Header{Name: "soul.ovf", Mode: 0o644, Size: int64(len(ovf)), Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	tw.Write(ovf)
	st, _ := os.Stat(vmdk)
	if err := tw.WriteHeader(&tar.Header{Name: "disk1.vmdk", Mode: 0o644, Size: st.Size(), Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	in, _ := os.Open(vmdk)
	io.Copy(tw, in)
	in.Close()
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestImportedDisksKeepTheirData brings a VM's disk onto a pad in every
// format `init --disk` takes, and reads it back out of the vault: the same
// bytes, as qcow2, whatever it came as.
func TestImportedDisksKeepTheirData(t *testing.T) {
	if testing.Short() {
		t.Skip("imports disk images")
	}
	dir := t.TempDir()
	for _, f := range []struct{ name, format string }{
		{"disk.qcow2", "qcow2"}, {"disk.vmdk", "vmdk"}, {"disk.vdi", "vdi"}, {"disk.vhdx", "vhdx"}, {"disk.vhd", "vpc"}, {"disk.ova", "ova"}, {"disk.img", "raw"},
	} {
		t.Run(f.format, func(t *testing.T) {
			e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", "crypt-plain")
			raw := sourceDisk(t, dir, "imported-"+f.format)
			img := filepath.Join(dir, f.name)
			switch f.format {
			case "ova":
				ova(t, raw, img)
			case "raw":
				img = raw
			default:
				qemuImgConvert(t, raw, img, f.format)
			}
			out, errOut, code := e.Run(t, "init", "--disk", img)
			if code != 0 {
				t.Fatalf("init --disk %s: exit %d\n%s%s", f.name, code, out, errOut)
			}
			if !strings.Contains(out, "importing the disk") {
				t.Errorf("init showed no progress of the import:\n%s", out)
			}
			plain, done := e.Plain(t, "crypt-plain")
			defer done()
			disk := filepath.Join(plain, "machines", "soul", "disk")
			if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, disk).CombinedOutput(); err != nil {
				t.Fatalf("the vault's disk differs from the image: %v %s", err, out)
			}
			info, _ := exec.Command("qemu-img", "info", disk).CombinedOutput()
			if !strings.Contains(string(info), "file format: qcow2") || !strings.Contains(string(info), "virtual size: 8 MiB") {
				t.Fatalf("the vault's disk is not an 8 MiB qcow2:\n%s", info)
			}
		})
	}
}

// TestImportedDiskBootsAndResumes takes an OVA through the walk: import,
// cold boot (the guest finds the disk it had), suspend, resume.
func TestImportedDiskBootsAndResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a guest")
	}
	dir := t.TempDir()
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", "crypt-gocryptfs")
	img := filepath.Join(dir, "exported.ova")
	ova(t, sourceDisk(t, dir, "brought-along"), img)
	if out, errOut, code := e.Run(t, "init", "--disk", img); code != 0 {
		t.Fatalf("init --disk: exit %d\n%s%s", code, out, errOut)
	}
	_, buf, done := e.StartRun(t)
	first := e.WaitCounter(t, 2)
	if c := consoleDump(t, e); !strings.Contains(c, "soulpad-guest: disk /dev/vda: soulpad-disk brought-along") {
		t.Fatalf("the guest did not find the imported disk:\n%s", c)
	}
	suspend(t, e, done, buf)
	second, out := e.Session(t, 2)
	if !strings.Contains(out, "resumed ") || second[0] <= first[len(first)-1] {
		t.Fatalf("the imported machine did not resume (counter %v after %v):\n%s", second, first, out)
	}
}

// TestBadDiskImagesAreRefused gives `init --disk` what a user might by
// mistake or an attacker on purpose: each is refused with exit 2, a
// message that says what is wrong with it, and no pad left behind.
func TestBadDiskImagesAreRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("makes disk images")
	}
	dir := t.TempDir()
	raw := sourceDisk(t, dir, "bad")
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte(strings.Repeat("not a disk\n", 100)), 0o600)
	truncated := filepath.Join(dir, "truncated.vdi")
	qemuImgConvert(t, raw, truncated, "vdi")
	os.Truncate(truncated, 2<<20)
	truncQcow := filepath.Join(dir, "truncated.qcow2")
	qemuImgConvert(t, raw, truncQcow, "qcow2")
	st, _ := os.Stat(truncQcow)
	os.Truncate(truncQcow, st.Size()/2)
	overlay := filepath.Join(dir, "overlay.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/etc/passwd", overlay).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	flat := filepath.Join(dir, "flat.vmdk")
	os.WriteFile(flat, []byte("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\nRW 2048 FLAT \"/etc/passwd\" 0\n\nddb.virtualHWVersion = \"4\"\n"), 0o600)
	emptyOVA := filepath.Join(dir, "empty.ova")
	func() {
		f, _ := os.Create(emptyOVA)
		defer f.Close()
		tw := tar.NewWriter(f)
		tw.WriteHeader(&tar.Header{Name: "soul.ovf", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR})
		tw.Write([]byte("<>"))
		tw.Close()
	}()
	for _, c := range []struct{ file, want string }{
		{text, "does not look like a disk"},
		{truncated, "truncated"},
		{truncQcow, "truncated"},
		{overlay, "backing file outside itself"},
		{flat, "outside itself"},
		{emptyOVA, "no disk image in it"},
		{filepath.Join(dir, "missing.vmdk"), "no such file"},
	} {
		t.Run(filepath.Base(c.file), func(t *testing.T) {
			e := testcli.QEMUEnv(t, "console=ttyS0", "crypt-plain")
			out, errOut, code := e.Run(t, "init", "--disk", c.file)
			if code != 2 || !strings.Contains(errOut, c.want) || !strings.Contains(errOut, c.file) {
				t.Fatalf("init --disk %s: exit %d, want 2 and %q with the file's name:\n%s%s", c.file, code, c.want, out, errOut)
			}
			if _, err := os.Stat(e.Pad); !os.IsNotExist(err) {
				t.Fatalf("a refused import left %s behind (%v)", e.Pad, err)
			}
		})
	}
	// A raw disk without a partition table is taken when the user says
	// it is one.
	bare := filepath.Join(dir, "bare.raw")
	os.WriteFile(bare, make([]byte, 1<<20), 0o600)
	e := testcli.QEMUEnv(t, "console=ttyS0", "crypt-plain")
	if out, errOut, code := e.Run(t, "init", "--disk", bare); code != 2 || !strings.Contains(errOut, "--disk-format raw") {
		t.Fatalf("a bare raw file: exit %d, want 2 and the hint --disk-format raw:\n%s%s", code, out, errOut)
	}
	if out, errOut, code := e.Run(t, "init", "--disk", bare, "--disk-format", "raw"); code != 0 {
		t.Fatalf("init --disk-format raw: exit %d\n%s%s", code, out, errOut)
	}
}

// TestDiskTooBigForTheVaultIsRefused: an image whose data and the
// machine's room do not fit the LUKS vault is refused before any of it is
// written, and the pad is gone again.
func TestDiskTooBigForTheVaultIsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("makes a LUKS vault")
	}
	dir := t.TempDir()
	big := filepath.Join(dir, "big.raw")
	b := make([]byte, 200<<20)
	b[510], b[511] = 0x55, 0xaa
	for i := 1 << 20; i < len(b); i += 4096 {
		copy(b[i:], fmt.Sprintf("data %d", i))
	}
	os.WriteFile(big, b, 0o600)
	e := testcli.QEMUEnv(t, "console=ttyS0", "crypt-luks")
	out, errOut, code := e.Run(t, "init", "--disk", big)
	if code != 2 || !strings.Contains(errOut, "does not fit the vault") || !strings.Contains(errOut, "pad.vault_size_mib = ") {
		t.Fatalf("init --disk of 200 MiB into a 512 MiB vault with 128 MiB of memory: exit %d, want 2 and advice on vault_size_mib:\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(e.Pad); !os.IsNotExist(err) {
		t.Fatalf("a refused import left %s behind (%v)", e.Pad, err)
	}
}
