package rfb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"io"
	"strings"
	"testing"
	"time"
)

// scripted is a server that says its bytes and takes whatever is written.
type scripted struct {
	io.Reader
	wrote bytes.Buffer
}

func (s *scripted) Write(b []byte) (int, error) { return s.wrote.Write(b) }
func (s *scripted) SetDeadline(time.Time) error { return nil }

func u16(v int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(v)) }
func u32(v int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }

// server builds what a VNC server sends for a w×h screen whose pixel at
// (x, y) is px(x, y), in the given rectangles, with a bell and cut text
// in between.
func server(w, h int, rects [][4]int, px func(x, y int) [4]byte) []byte {
	var b bytes.Buffer
	b.WriteString("RFB 003.008\n")
	b.Write([]byte{2, 2, 1}) // security types: VNC auth, None
	b.Write(u32(0))          // security result: ok
	b.Write(u16(w))          // ServerInit
	b.Write(u16(h))
	b.Write(make([]byte, 16)) // pixel format (replaced by ours)
	b.Write(u32(4))
	b.WriteString("soul")
	b.WriteByte(2)              // Bell
	b.Write([]byte{3, 0, 0, 0}) // ServerCutText
	b.Write(u32(3))
	b.WriteString("abc")
	b.Write([]byte{0, 0}) // FramebufferUpdate
	b.Write(u16(len(rects)))
	for _, r := range rects {
		for _, v := range r {
			b.Write(u16(v))
		}
		b.Write(u32(0))
		for y := r[1]; y < r[1]+r[3]; y++ {
			for x := r[0]; x < r[0]+r[2]; x++ {
				p := px(x, y)
				b.Write(p[:])
			}
		}
	}
	return b.Bytes()
}

func TestCaptureReadsTheWholeScreen(t *testing.T) {
	px := func(x, y int) [4]byte { return [4]byte{byte(x), byte(y), byte(x + y), 0} }
	// Two rectangles that overlap, then the rest.
	s := &scripted{Reader: bytes.NewReader(server(5, 4, [][4]int{{0, 0, 5, 2}, {1, 1, 2, 2}, {0, 2, 5, 2}}, px))}
	img, err := Capture(s, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() != 5 || img.Bounds().Dy() != 4 {
		t.Fatalf("size %v", img.Bounds())
	}
	for y := 0; y < 4; y++ {
		for x := 0; x < 5; x++ {
			p := px(x, y)
			if got, want := img.RGBAAt(x, y), (color.RGBA{p[0], p[1], p[2], 255}); got != want {
				t.Fatalf("pixel %d,%d = %v, want %v", x, y, got, want)
			}
		}
	}
	// What the client said: its version, None, shared, then our pixel
	// format, Raw, and a full non-incremental update request.
	w := s.wrote.Bytes()
	if !bytes.HasPrefix(w, []byte("RFB 003.008\n\x01\x01\x00")) {
		t.Fatalf("client handshake % x", w[:min(len(w), 16)])
	}
	req := w[len(w)-10:]
	if req[0] != 3 || req[1] != 0 || binary.BigEndian.Uint16(req[6:]) != 5 || binary.BigEndian.Uint16(req[8:]) != 4 {
		t.Fatalf("update request % x", req)
	}
}

func TestCaptureRefusesWhatItCannotTake(t *testing.T) {
	px := func(x, y int) [4]byte { return [4]byte{} }
	ok := server(2, 2, [][4]int{{0, 0, 2, 2}}, px)
	for name, b := range map[string][]byte{
		"old version":     append([]byte("RFB 003.003\n"), ok[12:]...),
		"auth only":       append(append([]byte("RFB 003.008\n"), 1, 2), ok[15:]...),
		"refused":         append(append([]byte("RFB 003.008\n"), 0), append(u32(4), "busy"...)...),
		"outside":         server(2, 2, [][4]int{{1, 1, 2, 2}}, px),
		"zero size":       server(0, 2, nil, px),
		"cut short":       ok[:len(ok)-3],
		"unknown message": append(server(2, 2, nil, px)[:len(server(2, 2, nil, px))-4], 9),
	} {
		if _, err := Capture(&scripted{Reader: bytes.NewReader(b)}, time.Second); err == nil {
			t.Errorf("%s: no error", name)
		} else if name != "cut short" && !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want a protocol error", name, err)
		}
	}
}

