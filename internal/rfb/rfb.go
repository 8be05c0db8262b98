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
	"sync"
	"sync/atomic"
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
	cl, err := newClient(c, encRaw)
	if err != nil {
		return nil, err
	}
	w, h := cl.Size()
	covered := make([]bool, w*h)
	left := w * h
	for left > 0 {
		rects, err := cl.Update(false)
		if err != nil {
			return nil, err
		}
		for _, r := range rects {
			for y := r.Min.Y; y < r.Max.Y; y++ {
				for x := r.Min.X; x < r.Max.X; x++ {
					if !covered[y*w+x] {
						covered[y*w+x] = true
						left--
					}
				}
			}
		}
	}
	return cl.Screen, nil
}

// Encodings this client takes.
const (
	encRaw         = 0
	encCopyRect    = 1
	encDesktopSize = -223 // pseudo: the screen changed size
	encExtKeyEvent = -258 // pseudo: QEMU's key events by scan code
)

// Client is a connection to a VNC server with the screen as last seen.
type Client struct {
	c       io.Writer
	r       *bufio.Reader
	Screen  *image.RGBA
	extKeys atomic.Bool
	// dims is the screen's width<<32 | height, for Pointer from other
	// goroutines than the one that updates Screen.
	dims atomic.Uint64
	wmu  sync.Mutex
	// asked are the encodings this client asked for: a server that sends
	// another is broken or hostile.
	asked map[int32]bool
}

// Dial does the handshake on c and asks for Raw and CopyRect pixels,
// screen size changes, and key events by scan code.
func Dial(c io.ReadWriter) (*Client, error) {
	return newClient(c, encRaw, encCopyRect, encDesktopSize, encExtKeyEvent)
}

func newClient(c io.ReadWriter, encodings ...int32) (*Client, error) {
	r := bufio.NewReader(c)
	w, h, err := handshake(r, c)
	if err != nil {
		return nil, err
	}
	// 32 bits per pixel, little endian, true colour, 8 bits per channel:
	// red at bit 0, green at 8, blue at 16 (RGBA's byte order).
	msg := []byte{0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 0, 8, 16, 0, 0, 0}
	msg = append(msg, 2, 0)
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(encodings)))
	for _, e := range encodings {
		msg = binary.BigEndian.AppendUint32(msg, uint32(e))
	}
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	asked := map[int32]bool{}
	for _, e := range encodings {
		asked[e] = true
	}
	cl := &Client{c: c, r: r, Screen: image.NewRGBA(image.Rect(0, 0, w, h)), asked: asked}
	cl.dims.Store(uint64(w)<<32 | uint64(h))
	return cl, nil
}

// ExtKeys says whether the server takes key events by scan code (Key);
// it knows after the first Update.
func (cl *Client) ExtKeys() bool { return cl.extKeys.Load() }

// Size is the screen's size.
func (cl *Client) Size() (int, int) { return cl.Screen.Rect.Dx(), cl.Screen.Rect.Dy() }

func (cl *Client) write(b []byte) error {
	cl.wmu.Lock()
	defer cl.wmu.Unlock()
	_, err := cl.c.Write(b)
	return err
}

// Key presses (down) or releases a key given by its XT scan code as QEMU
// numbers them (0x01 Esc … 0x58 F12; 0x80|code for the 0xE0-prefixed
// keys). Without ExtKeys it sends nothing.
func (cl *Client) Key(down bool, qnum uint32) error {
	if !cl.ExtKeys() {
		return nil
	}
	b := []byte{255, 0, 0, 0}
	if down {
		b[3] = 1
	}
	b = binary.BigEndian.AppendUint32(b, 0) // keysym: the scan code says it
	b = binary.BigEndian.AppendUint32(b, qnum)
	return cl.write(b)
}

// Dims is the screen's size, safe to ask beside Update.
func (cl *Client) Dims() (w, h int) {
	d := cl.dims.Load()
	return int(d >> 32), int(d & 0xffffffff)
}

// Pointer buttons, as Pointer's mask takes them.
const (
	ButtonLeft   = 1 << 0
	ButtonMiddle = 1 << 1
	ButtonRight  = 1 << 2
	WheelUp      = 1 << 3
	WheelDown    = 1 << 4
)

// Pointer moves the pointer to (x, y) on the screen, clamped to it, with
// the buttons in mask pressed. QEMU gives it to the machine's tablet as
// an absolute position. It may be called beside Update.
func (cl *Client) Pointer(mask uint8, x, y int) error {
	w, h := cl.Dims()
	x, y = max(0, min(x, w-1)), max(0, min(y, h-1))
	b := []byte{5, mask}
	b = binary.BigEndian.AppendUint16(b, uint16(x))
	b = binary.BigEndian.AppendUint16(b, uint16(y))
	return cl.write(b)
}

