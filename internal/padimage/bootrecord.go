package padimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"

	"golang.org/x/sys/unix"

	"github.com/soulpad/soulpad/internal/ctxio"
)

// A bootable pad's boot chain (the MBR's boot code, the partition table,
// GRUB's core.img, the EFI system partition with GRUB's menu, the kernel
// and the initramfs, and the host OS's squashfs) is not signed where
// Secure Boot stops (GRUB's menu and what follows): someone who holds the
// pad for an hour could change it to capture the passphrase on the next
// boot. soulpad image records each part's SHA-256 in the vault, which
// only the passphrase opens; after every unlock the record is checked
// against the disk the pad is on, and a run on a changed chain stops
// before the machine resumes. The initramfs checks the squashfs's own
// digest (on GRUB's kernel command line) before it runs anything from it.

// RecordFile, in the unlocked vault, holds the BootRecord.
const RecordFile = "boot-record.json"

// ErrBootChanged: the pad's boot partitions are not the ones its vault
// recorded when the image was made (or when a change was last accepted).
var ErrBootChanged = errors.New("the pad's boot partitions changed")

// BootRecord is what a bootable pad's vault knows of its boot chain.
type BootRecord struct {
	// SysGUID and PadGUID are the system and pad partitions' GUIDs.
	SysGUID string   `json:"sys_guid"`
	PadGUID string   `json:"pad_guid"`
	Parts   []Extent `json:"parts"`
}

// Extent is one checked range: bytes [Offset, Offset+Length) of the
// disk, or of partition Part when Part > 0.
type Extent struct {
	Name   string `json:"name"`
	Part   int    `json:"part,omitempty"`
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	SHA256 string `json:"sha256"`
}

// The largest record and extent accepted: a record names a few parts,
// and the biggest is the host OS (a few hundred MiB).
const (
	maxRecord      = 64 << 10
	maxExtent      = 4 << 30
	maxRecordParts = 16
)

// maxLBA is the last sector of the largest disk readGPT believes in
// (1 PiB): a table that says more is not a pad's.
const maxLBA = 1 << 41

// gptEntry is a partition of a GPT, as Measure reads it.
type gptEntry struct {
	Num         int
	Name, GUID  string
	First, Last int64 // LBAs
}

// readGPT reads the first n entries of the GPT at LBA 1 of a disk with
// 512-byte sectors (as soulpad image writes it).
func readGPT(r io.ReaderAt, n int) ([]gptEntry, error) {
	hdr := make([]byte, 92)
	if _, err := r.ReadAt(hdr, 512); err != nil {
		return nil, fmt.Errorf("reading the partition table: %w", err)
	}
	if string(hdr[:8]) != "EFI PART" {
		return nil, errors.New("no GPT at LBA 1")
	}
	entriesLBA := int64(binary.LittleEndian.Uint64(hdr[72:]))
	count := int(binary.LittleEndian.Uint32(hdr[80:]))
	size := int64(binary.LittleEndian.Uint32(hdr[84:]))
	if size < 128 || size > 4096 || entriesLBA < 2 || entriesLBA > 1<<20 {
		return nil, errors.New("the GPT header is not one soulpad image writes")
	}
	var es []gptEntry
	for i := 0; i < min(n, count); i++ {
		e := make([]byte, 128)
		if _, err := r.ReadAt(e, entriesLBA*512+int64(i)*size); err != nil {
			return nil, fmt.Errorf("reading partition %d: %w", i+1, err)
		}
		if bytes.Equal(e[:16], make([]byte, 16)) {
			continue // unused
		}
		u := make([]uint16, 36)
		for j := range u {
			u[j] = binary.LittleEndian.Uint16(e[56+2*j:])
		}
		name := string(utf16.Decode(u))
		name, _, _ = strings.Cut(name, "\x00")
		first, last := binary.LittleEndian.Uint64(e[32:]), binary.LittleEndian.Uint64(e[40:])
		if first > maxLBA || last > maxLBA {
			return nil, fmt.Errorf("partition %d lies beyond any disk", i+1)
		}
		es = append(es, gptEntry{Num: i + 1, Name: name, GUID: guidString(e[16:32]), First: int64(first), Last: int64(last)})
	}
	return es, nil
}

// guidString is a GPT's mixed-endian GUID in the usual text form.
func guidString(b []byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", binary.LittleEndian.Uint32(b[0:]), binary.LittleEndian.Uint16(b[4:]),
		binary.LittleEndian.Uint16(b[6:]), b[8:10], b[10:16])
}