func FuzzCapture(f *testing.F) {
	f.Add(server(3, 2, [][4]int{{0, 0, 3, 2}}, func(x, y int) [4]byte { return [4]byte{1, 2, 3, 4} }))
	f.Add(server(2, 2, [][4]int{{0, 0, 1, 1}, {1, 0, 1, 2}, {0, 1, 1, 1}}, func(x, y int) [4]byte { return [4]byte{} }))
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := Capture(&scripted{Reader: bytes.NewReader(b)}, time.Second)
		if err == nil && (img.Bounds().Dx() > MaxSide || img.Bounds().Dy() > MaxSide) {
			t.Fatalf("screen of %v", img.Bounds())
		}
	})
}

// A viewer's session: the first update, a copy within the screen, the
// server's yes to key events by scan code, a size change, and a key.
func TestClientFollowsTheScreen(t *testing.T) {
	var b bytes.Buffer
	hs := server(4, 2, nil, nil)
	b.Write(hs[:len(hs)-4]) // handshake, bell, cut text; no update yet
	// Update 1: raw, whole screen.
	b.Write([]byte{0, 0})
	b.Write(u16(2))
	b.Write(append(append(u16(0), u16(0)...), append(u16(4), u16(2)...)...))
	b.Write(u32(0))
	for y := 0; y < 2; y++ {
		for x := 0; x < 4; x++ {
			b.Write([]byte{byte(10*y + x), 0, 0, 0})
		}
	}
	b.Write(append(append(u16(0), u16(0)...), append(u16(0), u16(0)...)...))
	b.Write(u32(-258 & 0xffffffff)) // QEMU: key events by scan code, yes
	// Update 2: copy the top-left 2×1 onto the bottom-right.
	b.Write([]byte{0, 0})
	b.Write(u16(1))
	b.Write(append(append(u16(2), u16(1)...), append(u16(2), u16(1)...)...))
	b.Write(u32(1))
	b.Write(append(u16(0), u16(0)...))
	// Update 3: the screen is now 3×3.
	b.Write([]byte{0, 0})
	b.Write(u16(1))
	b.Write(append(append(u16(0), u16(0)...), append(u16(3), u16(3)...)...))
	b.Write(u32(-223 & 0xffffffff))
	s := &scripted{Reader: bytes.NewReader(b.Bytes())}
	cl, err := Dial(s)
	if err != nil {
		t.Fatal(err)
	}
	if cl.ExtKeys() {
		t.Fatal("ExtKeys before the server said so")
	}
	if err := cl.Key(true, 0x1e); err != nil || bytes.Contains(s.wrote.Bytes(), []byte{255, 0, 0, 1}) {
		t.Fatal("a key was sent before the server took scan codes")
	}
	r, err := cl.Update(false)
	if err != nil || len(r) != 1 || !cl.ExtKeys() {
		t.Fatalf("update 1: %v %v ext %v", r, err, cl.ExtKeys())
	}
	if r, err = cl.Update(true); err != nil || len(r) != 1 || r[0] != image.Rect(2, 1, 4, 2) {
		t.Fatalf("update 2: %v %v", r, err)
	}
	if got := []byte{cl.Screen.RGBAAt(2, 1).R, cl.Screen.RGBAAt(3, 1).R}; !bytes.Equal(got, []byte{0, 1}) {
		t.Fatalf("after the copy the bottom-right holds %v, want [0 1]", got)
	}
	if r, err = cl.Update(true); err != nil || len(r) != 1 || r[0] != image.Rect(0, 0, 3, 3) {
		t.Fatalf("update 3: %v %v", r, err)
	}
	if w, h := cl.Size(); w != 3 || h != 3 {
		t.Fatalf("size %dx%d after the change, want 3x3", w, h)
	}
	if err := cl.Key(true, 0x1e); err != nil {
		t.Fatal(err)
	}
	w := s.wrote.Bytes()
	if !bytes.HasSuffix(w, []byte{255, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x1e}) {
		t.Fatalf("key event % x", w[len(w)-12:])
	}
	// The encodings asked for: Raw, CopyRect, DesktopSize, scan codes.
	if !bytes.Contains(w, []byte{2, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0x21, 0xff, 0xff, 0xfe, 0xfe}) {
		t.Fatal("SetEncodings is not Raw, CopyRect, DesktopSize, QEMU extended keys")
	}
}

