package fbview

import (
	"encoding/binary"
	"image"
	"image/color"
	"testing"
)

// A 2×2 screen drawn centred on a 6×4 framebuffer of 32-bit XRGB (blue at
// bit 0, red at 16) with lines padded to 32 bytes; nothing else touched.
func TestDrawPlacesAndConvertsPixels(t *testing.T) {
	const stride, fw, fh = 32, 6, 4
	mem := make([]byte, stride*fh)
	for i := range mem {
		mem[i] = 0xee
	}
	img := image.NewRGBA(image.Rect(0, 0, 2, 2))
	img.SetRGBA(0, 0, color.RGBA{0x11, 0x22, 0x33, 0xff})
	img.SetRGBA(1, 1, color.RGBA{0x44, 0x55, 0x66, 0xff})
	fb := &Framebuffer{W: fw, H: fh}
	at := fb.Offset(2, 2)
	if at != image.Pt(2, 1) {
		t.Fatalf("offset %v, want (2,1)", at)
	}
	draw(mem, stride, fw, fh, 16, 8, 0, img, img.Rect, at)
	px := func(x, y int) uint32 { return binary.LittleEndian.Uint32(mem[y*stride+x*4:]) }
	if got := px(2, 1); got != 0x112233 {
		t.Errorf("pixel (2,1) = %#x, want 0x112233", got)
	}
	if got := px(3, 2); got != 0x445566 {
		t.Errorf("pixel (3,2) = %#x, want 0x445566", got)
	}
	if got := px(1, 1); got != 0xeeeeeeee {
		t.Errorf("pixel (1,1) outside the screen changed: %#x", got)
	}
	if mem[fw*4] != 0xee {
		t.Error("the line padding changed")
	}
	// A screen larger than the framebuffer is cut, not written past it.
	big := image.NewRGBA(image.Rect(0, 0, 10, 10))
	draw(mem, stride, fw, fh, 16, 8, 0, big, big.Rect, fb.Offset(10, 10))
	if fb.Offset(10, 10) != image.Pt(0, 0) {
		t.Error("a large screen is not at the corner")
	}
}

func TestKeys(t *testing.T) {
	ev := func(typ, code uint16, val int32) []byte {
		b := make([]byte, 24)
		binary.LittleEndian.PutUint16(b[16:], typ)
		binary.LittleEndian.PutUint16(b[18:], code)
		binary.LittleEndian.PutUint32(b[20:], uint32(val))
		return b
	}
	var b []byte
	b = append(b, ev(4, 4, 30)...) // EV_MSC: skipped
	b = append(b, ev(1, 30, 1)...) // A pressed
	b = append(b, ev(0, 0, 0)...)  // EV_SYN
	b = append(b, ev(1, 30, 0)...) // A released
	b = append(b, 1, 2, 3)         // a torn record: ignored
	got := parseEvents(b)
	if len(got) != 2 || got[0] != (keyEvent{30, 1}) || got[1] != (keyEvent{30, 0}) {
		t.Fatalf("events %v", got)
	}
	for code, want := range map[uint16]uint32{1: 0x01, 30: 0x1e, 88: 0x58, 103: 0xc8, 96: 0x9c, 125: 0xdb, 89: 0, 0: 0, 300: 0} {
		if q := QNum(code); q != want {
			t.Errorf("QNum(%d) = %#x, want %#x", code, q, want)
		}
	}
}

func FuzzParseEvents(f *testing.F) {
	f.Add(make([]byte, 48))
	f.Fuzz(func(t *testing.T, b []byte) {
		if n := len(parseEvents(b)); n > len(b)/24 {
			t.Fatalf("%d events from %d bytes", n, len(b))
		}
	})
}

// A mouse moves the machine's pointer by its motion, clamped to the
// screen, with its buttons and wheel; a touch screen places it by its
// absolute position scaled to the screen. A move is sent at each report's
// end (EV_SYN), only when something changed.
func TestPointer(t *testing.T) {
	p := &pointer{x: 400, y: 300}
	var got []pointerMove
	feed := func(evs ...inputEvent) {
		for _, ev := range evs {
			got = append(got, p.apply(ev, 800, 600)...)
		}
	}
	syn := inputEvent{evSyn, 0, 0}
	feed(inputEvent{evRel, relX, 10}, inputEvent{evRel, relY, -20}, syn)         // move
	feed(syn)                                                                    // nothing new: nothing sent
	feed(inputEvent{evKey, btnLeft, 1}, syn, inputEvent{evKey, btnLeft, 0}, syn) // a click
	feed(inputEvent{evRel, relX, 5000}, inputEvent{evRel, relY, 5000}, syn)      // past the corner
	feed(inputEvent{evKey, btnRight, 1}, inputEvent{evRel, relWheel, -1}, syn)
	want := []pointerMove{
		{0, 410, 280},
		{1, 410, 280}, {0, 410, 280},
		{0, 799, 599},
		{4 | 16, 799, 599}, {4, 799, 599}, // the wheel's notch with the right button held
		{4, 799, 599},
	}
	if len(got) != len(want) {
		t.Fatalf("moves %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("move %d: %v, want %v (all: %v)", i, got[i], want[i], got)
		}
	}
	touch := &pointer{ax: absRange{0, 4095}, ay: absRange{0, 4095}}
	m := []pointerMove{}
	for _, ev := range []inputEvent{{evAbs, absX, 4095}, {evAbs, absY, 2048}, {evKey, btnTouch, 1}, syn} {
		m = append(m, touch.apply(ev, 1024, 768)...)
	}
	if len(m) != 1 || m[0] != (pointerMove{1, 1023, 383}) {
		t.Fatalf("a touch at the right edge, half way down: %v", m)
	}
}

func FuzzParseInput(f *testing.F) {
	f.Add(make([]byte, 48))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := &pointer{ax: absRange{-5, 5}}
		for _, ev := range parseInput(b) {
			for _, m := range p.apply(ev, 640, 480) {
				if m.x < 0 || m.x >= 640 || m.y < 0 || m.y >= 480 {
					t.Fatalf("a move off the screen: %v", m)
				}
			}
		}
	})
}
