package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/internal/ctxio"
	"github.com/soulpad/soulpad/sdk/vmm"
	"github.com/soulpad/soulpad/sdk/vmm/diskchain"
)

// MediaFile is the installer in the machine's CD-ROM drive, in the
// machine's directory inside the vault.
const MediaFile = "media.iso"

// CheckISO refuses what is not an ISO 9660 image (a CD or DVD image, as
// installers come): its primary volume descriptor must be where the
// standard puts it. It returns the image's size.
func CheckISO(path string) (int64, error) {
	refuse := func(why string, a ...any) (int64, error) {
		return 0, &ImageError{Path: path, Why: fmt.Sprintf(why, a...)}
	}
	f, err := os.Open(path)
	if err != nil {
		return refuse("%v", errors.Unwrap(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !st.Mode().IsRegular() {
		return refuse("it is not a regular file")
	}
	// Sector 16 (of 2048 bytes): type 1, "CD001", version 1.
	b := make([]byte, 7)
	if _, err := f.ReadAt(b, 16*2048); err != nil || string(b[1:6]) != "CD001" {
		return refuse("it is not an ISO 9660 image (an installer CD or DVD): no volume descriptor at sector 16")
	}
	if st.Size()%2048 != 0 {
		return refuse("it is truncated or damaged: %d bytes is not a whole number of 2048-byte sectors", st.Size())
	}
	// The volume's size (sector 16, bytes 80–83, little-endian) must fit
	// in the file.
	sz := make([]byte, 4)
	if _, err := f.ReadAt(sz, 16*2048+80); err != nil {
		return refuse("it is truncated")
	}
	blocks := int64(sz[0]) | int64(sz[1])<<8 | int64(sz[2])<<16 | int64(sz[3])<<24
	if blocks*2048 > st.Size() {
		return refuse("it is truncated: its volume has %d sectors, the file only %d", blocks, st.Size()/2048)
	}
	return st.Size(), nil
}

// vaultFree is the room left in the unlocked vault.
func vaultFree(plain string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(plain, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// insertMedia copies the ISO into the machine's directory (never
// anywhere else on this PC) and returns the spec with it in the drive.
func insertMedia(ctx context.Context, plain string, m *pad.Machine, spec vmm.Spec, iso string, progress func(done, total int64)) (vmm.Spec, error) {
	size, err := CheckISO(iso)
	if err != nil {
		return spec, err
	}
	free, err := vaultFree(plain)
	if err != nil {
		return spec, err
	}
	if spec.Media != "" {
		if st, err := os.Stat(filepath.Join(m.Dir, spec.Media)); err == nil {
			free += st.Size() // the old one goes
		}
	}
	if need := size + 64<<20; need > free {
		return spec, &ImageError{Path: iso, Why: fmt.Sprintf("it does not fit the vault: it takes %s and the vault has %s free", humanBytes(size), humanBytes(free))}
	}
	in, err := os.Open(iso)
	if err != nil {
		return spec, err
	}
	defer in.Close()
	part := filepath.Join(m.Dir, MediaFile+".part")
	out, err := os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return spec, err
	}
	defer os.Remove(part)
	pw := &progressWriter{w: out, total: size, f: progress}
	if _, err := io.Copy(pw, ctxio.Reader{Ctx: ctx, R: in}); err != nil {
		out.Close()
		return spec, fmt.Errorf("copying %s into the vault: %w", iso, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return spec, err
	}
	if err := out.Close(); err != nil {
		return spec, err
	}
	if err := os.Rename(part, filepath.Join(m.Dir, MediaFile)); err != nil {
		return spec, err
	}
	spec.Media = MediaFile
	return spec, nil
}

type progressWriter struct {
	w     io.Writer
	done  int64
	total int64
	f     func(done, total int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	if p.f != nil {
		p.f(p.done, p.total)
	}
	return n, err
}

// InsertMedia puts an installer ISO in the machine's CD-ROM drive: it is
// copied into the vault (it travels with the pad while it is in), and the
// machine boots from it until it is ejected. A running machine sees it at
// its next start; a suspended one finds it in the drive when it resumes.
func (v *OpenedVault) InsertMedia(ctx context.Context, iso string, progress func(done, total int64)) error {
	spec, err := insertMedia(ctx, v.plaintext, v.machine, v.machineSpec, iso, progress)
	if err != nil {
		return err
	}
	if err := v.machine.WriteSpec(spec); err != nil {
		return err
	}
	v.machineSpec = spec
	return nil
}

// EjectMedia empties the CD-ROM drive and removes the ISO from the vault;
// it returns false when the drive was empty.
func (v *OpenedVault) EjectMedia() (bool, error) {
	spec := v.machineSpec
	if spec.Media == "" {
		return false, nil
	}
	file := filepath.Join(v.machine.Dir, spec.Media)
	spec.Media = ""
	if err := v.machine.WriteSpec(spec); err != nil {
		return false, err
	}
	v.machineSpec = spec
	if err := os.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
		return true, err
	}
	return true, nil
}

// MediaSize is the size of the ISO in the drive (0 when empty).
func (v *Vault) MediaSize() int64 {
	if v.machineSpec.Media == "" {
		return 0
	}
	st, err := os.Stat(filepath.Join(v.machine.Dir, v.machineSpec.Media))
	if err != nil {
		return 0
	}
	return st.Size()
}

// DiskMiB is the size of the machine's first disk now, in MiB.
func (v *Vault) DiskMiB() uint64 {
	if len(v.machineSpec.Disks) == 0 {
		return 0
	}
	return uint64(v.diskSize(v.machineSpec.Disks[0]) >> 20)
}

// diskSize is the size the guest sees of the disk's latest state.
func (v *Vault) diskSize(d vmm.Disk) int64 {
	cur := int64(d.SizeMiB) << 20
	if top, err := diskchain.Current(v.machine.Dir, d); err == nil && top != "" {
		if n, err := diskchain.VirtualSize(filepath.Join(diskchain.DiskDir(v.machine.Dir, d), top), "qcow2"); err == nil && n > cur {
			cur = n
		}
	} else if n, err := diskchain.VirtualSize(diskchain.BasePath(v.machine.Dir, d), d.Format); err == nil && n > cur {
		cur = n
	}
	return cur
}

// DiskGrowth says what GrowDisk did.
type DiskGrowth struct {
	Disk           string
	From, To, Free int64
}

// GrowDisk makes the machine's first disk sizeMiB large: the machine sees
// the new size from its next start or resume (the guest grows its
// partition and file system itself). A disk never shrinks.
func (v *OpenedVault) GrowDisk(sizeMiB uint64) (DiskGrowth, error) {
	spec := v.machineSpec
	if len(spec.Disks) == 0 {
		return DiskGrowth{}, usageError("the machine has no disk to grow")
	}
	d := &spec.Disks[0]
	cur := v.diskSize(*d)
	want := int64(sizeMiB) << 20
	if want <= cur {
		return DiskGrowth{}, usageError(fmt.Sprintf("disk %s is %s already; a disk only grows (give a larger size)", d.Name, humanBytes(cur)))
	}
	d.SizeMiB = sizeMiB
	if err := v.machine.WriteSpec(spec); err != nil {
		return DiskGrowth{}, err
	}
	v.machineSpec = spec
	free, _ := vaultFree(v.plaintext)
	return DiskGrowth{Disk: d.Name, From: cur, To: want, Free: free}, nil
}

// usageError is a request the pad cannot take as given (exit 2).
type usageError string

func (e usageError) Error() string { return string(e) }

// IsUsage reports whether err is a request to correct, not a failure.
func IsUsage(err error) bool {
	var u usageError
	return errors.As(err, &u)
}
