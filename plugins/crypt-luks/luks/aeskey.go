package luks

import "encoding/binary"

// expandKey writes AES's encryption round keys for a 16-, 24- or 32-byte
// key into out (16 bytes per round, nk+7 rounds' worth, in the byte order
// AES-NI takes) and returns the number of rounds (FIPS-197 §5.2). Its
// scratch is on the stack and cleared.
func expandKey(out, key []byte) int {
	nk := len(key) / 4
	nr := nk + 6
	var ws [60]uint32
	w := ws[:4*(nr+1)]
	for i := 0; i < nk; i++ {
		w[i] = binary.BigEndian.Uint32(key[4*i:])
	}
	// SubWord in constant time: no load is indexed by key bytes, so the
	// cache tells nothing of the key.
	sub := func(x uint32) uint32 {
		return uint32(subByte(byte(x>>24)))<<24 | uint32(subByte(byte(x>>16)))<<16 | uint32(subByte(byte(x>>8)))<<8 | uint32(subByte(byte(x)))
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
	for i, v := range w {
		binary.BigEndian.PutUint32(out[4*i:], v)
	}
	clear(ws[:])
	return nr
}

// gmul multiplies in GF(2^8) (AES's polynomial) without branches or
// lookups that depend on the operands.
func gmul(a, b byte) byte {
	var p byte
	for i := 0; i < 8; i++ {
		p ^= a & -(b & 1)
		hi := -(a >> 7)
		a = a<<1 ^ 0x1b&hi
		b >>= 1
	}
	return p
}

// subByte is the S-box computed rather than looked up: the inverse as
// x^254 (0 maps to 0), then the affine map (FIPS-197 §5.1.1).
func subByte(x byte) byte {
	x2 := gmul(x, x)
	x3 := gmul(x2, x)
	x6 := gmul(x3, x3)
	x12 := gmul(x6, x6)
	x15 := gmul(x12, x3)
	x30 := gmul(x15, x15)
	x60 := gmul(x30, x30)
	x120 := gmul(x60, x60)
	x126 := gmul(x120, x6)
	x127 := gmul(x126, x)
	inv := gmul(x127, x127) // x^254
	rotl := func(v byte, n uint) byte { return v<<n | v>>(8-n) }
	return inv ^ rotl(inv, 1) ^ rotl(inv, 2) ^ rotl(inv, 3) ^ rotl(inv, 4) ^ 0x63
}