// Update asks for the screen (what changed since the last update when
// incremental) and reads the server's messages until one framebuffer
// update has been applied to Screen. It returns the rectangles that
// changed; a size change replaces Screen and returns it whole.
func (cl *Client) Update(incremental bool) ([]image.Rectangle, error) {
	req := []byte{3, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if incremental {
		req[1] = 1
	}
	w, h := cl.Size()
	binary.BigEndian.PutUint16(req[6:], uint16(w))
	binary.BigEndian.PutUint16(req[8:], uint16(h))
	if err := cl.write(req); err != nil {
		return nil, err
	}
	r := cl.r
	for {
		t, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		switch t {
		case 0: // FramebufferUpdate
			return cl.readRects()
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
}

func (cl *Client) readRects() ([]image.Rectangle, error) {
	r := cl.r
	var hd [3]byte
	if _, err := io.ReadFull(r, hd[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hd[1:]))
	if n > maxRects {
		return nil, protoErr("%d rectangles", n)
	}
	var out []image.Rectangle
	for i := 0; i < n; i++ {
		var rh [12]byte
		if _, err := io.ReadFull(r, rh[:]); err != nil {
			return nil, err
		}
		x, y := int(binary.BigEndian.Uint16(rh[0:])), int(binary.BigEndian.Uint16(rh[2:]))
		rw, rht := int(binary.BigEndian.Uint16(rh[4:])), int(binary.BigEndian.Uint16(rh[6:]))
		rect := image.Rect(x, y, x+rw, y+rht)
		e := int32(binary.BigEndian.Uint32(rh[8:]))
		if !cl.asked[e] {
			return nil, protoErr("rectangle encoding %d, not one asked for", e)
		}
		switch e {
		case encDesktopSize:
			if rw == 0 || rht == 0 || rw > MaxSide || rht > MaxSide {
				return nil, protoErr("screen size %dx%d", rw, rht)
			}
			cl.Screen = image.NewRGBA(image.Rect(0, 0, rw, rht))
			cl.dims.Store(uint64(rw)<<32 | uint64(rht))
			out = append(out[:0], cl.Screen.Rect)
			continue
		case encExtKeyEvent:
			cl.extKeys.Store(true)
			continue
		case encRaw, encCopyRect:
			if !rect.In(cl.Screen.Rect) {
				return nil, protoErr("rectangle %v outside the %v screen", rect, cl.Screen.Rect)
			}
			if e == encCopyRect {
				var src [4]byte
				if _, err := io.ReadFull(r, src[:]); err != nil {
					return nil, err
				}
				if rect.Empty() {
					continue // nothing moves (and no pixel offset is taken)
				}
				sx, sy := int(binary.BigEndian.Uint16(src[0:])), int(binary.BigEndian.Uint16(src[2:]))
				from := image.Rect(sx, sy, sx+rw, sy+rht)
				if !from.In(cl.Screen.Rect) {
					return nil, protoErr("copy from %v outside the %v screen", from, cl.Screen.Rect)
				}
				copyRect(cl.Screen, rect, from.Min)
			} else if !rect.Empty() { // an empty one carries no pixels
				row := make([]byte, rw*4)
				for yy := y; yy < y+rht; yy++ {
					if _, err := io.ReadFull(r, row); err != nil {
						return nil, err
					}
					off := cl.Screen.PixOffset(x, yy)
					copy(cl.Screen.Pix[off:off+len(row)], row)
					for k := 3; k < len(row); k += 4 {
						cl.Screen.Pix[off+k] = 0xff
					}
				}
			}
			if !rect.Empty() {
				out = append(out, rect)
			}
		default:
			return nil, protoErr("rectangle encoding %d, not one asked for", e)
		}
	}
	return out, nil
}

// copyRect copies the pixels at from (the size of dst) onto dst, as
// overlapping moves do.
func copyRect(img *image.RGBA, dst image.Rectangle, from image.Point) {
	w := dst.Dx() * 4
	tmp := make([]byte, w*dst.Dy())
	for y := 0; y < dst.Dy(); y++ {
		o := img.PixOffset(from.X, from.Y+y)
		copy(tmp[y*w:], img.Pix[o:o+w])
	}
	for y := 0; y < dst.Dy(); y++ {
		o := img.PixOffset(dst.Min.X, dst.Min.Y+y)
		copy(img.Pix[o:o+w], tmp[y*w:(y+1)*w])
	}
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
