package fbview

import (
	"encoding/binary"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/soulpad/soulpad/internal/rfb"
)

// Linux input event types and codes the pointer reads.
const (
	evSyn = 0
	evKey = 1
	evRel = 2
	evAbs = 3

	relX, relY, relWheel = 0, 1, 8
	absX, absY           = 0, 1

	btnLeft, btnRight, btnMiddle, btnTouch = 0x110, 0x111, 0x112, 0x14a
)

// inputEvent is a struct input_event without its time.
type inputEvent struct {
	typ, code uint16
	value     int32
}

// parseInput reads struct input_event records (64-bit: 16 bytes of
// time, type, code, value), every type.
func parseInput(b []byte) []inputEvent {
	var out []inputEvent
	for len(b) >= 24 {
		out = append(out, inputEvent{binary.LittleEndian.Uint16(b[16:]), binary.LittleEndian.Uint16(b[18:]), int32(binary.LittleEndian.Uint32(b[20:]))})
		b = b[24:]
	}
	return out
}

// absRange is an absolute axis's range (struct input_absinfo's minimum
// and maximum).
type absRange struct{ min, max int32 }

// pointer is a pointing device's state on the machine's screen: a mouse
// moves it by its relative motion, a touch screen or touchpad places it
// by its absolute position scaled to the screen.
type pointer struct {
	x, y    int
	mask    uint8
	ax, ay  absRange
	changed bool
}

// pointerMove is what the machine is sent: the buttons pressed and where.
type pointerMove struct {
	mask uint8
	x, y int
}

// buttons maps the device's buttons to the pointer event's mask bits.
var buttons = map[uint16]uint8{btnLeft: rfb.ButtonLeft, btnTouch: rfb.ButtonLeft, btnRight: rfb.ButtonRight, btnMiddle: rfb.ButtonMiddle}

// apply takes one event on a screen of w×h and returns the moves to send
// (at each EV_SYN that changed something; a wheel notch is a press and a
// release of its button).
func (p *pointer) apply(ev inputEvent, w, h int) []pointerMove {
	clamp := func(v, n int) int { return max(0, min(v, n-1)) }
	switch ev.typ {
	case evRel:
		switch ev.code {
		case relX:
			p.x, p.changed = clamp(p.x+int(ev.value), w), true
		case relY:
			p.y, p.changed = clamp(p.y+int(ev.value), h), true
		case relWheel:
			b := uint8(rfb.WheelUp)
			if ev.value < 0 {
				b = rfb.WheelDown
			}
			var out []pointerMove
			for i := 0; i < min(abs(int(ev.value)), 16); i++ {
				out = append(out, pointerMove{p.mask | b, p.x, p.y}, pointerMove{p.mask, p.x, p.y})
			}
			return out
		}
	case evAbs:
		switch ev.code {
		case absX:
			p.x, p.changed = clamp(scale(ev.value, p.ax, w), w), true
		case absY:
			p.y, p.changed = clamp(scale(ev.value, p.ay, h), h), true
		}
	case evKey:
		if b, ok := buttons[ev.code]; ok {
			if ev.value != 0 {
				p.mask |= b
			} else {
				p.mask &^= b
			}
			p.changed = true
		}
	case evSyn:
		if p.changed {
			p.changed = false
			return []pointerMove{{p.mask, p.x, p.y}}
		}
	}
	return nil
}

// scale maps v in r onto 0…n-1.
func scale(v int32, r absRange, n int) int {
	if r.max <= r.min {
		return int(v)
	}
	return int(int64(v-r.min) * int64(n-1) / int64(r.max-r.min))
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// hasBit asks EVIOCGBIT(typ) whether the device has code.
func hasBit(f *os.File, typ, code int) bool {
	var bits [96]byte // KEY_MAX/8+1, enough for every type
	req := uintptr(0x80000000 | (len(bits) << 16) | ('E' << 8) | (0x20 + typ))
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), req, uintptr(unsafe.Pointer(&bits[0]))); e != 0 {
		return false
	}
	return bits[code/8]&(1<<(code%8)) != 0
}

// isPointer says whether the device points: a mouse (relative X and a
// left button) or a touch screen or touchpad (absolute X and a touch or
// left button).
func isPointer(f *os.File) bool {
	if hasBit(f, evRel, relX) && hasBit(f, evKey, btnLeft) {
		return true
	}
	return hasBit(f, evAbs, absX) && (hasBit(f, evKey, btnTouch) || hasBit(f, evKey, btnLeft))
}

// absInfo reads an absolute axis's range (EVIOCGABS).
func absInfo(f *os.File, axis int) absRange {
	var info [6]int32 // value, minimum, maximum, fuzz, flat, resolution
	req := uintptr(0x80000000 | (len(info)*4)<<16 | ('E' << 8) | (0x40 + axis))
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), req, uintptr(unsafe.Pointer(&info[0]))); e != 0 {
		return absRange{}
	}
	return absRange{info[1], info[2]}
}
