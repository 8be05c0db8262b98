package rfb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image/color"
	"io"
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