// A hostile server: an empty rectangle far outside the screen, raw or
// copied, is no error and no panic; a screen-size change the client did
// not ask for (Capture asks for raw pixels only) is refused, not taken.
func TestHostileRectanglesAreHarmless(t *testing.T) {
	px := func(x, y int) [4]byte { return [4]byte{1, 2, 3, 0} }
	emptyRaw := server(2, 2, [][4]int{{65535, 65535, 0, 7}, {0, 0, 2, 2}}, px)
	if img, err := Capture(&scripted{Reader: bytes.NewReader(emptyRaw)}, time.Second); err != nil || img.Bounds().Dx() != 2 {
		t.Fatalf("an empty raw rectangle outside the screen: %v, %v", img, err)
	}

	var b bytes.Buffer
	hs := server(2, 2, nil, nil)
	b.Write(hs[:len(hs)-4]) // no update yet
	b.Write([]byte{0, 0})
	b.Write(u16(2))
	b.Write(append(append(u16(65535), u16(65535)...), append(u16(0), u16(9)...)...))
	b.Write(u32(1)) // CopyRect, empty, from far away
	b.Write(append(u16(65000), u16(65000)...))
	b.Write(append(append(u16(0), u16(0)...), append(u16(2), u16(2)...)...))
	b.Write(u32(0))
	b.Write(make([]byte, 2*2*4))
	cl, err := Dial(&scripted{Reader: bytes.NewReader(b.Bytes())})
	if err != nil {
		t.Fatal(err)
	}
	if rects, err := cl.Update(false); err != nil || len(rects) != 1 {
		t.Fatalf("an empty copy from outside the screen: %v, %v", rects, err)
	}

	b.Reset()
	b.Write(hs[:len(hs)-4])
	b.Write([]byte{0, 0})
	b.Write(u16(1))
	b.Write(append(append(u16(0), u16(0)...), append(u16(4000), u16(3000)...)...))
	b.Write(u32(-223 & 0xffffffff)) // DesktopSize, unasked
	if _, err := Capture(&scripted{Reader: bytes.NewReader(b.Bytes())}, time.Second); err == nil || !strings.Contains(err.Error(), "not one asked for") {
		t.Fatalf("an unasked screen-size change: %v; want it refused", err)
	}
}

// A pointer event is RFB's PointerEvent, clamped to the screen.
func TestPointerIsClampedToTheScreen(t *testing.T) {
	hs := server(4, 2, nil, nil)
	s := &scripted{Reader: bytes.NewReader(hs[:len(hs)-4])}
	cl, err := Dial(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Pointer(ButtonLeft|WheelDown, 5000, -3); err != nil {
		t.Fatal(err)
	}
	if w := s.wrote.Bytes(); !bytes.HasSuffix(w, []byte{5, 1 | 16, 0, 3, 0, 0}) {
		t.Fatalf("pointer event % x", w[len(w)-6:])
	}
	if w, h := cl.Dims(); w != 4 || h != 2 {
		t.Fatalf("dims %dx%d, want 4x2", w, h)
	}
}
