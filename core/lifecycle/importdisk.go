package lifecycle

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// DiskImage is a disk image checked for `soulpad init --disk`: what
// qemu-img makes of it, and what importing it needs.
type DiskImage struct {
	// Path is the file the user gave.
	Path string
	// Format is qemu-img's name for the image's format ("vmdk", "vdi", …).
	Format string
	// Member is, for an OVA, the disk's name inside the archive.
	Member string
	// VirtualSize is the disk's size as the guest sees it, in bytes.
	VirtualSize int64
	// Required is what the disk takes as a qcow2 file in the vault (qemu-img
	// measure: the data, not the zeros).
	Required int64
	// source is qemu-img's name for the image (a json: name for an OVA's
	// member, so nothing is unpacked onto the host's disk).
	source string
	// abs is the image's file; offset its first byte there (an OVA's
	// member).
	abs    string
	offset int64
	// fileSize is the bytes the image's data lies in (the member's size
	// for an OVA).
	fileSize int64
}

// ImageError refuses a disk image or ISO the user gave: it says which
// file and why (a wrong argument, not a failure of the pad).
type ImageError struct{ Path, Why string }

func (e *ImageError) Error() string { return fmt.Sprintf("cannot use %s: %s", e.Path, e.Why) }

// DiskFormats are the formats `init --disk` imports.
var DiskFormats = []string{"qcow2", "raw", "vmdk", "vdi", "vhdx", "vpc"}

// qemuImg runs qemu-img and returns its standard output.
func qemuImg(ctx context.Context, args ...string) ([]byte, error) {
	bin, err := exec.LookPath("qemu-img")
	if err != nil {
		return nil, errors.New("importing a disk image needs qemu-img (Debian: apt-get install qemu-utils)")
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlives soulpad
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		msg = strings.TrimPrefix(msg, "qemu-img: ")
		if msg == "" {
			msg = err.Error()
		}
		return out, errors.New(msg)
	}
	return out, nil
}

// imageInfo is the part of `qemu-img info --output=json` the import reads.
type imageInfo struct {
	Format          string `json:"format"`
	VirtualSize     int64  `json:"virtual-size"`
	BackingFilename string `json:"backing-filename"`
	DataFile        string `json:"data-file"`
	DirtyFlag       bool   `json:"dirty-flag"`
	FormatSpecific  struct {
		Type string `json:"type"`
		Data struct {
			CreateType string `json:"create-type"`
			DataFile   string `json:"data-file"`
			Extents    []struct {
				Filename string `json:"filename"`
			} `json:"extents"`
			Corrupt bool `json:"corrupt"`
		} `json:"data"`
	} `json:"format-specific"`
}

// parseImageInfo reads qemu-img info's JSON and refuses what the import
// must not take: another format than those it knows, a backing file or
// data file or extent outside the image (it would copy a file of the
// host's into the vault), a corrupt or dirty image.
func parseImageInfo(b []byte, isSelf func(string) bool) (imageInfo, error) {
	var in imageInfo
	if err := json.Unmarshal(b, &in); err != nil {
		return in, fmt.Errorf("qemu-img info said what soulpad cannot read: %v", err)
	}
	known := false
	for _, f := range DiskFormats {
		known = known || in.Format == f
	}
	switch {
	case !known:
		return in, fmt.Errorf("it is a %q image; soulpad imports %s", in.Format, strings.Join(DiskFormats, ", "))
	case in.VirtualSize <= 0:
		return in, fmt.Errorf("qemu-img gives it a size of %d bytes", in.VirtualSize)
	case in.BackingFilename != "":
		return in, fmt.Errorf("it is an overlay on a backing file outside itself (%q); make it whole first: qemu-img convert -O qcow2 IMAGE whole.qcow2", in.BackingFilename)
	case in.DataFile != "" || in.FormatSpecific.Data.DataFile != "":
		return in, errors.New("its data lies in a file outside itself (a qcow2 data file); make it whole first: qemu-img convert -O qcow2 IMAGE whole.qcow2")
	case in.FormatSpecific.Data.Corrupt:
		return in, errors.New("qemu-img marks it corrupt; repair it with qemu-img check -r all first")
	case in.DirtyFlag:
		return in, errors.New("it was not closed cleanly (dirty); run the VM it belongs to once and shut it down, or qemu-img check -r all")
	}
	for _, e := range in.FormatSpecific.Data.Extents {
		if !isSelf(e.Filename) {
			return in, fmt.Errorf("its data lies in files outside itself (extent %q); export it as one file (a stream-optimised VMDK or an OVA)", e.Filename)
		}
	}
	return in, nil
}

