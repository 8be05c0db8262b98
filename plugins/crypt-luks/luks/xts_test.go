package luks

import (
	"bytes"
	"crypto/rand"
	"testing"

	"golang.org/x/crypto/xts"
)

// The fast path must give the same bytes as the reference XTS.
func TestXTSMatchesReference(t *testing.T) {
	key := make([]byte, 64)
	rand.Read(key)
	ref, err := xts.NewCipher(aesNew, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, ss := range []int{512, 4096} {
		x, err := newXTS(key, ss, 0)
		if err != nil {
			t.Fatal(err)
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
				t.Fatalf("sector size %d: sector %d differs from the reference", ss, i)
			}
		}
		back := make([]byte, len(src))
		x.crypt(back, got, 7, false)
		if !bytes.Equal(back, src) {
			t.Fatalf("sector size %d: decrypt(encrypt(x)) != x", ss)
		}
	}
}

func BenchmarkXTS(b *testing.B) {
	key := make([]byte, 64)
	x, _ := newXTS(key, 4096, 0)
	ref, _ := xts.NewCipher(aesNew, key)
	buf := make([]byte, 1<<20)
	out := make([]byte, 1<<20)
	b.Run("soulpad", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		for i := 0; i < b.N; i++ {
			x.crypt(out, buf, 0, true)
		}
	})
	b.Run("x-crypto-xts-baseline", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		for i := 0; i < b.N; i++ {
			for s := 0; s < len(buf); s += 4096 {
				ref.Encrypt(out[s:s+4096], buf[s:s+4096], uint64(s/512))
			}
		}
	})
}