// Measure reads a whole image as Build writes it and records its boot
// chain: the MBR's boot code, the partition entries (the pad's only up
// to its first sector: it may be grown to fill a larger disk), and the
// BIOS-boot, EFI and system partitions whole.
func Measure(ctx context.Context, image string) (BootRecord, error) {
	var rec BootRecord
	f, err := os.Open(image)
	if err != nil {
		return rec, err
	}
	defer f.Close()
	es, err := readGPT(f, 4)
	if err != nil {
		return rec, err
	}
	want := []string{"BIOS-BOOT", "SOULPAD-EFI", "SOULPAD-SYS", "SOULPAD-PAD"}
	if len(es) != 4 {
		return rec, fmt.Errorf("the image has %d partitions, not 4", len(es))
	}
	for i, e := range es {
		if e.Name != want[i] || e.Num != i+1 || e.Last < e.First {
			return rec, fmt.Errorf("partition %d is %q, not %s", e.Num, e.Name, want[i])
		}
	}
	rec.SysGUID, rec.PadGUID = es[2].GUID, es[3].GUID
	rec.Parts = []Extent{
		{Name: "boot code (MBR)", Offset: 0, Length: 440},
		{Name: "partition table", Offset: 1024, Length: 3*128 + 40},
	}
	for _, e := range es[:3] {
		rec.Parts = append(rec.Parts, Extent{Name: e.Name, Part: e.Num, Offset: 0, Length: (e.Last - e.First + 1) * 512})
	}
	for i := range rec.Parts {
		x := &rec.Parts[i]
		base := int64(0)
		if x.Part > 0 {
			base = es[x.Part-1].First * 512
		}
		if x.SHA256, err = sumRange(ctx, f, base+x.Offset, x.Length); err != nil {
			return rec, fmt.Errorf("%s: %w", x.Name, err)
		}
	}
	return rec, nil
}

func sumRange(ctx context.Context, r io.ReaderAt, off, n int64) (string, error) {
	h := sha256.New()
	got, err := io.Copy(h, ctxio.Reader{Ctx: ctx, R: io.NewSectionReader(r, off, n)})
	if err != nil {
		return "", err
	}
	if got != n {
		return "", fmt.Errorf("%d of %d bytes: the disk ends before it", got, n)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Save writes the record into the vault's plaintext directory.
func (r BootRecord) Save(plaintextDir string, write func(path string, b []byte, perm os.FileMode) error) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return write(filepath.Join(plaintextDir, RecordFile), append(b, '\n'), 0o600)
}

// LoadRecord reads the vault's record; ok is false when it has none (a
// pad not made by soulpad image).
func LoadRecord(plaintextDir string) (r BootRecord, ok bool, err error) {
	f, err := os.Open(filepath.Join(plaintextDir, RecordFile))
	if errors.Is(err, os.ErrNotExist) {
		return r, false, nil
	}
	if err != nil {
		return r, false, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRecord+1))
	if err != nil {
		return r, false, err
	}
	r, err = ParseRecord(b)
	return r, err == nil, err
}

// ParseRecord reads a record and checks that it can be acted on.
func ParseRecord(b []byte) (BootRecord, error) {
	var r BootRecord
	if len(b) > maxRecord {
		return r, fmt.Errorf("the vault's boot record is over %d bytes: %w", maxRecord, ErrBootChanged)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("the vault's boot record is damaged (%v): %w", err, ErrBootChanged)
	}
	if len(r.Parts) == 0 || len(r.Parts) > maxRecordParts {
		return r, fmt.Errorf("the vault's boot record names %d parts: %w", len(r.Parts), ErrBootChanged)
	}
	for _, x := range r.Parts {
		if x.Part < 0 || x.Part > 128 || x.Offset < 0 || x.Length <= 0 || x.Length > maxExtent || x.Offset > maxExtent || len(x.SHA256) != 64 {
			return r, fmt.Errorf("the vault's boot record has a part it cannot check (%q): %w", x.Name, ErrBootChanged)
		}
	}
	return r, nil
}

// sysfs is where the kernel's sysfs is mounted (a test's tree instead).
var sysfs = "/sys"

// Disk is a disk a pad may be on: its whole device and its partitions'
// devices by number.
type Disk struct {
	Dev   string         // /dev/sda
	Parts map[int]string // 4: /dev/sda4
	// PadPart is the partition holding the pad's directory (0: unknown).
	PadPart int
}