// mapEntry is one line of `qemu-img map --output=json`.
type mapEntry struct {
	Start  int64  `json:"start"`
	Length int64  `json:"length"`
	Data   bool   `json:"data"`
	Offset *int64 `json:"offset"`
}

// checkMap refuses an image whose data the map places past the end of
// its file: a truncated image, whose missing part qemu-img would
// otherwise read as zeros.
func checkMap(b []byte, fileSize int64) error {
	var ents []mapEntry
	if err := json.Unmarshal(b, &ents); err != nil {
		return fmt.Errorf("qemu-img map said what soulpad cannot read: %v", err)
	}
	for _, e := range ents {
		if !e.Data || e.Offset == nil {
			continue
		}
		if *e.Offset < 0 || e.Length < 0 || *e.Offset > fileSize || e.Length > fileSize-*e.Offset {
			return fmt.Errorf("it is truncated: its data reaches past byte %d of a file of %d bytes", *e.Offset, fileSize)
		}
	}
	return nil
}

// ovaDisk finds the first disk image inside an OVA (a tar of an OVF
// description and its disks) and where its bytes lie, so that qemu-img
// reads it in place.
func ovaDisk(r io.Reader) (name string, offset, size int64, err error) {
	cr := &countingReader{r: r}
	tr := tar.NewReader(cr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return "", 0, 0, errors.New("it is an OVA with no disk image in it (no .vmdk, .vhd, .vhdx, .qcow2, .img or .raw member)")
		}
		if err != nil {
			return "", 0, 0, fmt.Errorf("it is not a whole OVA (tar) archive: %v", err)
		}
		ext := strings.ToLower(filepath.Ext(h.Name))
		switch ext {
		case ".vmdk", ".vhd", ".vhdx", ".qcow2", ".img", ".raw", ".vdi":
		default:
			continue
		}
		if h.Typeflag != tar.TypeReg || h.Size <= 0 {
			return "", 0, 0, fmt.Errorf("its disk %q is not a plain file in the archive", h.Name)
		}
		return h.Name, cr.n, h.Size, nil
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// isTar reports whether the file starts with a tar header (ustar magic).
func isTar(f *os.File) bool {
	b := make([]byte, 265)
	if _, err := f.ReadAt(b, 0); err != nil {
		return false
	}
	return bytes.HasPrefix(b[257:], []byte("ustar"))
}

// hasPartitionTable reports whether the file's first sector ends with
// the MBR (or GPT protective MBR) signature.
func hasPartitionTable(f *os.File) bool {
	b := make([]byte, 2)
	if _, err := f.ReadAt(b, 510); err != nil {
		return false
	}
	return b[0] == 0x55 && b[1] == 0xaa
}

// InspectDisk checks a disk image for import. format, when not empty,
// is what the user says the image is (needed for a raw disk without a
// partition table, which is otherwise any file at all).
func InspectDisk(ctx context.Context, path, format string) (*DiskImage, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	refuse := func(why string, a ...any) error {
		return &ImageError{Path: path, Why: fmt.Sprintf(why, a...)}
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, refuse("%v", errors.Unwrap(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, refuse("it is not a regular file")
	}
	d := &DiskImage{Path: path, source: abs, abs: abs, fileSize: st.Size()}
	fileOpts := fmt.Sprintf(`{"driver":"file","filename":%s}`, jsonString(abs))
	if isTar(f) {
		name, off, size, err := ovaDisk(bufio.NewReaderSize(f, 64<<10))
		if err != nil {
			return nil, refuse("%v", err)
		}
		if off+size > st.Size() {
			return nil, refuse("it is truncated: the OVA's disk %q ends past the end of the file", name)
		}
		d.Member, d.offset, d.fileSize = name, off, size
		d.source = fmt.Sprintf(`json:{"file":{"driver":"raw","offset":%d,"size":%d,"file":%s}}`, off, size, fileOpts)
	}
	args := []string{"info", "--output=json"}
	if format != "" {
		args = append(args, "-f", format)
	}
	out, err := qemuImg(ctx, append(args, d.source)...)
	if err != nil {
		return nil, refuse("qemu-img cannot read it as a disk image: %v", err)
	}
	in, err := parseImageInfo(out, d.isSelf)
	if err != nil {
		return nil, refuse("%v", err)
	}
	d.Format, d.VirtualSize = in.Format, in.VirtualSize
	if in.Format == "raw" && format == "" && d.Member == "" {
		if !hasPartitionTable(f) {
			return nil, refuse("it has no image format qemu-img knows and no partition table, so it does not look like a disk; if it is a raw disk all the same, say so with --disk-format raw")
		}
	}
	src := d.formatted()
	if out, err := qemuImg(ctx, "map", "--output=json", src); err != nil {
		return nil, refuse("qemu-img cannot read its map (truncated or damaged?): %v", err)
	} else if err := checkMap(out, d.fileSize); err != nil {
		return nil, refuse("%v", err)
	}
	if d.Format != "raw" {
		if out, err := qemuImg(ctx, "check", "-f", d.Format, d.source); err != nil && !strings.Contains(err.Error(), "does not support checks") {
			return nil, refuse("qemu-img check found it damaged or truncated: %s", lastLines(string(out)+" "+err.Error()))
		}
	}
	out, err = qemuImg(ctx, "measure", "--output=json", "-O", "qcow2", src)
	if err != nil {
		return nil, refuse("qemu-img cannot measure it: %v", err)
	}
	var m struct {
		Required int64 `json:"required"`
	}
	if err := json.Unmarshal(out, &m); err != nil || m.Required <= 0 {
		return nil, refuse("qemu-img measure said what soulpad cannot read")
	}
	d.Required = m.Required
	return d, nil
}

// formatted is the image's name for qemu-img with its format fixed, so
// that nothing is probed twice (and a raw disk is read as raw).
func (d *DiskImage) formatted() string {
	if d.Member == "" {
		return fmt.Sprintf(`json:{"driver":%s,"file":{"driver":"file","filename":%s}}`, jsonString(d.Format), jsonString(d.source))
	}
	return `json:{"driver":` + jsonString(d.Format) + "," + strings.TrimPrefix(d.source, "json:{")
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// isSelf reports whether qemu-img's name for an extent is the image's
// own file (for an OVA: the member's bytes in the OVA, which qemu-img
// names in JSON).
func (d *DiskImage) isSelf(name string) bool {
	if d.Member == "" {
		return name == d.abs
	}
	j, ok := strings.CutPrefix(name, "json:")
	if !ok {
		return false
	}
	var n struct {
		Driver string `json:"driver"`
		Offset int64  `json:"offset"`
		Size   int64  `json:"size"`
		File   struct {
			Driver   string `json:"driver"`
			Filename string `json:"filename"`
		} `json:"file"`
	}
	return json.Unmarshal([]byte(j), &n) == nil && n.Driver == "raw" && n.Offset == d.offset && n.Size == d.fileSize &&
		n.File.Driver == "file" && n.File.Filename == d.abs
}

func lastLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return strings.Join(lines, "; ")
}

// Convert writes the image into dst as qcow2: zeros are not written,
// nothing is staged elsewhere, and progress reports bytes of the disk
// done.
func (d *DiskImage) Convert(ctx context.Context, dst string, progress func(done, total int64)) error {
	bin, err := exec.LookPath("qemu-img")
	if err != nil {
		return errors.New("importing a disk image needs qemu-img (Debian: apt-get install qemu-utils)")
	}
	cmd := exec.CommandContext(ctx, bin, "convert", "-p", "-O", "qcow2", d.formatted(), dst)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlives soulpad
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	readProgress(stdout, func(pct float64) {
		if progress != nil {
			progress(int64(pct/100*float64(d.VirtualSize)), d.VirtualSize)
		}
	})
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &ImageError{Path: d.Path, Why: "qemu-img convert: " + strings.TrimPrefix(strings.TrimSpace(stderr.String()), "qemu-img: ")}
	}
	if progress != nil {
		progress(d.VirtualSize, d.VirtualSize)
	}
	return nil
}

// readProgress reads qemu-img -p's "    (12.34/100%)\r" lines.
func readProgress(r io.Reader, f func(pct float64)) {
	sc := bufio.NewScanner(r)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	for sc.Scan() {
		s := strings.TrimSpace(sc.Text())
		s = strings.TrimPrefix(s, "(")
		if i := strings.Index(s, "/100%"); i > 0 {
			if pct, err := strconv.ParseFloat(s[:i], 64); err == nil && pct >= 0 && pct <= 100 {
				f(pct)
			}
		}
	}
	_, _ = io.Copy(io.Discard, r)
}
