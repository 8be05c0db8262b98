package luks

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/crypto/xts"
)

// Both paths (AES-NI where the CPU has it, and crypto/aes) must give the
// same bytes as the reference XTS, for AES-128 and AES-256 keys.
func TestXTSMatchesReference(t *testing.T) {
	for _, asm := range []bool{true, false} {
		if asm && !haveAESNI {
			t.Log("no AES-NI here: only the crypto/aes path is tested")
			continue
		}
		for _, keyLen := range []int{32, 64} {
			for _, ss := range []int{512, 4096} {
				t.Run(fmt.Sprintf("aesni=%v/key=%d/sector=%d", asm, keyLen*8, ss), func(t *testing.T) {
					noAsm = !asm
					defer func() { noAsm = false }()
					checkXTS(t, keyLen, ss, asm)
				})
			}
		}
	}
}

func checkXTS(t *testing.T, keyLen, ss int, asm bool) {
	key := make([]byte, keyLen)
	rand.Read(key)
	ref, err := xts.NewCipher(aesNew, key)
	if err != nil {
		t.Fatal(err)
	}
	x, err := newXTS(key, ss, 0)
	if err != nil {
		t.Fatal(err)
	}
	if (x.ek != nil) != asm {
		t.Fatalf("AES-NI path in use: %v, want %v", x.ek != nil, asm)
	}
	src := make([]byte, ss*40)
	rand.Read(src)
	got := make([]byte, len(src))
	x.crypt(got, src, 7, true)
	for i := 0; i < 40; i++ {
		want := make([]byte, ss)
		// x/crypto/xts takes the IV as the sector number in its own units.
		ref.Encrypt(want, src[i*ss:(i+1)*ss], uint64(7+i)*uint64(ss/512))
		if !bytes.Equal(got[i*ss:(i+1)*ss], want) {
			t.Fatalf("sector %d differs from the reference", i)
		}
	}
	back := make([]byte, len(src))
	x.crypt(back, got, 7, false)
	if !bytes.Equal(back, src) {
		t.Fatal("decrypt(encrypt(x)) != x")
	}
	// In place, as the payload decrypts.
	x.crypt(got, got, 7, false)
	if !bytes.Equal(got, src) {
		t.Fatal("decrypting in place differs")
	}
	x.wipe()
	if x.ek != nil || x.dk != nil {
		t.Fatal("round keys kept after wipe")
	}
}

func TestXTSRefusesOddSectorSizes(t *testing.T) {
	for _, ss := range []int{0, 256, 520, 3072, 8192} {
		if _, err := newXTS(make([]byte, 64), ss, 0); err == nil {
			t.Errorf("sector size %d accepted", ss)
		}
	}
}

// wipe leaves no round key anywhere in the crypto/aes blocks nor in this
// package's buffers: before it the blocks' memory holds the key's
// halves, after it none of the blocks' bytes are set.
func TestWipeClearsAllRoundKeys(t *testing.T) {
	for _, asm := range []bool{false, true} {
		if asm && !haveAESNI {
			continue
		}
		noAsm = !asm
		key := make([]byte, 64)
		for i := range key {
			key[i] = byte(i*7 + 1)
		}
		x, err := newXTS(key, 4096, 0)
		noAsm = false
		if err != nil {
			t.Fatal(err)
		}
		k1, k2 := blockBytes(x.k1), blockBytes(x.k2)
		if !bytes.Contains(k1, key[:16]) && !bytes.Contains(k1, wordSwapped(key[:16])) {
			t.Fatalf("asm=%v: the first block's memory does not show its key: the check below could not fail", asm)
		}
		if asm && !bytes.Equal(x.ek[:32], key[:32]) {
			t.Fatalf("the AES-NI round keys do not start with the key")
		}
		x.wipe()
		for _, b := range [][]byte{k1, k2} {
			if !bytes.Equal(b, make([]byte, len(b))) {
				t.Errorf("asm=%v: a crypto/aes block keeps non-zero bytes after wipe", asm)
			}
		}
		if x.ek != nil || x.dk != nil || x.k1 != nil || x.k2 != nil {
			t.Errorf("asm=%v: the cipher still refers to its keys", asm)
		}
	}
}