// DiskOf finds the disk holding path from sysfs: the partition path's
// file system is on, and the disk that partition belongs to. ok is false
// when path is not on a partition of a disk (tmpfs, overlay, a mapped
// or network device).
func DiskOf(path string) (d Disk, ok bool) {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return d, false
	}
	sys, err := filepath.EvalSymlinks(filepath.Join(sysfs, fmt.Sprintf("dev/block/%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))))
	if err != nil {
		return d, false
	}
	n, err := readInt(filepath.Join(sys, "partition"))
	if err != nil {
		return d, false // a whole disk or a mapped device: no partition table to read
	}
	d, ok = DiskNamed(filepath.Base(filepath.Dir(sys)))
	d.PadPart = n
	return d, ok
}

// DiskNamed is the disk /dev/name and its partitions, from sysfs.
func DiskNamed(name string) (d Disk, ok bool) {
	if name == "" || strings.ContainsAny(name, "/") {
		return d, false
	}
	sys := filepath.Join(sysfs, "block", name)
	kids, err := os.ReadDir(sys)
	if err != nil {
		return d, false
	}
	d = Disk{Dev: "/dev/" + name, Parts: map[int]string{}}
	for _, k := range kids {
		if n, err := readInt(filepath.Join(sys, k.Name(), "partition")); err == nil {
			d.Parts[n] = "/dev/" + k.Name()
		}
	}
	return d, true
}

func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// Holds says whether d is the disk the record was made for, or looks
// like a bootable pad: a partition with the record's GUIDs, or named as
// a bootable pad's. (Someone who renamed them all has made a disk that
// neither soulpad's boot nor this check takes for the pad's.)
func (r BootRecord) Holds(d Disk) bool {
	f, err := os.Open(d.Dev)
	if err != nil {
		return false
	}
	defer f.Close()
	es, err := readGPT(f, 128)
	if err != nil {
		return false
	}
	for _, e := range es {
		switch {
		case strings.EqualFold(e.GUID, r.SysGUID), strings.EqualFold(e.GUID, r.PadGUID),
			e.Name == "SOULPAD-SYS", e.Name == "SOULPAD-EFI", e.Name == "SOULPAD-PAD":
			return true
		}
	}
	return false
}

// CheckedAtBoot names the parts the boot itself checked against this
// record: the system partition, when the kernel's command line (GRUB's
// menu, on the EFI partition Check reads) gave the initramfs the digest
// the record holds for it, whole. cmdline is /proc/cmdline's.
func (r BootRecord) CheckedAtBoot(cmdline string) []string {
	for _, w := range strings.Fields(cmdline) {
		digest, ok := strings.CutPrefix(w, "soulpad.sysdigest=")
		if !ok {
			continue
		}
		for _, x := range r.Parts {
			if x.Name == "SOULPAD-SYS" && x.Part > 0 && x.Offset == 0 && x.SHA256 == digest {
				return []string{x.Name}
			}
		}
	}
	return nil
}

// Check compares d's boot chain with the record and names what differs
// in an error wrapping ErrBootChanged. A part is read from its partition's
// own device, or from the whole disk where the kernel shows no
// partitions (a loop device). The parts named in skip are not read.
func (r BootRecord) Check(ctx context.Context, d Disk, skip ...string) error {
	var changed []string
	for _, x := range r.Parts {
		if slices.Contains(skip, x.Name) {
			continue
		}
		dev, base := d.Dev, int64(0)
		if x.Part > 0 && d.Parts[x.Part] != "" {
			dev = d.Parts[x.Part]
		} else if x.Part > 0 {
			first, err := partStart(d.Dev, x.Part)
			if err != nil {
				changed = append(changed, fmt.Sprintf("%s is gone (%v)", x.Name, err))
				continue
			}
			base = first
		}
		sum, err := sumDevice(ctx, dev, base+x.Offset, x.Length)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch {
		case err != nil:
			changed = append(changed, fmt.Sprintf("%s cannot be read (%v)", x.Name, err))
		case sum != x.SHA256:
			changed = append(changed, fmt.Sprintf("%s changed (SHA-256 %s…, recorded %s…)", x.Name, sum[:12], x.SHA256[:12]))
		}
	}
	if len(changed) == 0 {
		return nil
	}
	return fmt.Errorf("%w since the vault recorded them: %s, on %s", ErrBootChanged, strings.Join(changed, "; "), d.Dev)
}

// partStart is where partition n of disk dev starts, in bytes, as its
// GPT says.
func partStart(dev string, n int) (int64, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	es, err := readGPT(f, n)
	if err != nil {
		return 0, err
	}
	for _, e := range es {
		if e.Num == n {
			return e.First * 512, nil
		}
	}
	return 0, fmt.Errorf("no partition %d on %s", n, dev)
}

func sumDevice(ctx context.Context, dev string, off, n int64) (string, error) {
	f, err := os.Open(dev)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return sumRange(ctx, f, off, n)
}
