package luks

import (
	"crypto/aes"
	"crypto/cipher"
	"testing"
)

func aesNew(k []byte) (cipher.Block, error) { return aes.NewCipher(k) }

// The computed S-box is AES's, for every byte.
func TestSubByteIsTheSBox(t *testing.T) {
	for x := 0; x < 256; x++ {
		if got := subByte(byte(x)); got != sbox[x] {
			t.Fatalf("subByte(%#02x) = %#02x; the S-box says %#02x", x, got, sbox[x])
		}
	}
}

// sbox is AES's S-box as a table (the reference for subByte), computed: the multiplicative inverse in
// GF(2^8) followed by the affine map (FIPS-197 §5.1.1).
var sbox = func() (s [256]byte) {
	rotl := func(x byte, n uint) byte { return x<<n | x>>(8-n) }
	p, q := byte(1), byte(1)
	for {
		// p walks the multiplicative group by ×3, q by ×3⁻¹, so q = p⁻¹.
		if p&0x80 != 0 {
			p ^= p<<1 ^ 0x1b
		} else {
			p ^= p << 1
		}
		q ^= q << 1
		q ^= q << 2
		q ^= q << 4
		if q&0x80 != 0 {
			q ^= 0x09
		}
		s[p] = q ^ rotl(q, 1) ^ rotl(q, 2) ^ rotl(q, 3) ^ rotl(q, 4) ^ 0x63
		if p == 1 {
			break
		}
	}
	s[0] = 0x63
	return s
}()
