// Package fbview shows a machine's screen full-screen on a Linux
// framebuffer (/dev/fb0: efifb, simpledrm or a KMS driver's emulation)
// and sends the PC's keyboards and mice to it: the bootable pad's display
// when the PC has a screen but no desktop. It speaks VNC to the machine's
// screen socket (package rfb) and takes the keyboards and pointing
// devices from evdev, grabbed so that what is typed and pointed at
// reaches only the machine.
package fbview

import (
	"context"
	"encoding/binary"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/soulpad/soulpad/internal/rfb"
)

// Framebuffer is a mapped /dev/fbN in a 32-bit true-colour mode.
type Framebuffer struct {
	f      *os.File
	mem    []byte
	W, H   int
	stride int
	// r, g, b are the bit offsets of the colours in a pixel.
	r, g, b uint32
}

// fb_var_screeninfo and fb_fix_screeninfo, as far as they are read.
type varInfo struct {
	xres, yres, xresVirtual, yresVirtual, xoffset, yoffset, bitsPerPixel, grayscale uint32
	red, green, blue, transp                                                        [3]uint32
	rest                                                                            [28]uint32
}

type fixInfo struct {
	id         [16]byte
	smemStart  uint64
	smemLen    uint32
	typ        uint32
	typeAux    uint32
	visual     uint32
	xpanstep   uint16
	ypanstep   uint16
	ywrapstep  uint16
	_          uint16
	lineLength uint32
	rest       [64]byte
}

const (
	fbioGetVScreenInfo = 0x4600
	fbioGetFScreenInfo = 0x4602
)

// OpenFramebuffer maps path (e.g. /dev/fb0).
func OpenFramebuffer(path string) (*Framebuffer, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	var v varInfo
	var fx fixInfo
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fbioGetVScreenInfo, uintptr(unsafe.Pointer(&v))); e != 0 {
		f.Close()
		return nil, fmt.Errorf("%s: FBIOGET_VSCREENINFO: %w", path, e)
	}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fbioGetFScreenInfo, uintptr(unsafe.Pointer(&fx))); e != 0 {
		f.Close()
		return nil, fmt.Errorf("%s: FBIOGET_FSCREENINFO: %w", path, e)
	}
	if v.bitsPerPixel != 32 || v.red[1] != 8 || v.green[1] != 8 || v.blue[1] != 8 {
		f.Close()
		return nil, fmt.Errorf("%s: %d bits per pixel (%d/%d/%d); only 32-bit true colour is shown", path, v.bitsPerPixel, v.red[1], v.green[1], v.blue[1])
	}
	size := int(fx.lineLength) * int(v.yres)
	if size == 0 || size > int(fx.smemLen) {
		f.Close()
		return nil, fmt.Errorf("%s: %dx%d with lines of %d bytes does not fit its %d bytes", path, v.xres, v.yres, fx.lineLength, fx.smemLen)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	return &Framebuffer{f: f, mem: mem, W: int(v.xres), H: int(v.yres), stride: int(fx.lineLength),
		r: v.red[0], g: v.green[0], b: v.blue[0]}, nil
}

// Close unmaps the framebuffer.
func (fb *Framebuffer) Close() error {
	_ = unix.Munmap(fb.mem)
	return fb.f.Close()
}

// Clear paints it black.
func (fb *Framebuffer) Clear() { clear(fb.mem) }

// Offset is where a screen of w×h goes: centred, or at the corner when it
// is larger than the framebuffer (the rest is cut off).
func (fb *Framebuffer) Offset(w, h int) image.Point {
	return image.Pt(max(0, (fb.W-w)/2), max(0, (fb.H-h)/2))
}

// Draw copies rect of img to the framebuffer at at+rect.Min.
func (fb *Framebuffer) Draw(img *image.RGBA, rect image.Rectangle, at image.Point) {
	draw(fb.mem, fb.stride, fb.W, fb.H, fb.r, fb.g, fb.b, img, rect, at)
}

// draw is Draw on plain memory (tested without a framebuffer).
func draw(mem []byte, stride, fw, fh int, ro, gofs, bo uint32, img *image.RGBA, rect image.Rectangle, at image.Point) {
	rect = rect.Intersect(img.Rect)
	for y := rect.Min.Y; y < rect.Max.Y; y++ {
		fy := at.Y + y
		if fy < 0 || fy >= fh {
			continue
		}
		for x := rect.Min.X; x < rect.Max.X; x++ {
			fx := at.X + x
			if fx < 0 || fx >= fw {
				continue
			}
			p := img.PixOffset(x, y)
			v := uint32(img.Pix[p])<<ro | uint32(img.Pix[p+1])<<gofs | uint32(img.Pix[p+2])<<bo
			binary.LittleEndian.PutUint32(mem[fy*stride+fx*4:], v)
		}
	}
}

// Show draws the screen behind cl on fb until ctx is done or the
// connection ends, polling for changes every interval.
func Show(ctx context.Context, cl *rfb.Client, fb *Framebuffer, interval time.Duration) error {
	fb.Clear()
	full := true
	for ctx.Err() == nil {
		rects, err := cl.Update(!full)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		w, h := cl.Size()
		at := fb.Offset(w, h)
		for _, r := range rects {
			if r == cl.Screen.Rect {
				fb.Clear() // a new size: the old picture goes
			}
			fb.Draw(cl.Screen, r, at)
		}
		full = false
		if len(rects) == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(interval):
			}
		}
	}
	return nil
}