// blockBytes is the memory behind a cipher.Block (a pointer to a struct
// of round keys), seen in place.
func blockBytes(b cipher.Block) []byte {
	v := reflect.ValueOf(b).Elem()
	return unsafe.Slice((*byte)(unsafe.Pointer(v.UnsafeAddr())), v.Type().Size())
}

func wordSwapped(b []byte) []byte {
	s := make([]byte, len(b))
	for i := 0; i+3 < len(b); i += 4 {
		s[i], s[i+1], s[i+2], s[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	return s
}

// The key schedule gives FIPS-197's published last round keys (the XTS
// test above checks every round through the cipher's output).
func TestExpandKeyKnownAnswer(t *testing.T) {
	// FIPS-197 Appendix A.3: the last round key of the AES-256 example.
	key := []byte{0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae, 0xf0, 0x85, 0x7d, 0x77, 0x81,
		0x1f, 0x35, 0x2c, 0x07, 0x3b, 0x61, 0x08, 0xd7, 0x2d, 0x98, 0x10, 0xa3, 0x09, 0x14, 0xdf, 0xf4}
	xk := make([]byte, 15*16)
	if nr := expandKey(xk, key); nr != 14 {
		t.Fatalf("%d rounds, want 14", nr)
	}
	if got, want := fmt.Sprintf("%x", xk[14*16:]), "fe4890d1e6188d0b046df344706c631e"; got != want {
		t.Fatalf("last round key %s, want %s", got, want)
	}
	// FIPS-197 Appendix A.1: AES-128.
	key = []byte{0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c}
	xk = make([]byte, 11*16)
	nr := expandKey(xk, key)
	if got, want := fmt.Sprintf("%x", xk[10*16:]), "d014f9a8c9ee2589e13f0cc8b6630ca6"; nr != 10 || got != want {
		t.Fatalf("%d rounds, last round key %s, want 10 and %s", nr, got, want)
	}
}

// BenchmarkXTS encrypts 1 MiB with this package's XTS (AES-NI where the
// CPU has it, all CPUs), with its crypto/aes path, and with
// golang.org/x/crypto/xts on one CPU (the baseline), in the same run, and
// prints each one's throughput against the baseline.
func BenchmarkXTS(b *testing.B) {
	key := make([]byte, 64)
	x, _ := newXTS(key, 4096, 0)
	noAsm = true
	y, _ := newXTS(key, 4096, 0)
	noAsm = false
	ref, _ := xts.NewCipher(aesNew, key)
	buf := make([]byte, 1<<20)
	out := make([]byte, 1<<20)
	variants := []struct {
		name string
		run  func()
	}{
		{"x-crypto-xts-baseline", func() {
			for s := 0; s < len(buf); s += 4096 {
				ref.Encrypt(out[s:s+4096], buf[s:s+4096], uint64(s/512))
			}
		}},
		{"soulpad", func() { x.crypt(out, buf, 0, true) }},
		{"crypto-aes-path", func() { y.crypt(out, buf, 0, true) }},
	}
	var base float64
	for _, v := range variants {
		start := time.Now()
		for i := 0; i < b.N; i++ {
			v.run()
		}
		mbs := float64(len(buf)*b.N) / time.Since(start).Seconds() / 1e6
		b.ReportMetric(mbs, v.name+"-MB/s")
		if base == 0 {
			base = mbs
			continue
		}
		b.ReportMetric(mbs/base, v.name+"/baseline")
		if b.N < 20 {
			continue // the benchmark's warm-up round
		}
		fmt.Printf("XTS %s: %.0f MB/s, %.1f× x/crypto/xts (%.0f MB/s), AES-NI %v\n", v.name, mbs, mbs/base, base, haveAESNI && v.name == "soulpad")
	}
}
