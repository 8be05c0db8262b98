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
