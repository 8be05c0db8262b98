package diskchain

// Reading qcow2 headers without qemu-img: the size the guest sees and
// the backing file an overlay names.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/soulpad/soulpad/sdk"
)

// VirtualSize is the size the guest sees of a qcow2 or raw image.
func VirtualSize(path, format string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if format == "raw" {
		st, err := f.Stat()
		if err != nil {
			return 0, err
		}
		return st.Size(), nil
	}
	hdr := make([]byte, 32)
	if _, err := io.ReadFull(f, hdr); err != nil || string(hdr[:4]) != "QFI\xfb" {
		return 0, fmt.Errorf("%s: not a qcow2 image: %w", path, sdk.ErrCorrupt)
	}
	return int64(binary.BigEndian.Uint64(hdr[24:32])), nil
}

// backingName reads the backing file name from a qcow2 header; "" when
// the image has none.
func backingName(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	hdr := make([]byte, 64<<10)
	n, err := io.ReadFull(f, hdr)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	name, err := ParseBacking(hdr[:n])
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return name, nil
}

// ParseBacking returns the backing file name in the first bytes of a
// qcow2 image (at least the header and the name), "" for none.
func ParseBacking(b []byte) (string, error) {
	if len(b) < 20 || string(b[:4]) != "QFI\xfb" {
		return "", fmt.Errorf("not a qcow2 image: %w", sdk.ErrCorrupt)
	}
	if v := binary.BigEndian.Uint32(b[4:8]); v != 2 && v != 3 {
		return "", fmt.Errorf("qcow2 version %d: %w", v, sdk.ErrCorrupt)
	}
	off := binary.BigEndian.Uint64(b[8:16])
	size := binary.BigEndian.Uint32(b[16:20])
	if off == 0 || size == 0 {
		return "", nil
	}
	if size > 1023 || off > uint64(len(b)) || off+uint64(size) > uint64(len(b)) {
		return "", fmt.Errorf("qcow2 backing file name out of range (offset %d, %d bytes): %w", off, size, sdk.ErrCorrupt)
	}
	return string(b[off : off+uint64(size)]), nil
}
