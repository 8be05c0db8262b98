// Package rfb is the small VNC (RFB 3.8) client `soulpad view` uses to
// take a screenshot of a running machine's screen: version and security
// handshake (no authentication; the socket is private), one full
// framebuffer update in Raw encoding, as an image.
package rfb

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"io"
	"time"
)

// Limits on what a server may announce.
const (
	MaxSide    = 8192
	maxName    = 1 << 16
	maxReason  = 1 << 16
	maxCutText = 1 << 20
	maxRects   = 1 << 16
)

// ErrProtocol: the server said something this client does not take.
var ErrProtocol = errors.New("rfb: protocol error")

func protoErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, a...))
}

// Conn is what Capture talks over (a net.Conn).
type Conn interface {
	io.ReadWriter
	SetDeadline(time.Time) error
}

// Capture reads the whole screen once.
func Capture(c Conn, timeout time.Duration) (*image.RGBA, error) {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	w, h, err := handshake(r, c)
	if err != nil {
		return nil, err
	}
	// 32 bits per pixel, little endian, true colour, 8 bits per channel:
	// red at bit 0, green at 8, blue at 16 (RGBA's byte order).
	pf := []byte{0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 0, 8, 16, 0, 0, 0}
	enc := []byte{2, 0, 0, 1, 0, 0, 0, 0} // SetEncodings: Raw
	req := []byte{3, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(req[6:], uint16(w))
	binary.BigEndian.PutUint16(req[8:], uint16(h))
	if _, err := c.Write(append(append(pf, enc...), req...)); err != nil {
		return nil, err
	}
	return readFrame(r, w, h)
}

// handshake does the version, security and init exchange and returns the
// screen's size.
func handshake(r *bufio.Reader, w io.Writer) (int, int, error) {
	var ver [12]byte
	if _, err := io.ReadFull(r, ver[:]); err != nil {
		return 0, 0, err
	}
	var major, minor int
	if n, _ := fmt.Sscanf(string(ver[:]), "RFB %03d.%03d\n", &major, &minor); n != 2 || major != 3 || minor < 8 {
		return 0, 0, protoErr("server version %q, want RFB 003.008", ver[:])
	}
	if _, err := io.WriteString(w, "RFB 003.008\n"); err != nil {
		return 0, 0, err
	}
	n, err := r.ReadByte()
	if err != nil {
		return 0, 0, err
	}
	if n == 0 {
		return 0, 0, protoErr("server refused: %s", readString(r, maxReason))
	}
	types := make([]byte, n)
	if _, err := io.ReadFull(r, types); err != nil {
		return 0, 0, err
	}
	none := false
	for _, t := range types {
		none = none || t == 1
	}
	if !none {
		return 0, 0, protoErr("the server asks for authentication (types %v); soulpad's screens need none", types)
	}
	if _, err := w.Write([]byte{1}); err != nil { // security type None
		return 0, 0, err
	}
	var res [4]byte
	if _, err := io.ReadFull(r, res[:]); err != nil {
		return 0, 0, err
	}
	if binary.BigEndian.Uint32(res[:]) != 0 {
		return 0, 0, protoErr("security handshake failed: %s", readString(r, maxReason))
	}
	if _, err := w.Write([]byte{1}); err != nil { // ClientInit: shared
		return 0, 0, err
	}
	var init [24]byte
	if _, err := io.ReadFull(r, init[:]); err != nil {
		return 0, 0, err
	}
	wd, ht := int(binary.BigEndian.Uint16(init[0:])), int(binary.BigEndian.Uint16(init[2:]))
	if wd == 0 || ht == 0 || wd > MaxSide || ht > MaxSide {
		return 0, 0, protoErr("screen size %dx%d", wd, ht)
	}
	nameLen := binary.BigEndian.Uint32(init[20:])
	if nameLen > maxName {
		return 0, 0, protoErr("name of %d bytes", nameLen)
	}
	if _, err := io.CopyN(io.Discard, r, int64(nameLen)); err != nil {
		return 0, 0, err
	}
	return wd, ht, nil
}

// readFrame reads server messages until one framebuffer update has
// covered the whole screen.
func readFrame(r *bufio.Reader, w, h int) (*image.RGBA, error) {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	covered := make([]bool, w*h)
	left := w * h
	for left > 0 {
		t, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		switch t {
		case 0: // FramebufferUpdate
			var hd [3]byte
			if _, err := io.ReadFull(r, hd[:]); err != nil {
				return nil, err
			}
			n := int(binary.BigEndian.Uint16(hd[1:]))
			if n > maxRects {
				return nil, protoErr("%d rectangles", n)
			}
			for i := 0; i < n; i++ {
				var rh [12]byte
				if _, err := io.ReadFull(r, rh[:]); err != nil {
					return nil, err
				}
				x, y := int(binary.BigEndian.Uint16(rh[0:])), int(binary.BigEndian.Uint16(rh[2:]))
				rw, rh2 := int(binary.BigEndian.Uint16(rh[4:])), int(binary.BigEndian.Uint16(rh[6:]))
				if e := int32(binary.BigEndian.Uint32(rh[8:])); e != 0 {
					return nil, protoErr("rectangle encoding %d, asked for Raw (0)", e)
				}
				if x+rw > w || y+rh2 > h {
					return nil, protoErr("rectangle %dx%d at %d,%d outside the %dx%d screen", rw, rh2, x, y, w, h)
				}
				row := make([]byte, rw*4)
				for yy := y; yy < y+rh2; yy++ {
					if _, err := io.ReadFull(r, row); err != nil {
						return nil, err
					}
					off := img.PixOffset(x, yy)
					copy(img.Pix[off:off+len(row)], row)
					for xx := x; xx < x+rw; xx++ {
						img.Pix[img.PixOffset(xx, yy)+3] = 0xff
						if !covered[yy*w+xx] {
							covered[yy*w+xx] = true
							left--
						}
					}
				}
			}
		case 1: // SetColourMapEntries
			var hd [5]byte
			if _, err := io.ReadFull(r, hd[:]); err != nil {
				return nil, err
			}
			if _, err := io.CopyN(io.Discard, r, int64(binary.BigEndian.Uint16(hd[3:]))*6); err != nil {
				return nil, err
			}
		case 2: // Bell
		case 3: // ServerCutText
			var hd [7]byte
			if _, err := io.ReadFull(r, hd[:]); err != nil {
				return nil, err
			}
			n := binary.BigEndian.Uint32(hd[3:])
			if n > maxCutText {
				return nil, protoErr("cut text of %d bytes", n)
			}
			if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
				return nil, err
			}
		default:
			return nil, protoErr("server message type %d", t)
		}
	}
	return img, nil
}

func readString(r io.Reader, max uint32) string {
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return "(no reason given)"
	}
	n := binary.BigEndian.Uint32(l[:])
	if n > max {
		n = max
	}
	b := make([]byte, n)
	k, _ := io.ReadFull(r, b)
	return string(b[:k])
}
