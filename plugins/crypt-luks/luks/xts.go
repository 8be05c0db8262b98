package luks

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
)

// xtsCipher is AES-XTS with "plain64" IVs in 512-byte units, as dm-crypt
// and cryptsetup use for LUKS2 (also with 4096-byte sectors), and spreads
// large requests over the CPUs. With AES-NI (xts_amd64.s) it runs eight
// blocks through the rounds at once; elsewhere it encrypts a sector's
// tweaks in one pass and XORs whole sectors at a time around crypto/aes.
type xtsCipher struct {
	k1, k2     cipher.Block
	sectorSize int
	ivTweak    uint64
	// AES-NI round keys for k1, encryption and decryption, when the CPU
	// has AES-NI; nr is the number of rounds.
	ek, dk []byte
	nr     int
}

func newXTS(key []byte, sectorSize int, ivTweak uint64) (*xtsCipher, error) {
	if len(key)%2 != 0 || (len(key) != 32 && len(key) != 64) {
		return nil, fmt.Errorf("aes-xts: key of %d bytes", len(key))
	}
	// LUKS2 sectors are 512 to 4096 bytes, a power of two: whole groups
	// of eight blocks, as the AES-NI code takes them.
	if sectorSize < 512 || sectorSize > 4096 || sectorSize&(sectorSize-1) != 0 {
		return nil, fmt.Errorf("aes-xts: sector size %d (want 512, 1024, 2048 or 4096)", sectorSize)
	}
	k1, err := aes.NewCipher(key[:len(key)/2])
	if err != nil {
		return nil, err
	}
	k2, err := aes.NewCipher(key[len(key)/2:])
	if err != nil {
		return nil, err
	}
	x := &xtsCipher{k1: k1, k2: k2, sectorSize: sectorSize, ivTweak: ivTweak}
	if haveAESNI && !noAsm {
		x.ek, x.nr = expandKey(key[:len(key)/2])
		x.dk = make([]byte, len(x.ek))
		n := x.nr * 16
		copy(x.dk, x.ek[n:])
		copy(x.dk[n:], x.ek[:16])
		for r := 1; r < x.nr; r++ {
			invMixColumns(&x.dk[r*16], &x.ek[n-r*16])
		}
	}
	return x, nil
}

// noAsm turns the AES-NI path off (for tests that compare both paths).
var noAsm = false

// wipe clears the round keys this package holds; crypto/aes's own stay
// until the cipher is collected.
func (x *xtsCipher) wipe() {
	clear(x.ek)
	clear(x.dk)
	x.ek, x.dk = nil, nil
}

// tweaks fills t with the XTS tweak of each 16-byte block of a sector.
func (x *xtsCipher) tweaks(t []byte, iv uint64) {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], iv)
	x.k2.Encrypt(b[:], b[:])
	lo, hi := binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])
	for i := 0; i < len(t); i += 16 {
		binary.LittleEndian.PutUint64(t[i:], lo)
		binary.LittleEndian.PutUint64(t[i+8:], hi)
		// multiply by α in GF(2^128)
		carry := hi >> 63
		hi = hi<<1 | lo>>63
		lo = lo<<1 ^ (carry * 0x87)
	}
}

// sector encrypts or decrypts one sector; t is scratch of sector size.
func (x *xtsCipher) sector(dst, src, t []byte, sectorNo uint64, enc bool) {
	iv := sectorNo*uint64(x.sectorSize/512) + x.ivTweak
	if x.ek != nil {
		var tw [16]byte
		binary.LittleEndian.PutUint64(tw[:8], iv)
		x.k2.Encrypt(tw[:], tw[:])
		if enc {
			xtsEncAsm(x.nr, &x.ek[0], &dst[0], &src[0], len(src), &tw)
		} else {
			xtsDecAsm(x.nr, &x.dk[0], &dst[0], &src[0], len(src), &tw)
		}
		return
	}
	x.tweaks(t, iv)
	subtle.XORBytes(dst, src, t)
	if enc {
		for i := 0; i < len(dst); i += 16 {
			x.k1.Encrypt(dst[i:i+16], dst[i:i+16])
		}
	} else {
		for i := 0; i < len(dst); i += 16 {
			x.k1.Decrypt(dst[i:i+16], dst[i:i+16])
		}
	}
	subtle.XORBytes(dst, dst, t)
}

// cryptSerial processes whole sectors of src into dst on this goroutine.
func (x *xtsCipher) cryptSerial(dst, src []byte, first uint64, enc bool) {
	ss := x.sectorSize
	var t []byte
	if x.ek == nil {
		t = make([]byte, ss) // the crypto/aes path's tweak scratch
	}
	for i := 0; i < len(src)/ss; i++ {
		x.sector(dst[i*ss:(i+1)*ss], src[i*ss:(i+1)*ss], t, first+uint64(i), enc)
	}
}

// crypt processes whole sectors of src into dst, starting at sector
// first, in parallel for large buffers.
func (x *xtsCipher) crypt(dst, src []byte, first uint64, enc bool) {
	ss := x.sectorSize
	n := len(src) / ss
	workers := runtime.GOMAXPROCS(0)
	if n < 16 || workers < 2 {
		x.cryptSerial(dst, src, first, enc)
		return
	}
	if workers > n {
		workers = n
	}
	var wg sync.WaitGroup
	per := (n + workers - 1) / workers
	for w := 0; w < workers; w++ {
		a, b := w*per, (w+1)*per
		if b > n {
			b = n
		}
		if a >= b {
			break
		}
		wg.Add(1)
		go func(a, b int) {
			defer wg.Done()
			t := make([]byte, ss)
			for i := a; i < b; i++ {
				x.sector(dst[i*ss:(i+1)*ss], src[i*ss:(i+1)*ss], t, first+uint64(i), enc)
			}
		}(a, b)
	}
	wg.Wait()
}
