package luks

import "encoding/binary"

// sbox is AES's S-box, computed once: the multiplicative inverse in
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

// expandKey returns AES's encryption round keys for a 16-, 24- or 32-byte
// key, as 16 bytes per round in the byte order AES-NI takes, and the
// number of rounds (FIPS-197 §5.2).
func expandKey(key []byte) ([]byte, int) {
	nk := len(key) / 4
	nr := nk + 6
	w := make([]uint32, 4*(nr+1))
	for i := 0; i < nk; i++ {
		w[i] = binary.BigEndian.Uint32(key[4*i:])
	}
	sub := func(x uint32) uint32 {
		return uint32(sbox[x>>24])<<24 | uint32(sbox[x>>16&0xff])<<16 | uint32(sbox[x>>8&0xff])<<8 | uint32(sbox[x&0xff])
	}
	rcon := uint32(1)
	for i := nk; i < len(w); i++ {
		t := w[i-1]
		switch {
		case i%nk == 0:
			t = sub(t<<8|t>>24) ^ rcon<<24
			rcon <<= 1
			if rcon&0x100 != 0 {
				rcon ^= 0x11b
			}
		case nk > 6 && i%nk == 4:
			t = sub(t)
		}
		w[i] = w[i-nk] ^ t
	}
	out := make([]byte, 4*len(w))
	for i, v := range w {
		binary.BigEndian.PutUint32(out[4*i:], v)
	}
	clear(w)
	return out, nr
}