// Console switches the virtual terminal to graphics mode, so that the
// kernel's text console stops drawing on the framebuffer, and back.
func Console(tty string) (restore func(), err error) {
	f, err := os.OpenFile(tty, os.O_RDWR, 0)
	if err != nil {
		return func() {}, err
	}
	const kdSetMode, kdText, kdGraphics = 0x4B3A, 0, 1
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), kdSetMode, kdGraphics); e != 0 {
		f.Close()
		return func() {}, fmt.Errorf("%s: KDSETMODE: %w", tty, e)
	}
	return func() {
		unix.Syscall(unix.SYS_IOCTL, f.Fd(), kdSetMode, kdText)
		f.Close()
	}, nil
}

// Inputs grabs every evdev keyboard (a device with letter keys) and
// pointing device (a mouse, touchpad or touch screen) and sends them to
// cl: keys by scan code, the pointer as an absolute position on the
// machine's screen (its USB tablet), until ctx is done. Devices plugged
// in later are found by polling. The grab keeps them off the host's
// console. The PC's power button is neither and is left alone.
func Inputs(ctx context.Context, cl *rfb.Client) {
	var mu sync.Mutex
	open := map[string]bool{}
	for ctx.Err() == nil {
		paths, _ := filepath.Glob("/dev/input/event*")
		for _, p := range paths {
			mu.Lock()
			seen := open[p]
			open[p] = true // a device that is neither is not looked at again
			mu.Unlock()
			if seen {
				continue
			}
			f, err := os.Open(p)
			if err != nil {
				continue
			}
			keys, points := isKeyboard(f), isPointer(f)
			if !keys && !points {
				f.Close()
				continue
			}
			var pt *pointer
			if points {
				w, h := cl.Dims()
				pt = &pointer{x: w / 2, y: h / 2, ax: absInfo(f, absX), ay: absInfo(f, absY)}
			}
			const eviocgrab = 0x40044590
			unix.Syscall(unix.SYS_IOCTL, f.Fd(), eviocgrab, 1)
			go func() {
				defer f.Close()
				go func() { <-ctx.Done(); f.Close() }()
				forward(f, cl, keys, pt)
				mu.Lock()
				delete(open, p) // unplugged: look for it again
				mu.Unlock()
			}()
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// isKeyboard says whether the device has the A key.
func isKeyboard(f *os.File) bool {
	const keyA = 30
	return hasBit(f, evKey, keyA)
}

// forward reads input events and sends the keys (keys) and the pointer's
// moves (pt, when it points).
func forward(f *os.File, cl *rfb.Client, keys bool, pt *pointer) {
	buf := make([]byte, 24*64)
	for {
		n, err := f.Read(buf)
		if err != nil {
			return
		}
		for _, ev := range parseInput(buf[:n]) {
			if keys && ev.typ == evKey && ev.value >= 0 && ev.value <= 2 {
				if q := QNum(ev.code); q != 0 {
					// A repeat is pressed again, as a keyboard's own repeat is.
					if err := cl.Key(ev.value != 0, q); err != nil {
						return
					}
				}
			}
			if pt == nil {
				continue
			}
			w, h := cl.Dims()
			for _, m := range pt.apply(ev, w, h) {
				if err := cl.Pointer(m.mask, m.x, m.y); err != nil {
					return
				}
			}
		}
	}
}

type keyEvent struct {
	code  uint16
	value int32 // 0 release, 1 press, 2 repeat
}

// parseEvents reads struct input_event records (64-bit: 16 bytes of time,
// type, code, value) and keeps the key events.
func parseEvents(b []byte) []keyEvent {
	var out []keyEvent
	for len(b) >= 24 {
		typ := binary.LittleEndian.Uint16(b[16:])
		code := binary.LittleEndian.Uint16(b[18:])
		val := int32(binary.LittleEndian.Uint32(b[20:]))
		if typ == 1 && val >= 0 && val <= 2 { // EV_KEY
			out = append(out, keyEvent{code, val})
		}
		b = b[24:]
	}
	return out
}

// QNum maps a Linux key code to QEMU's scan code number (XT set 1, 0x80
// added for the 0xE0-prefixed keys); 0 for keys it does not send.
func QNum(code uint16) uint32 {
	if code >= 1 && code <= 88 {
		return uint32(code) // Esc … F12 have their XT code as Linux code
	}
	return extended[code]
}

var extended = map[uint16]uint32{
	96: 0x9c, 97: 0x9d, 98: 0xb5, 99: 0xb7, 100: 0xb8, 102: 0xc7, 103: 0xc8, 104: 0xc9,
	105: 0xcb, 106: 0xcd, 107: 0xcf, 108: 0xd0, 109: 0xd1, 110: 0xd2, 111: 0xd3,
	125: 0xdb, 126: 0xdc, 127: 0xdd,
}
