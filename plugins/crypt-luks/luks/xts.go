package luks

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"reflect"
	"runtime"
	"sync"
	"unsafe"

	"github.com/soulpad/soulpad/sdk/secmem"
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
	// has AES-NI, in locked memory (sdk/secmem); nr is the number of
	// rounds.
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
		half := key[:len(key)/2]
		x.nr = len(half)/4 + 6
		if x.ek, err = secmem.Alloc(16 * (x.nr + 1)); err == nil {
			x.dk, err = secmem.Alloc(len(x.ek))
		}
		if err != nil {
			x.wipe()
			return nil, fmt.Errorf("aes-xts: %w", err)
		}
		expandKey(x.ek, half)
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

// wipe clears all round keys: this package's and those inside the
// crypto/aes blocks. The cipher is unusable after it.
func (x *xtsCipher) wipe() {
	secmem.Free(x.ek)
	secmem.Free(x.dk)
	x.ek, x.dk = nil, nil
	wipeBlock(x.k1)
	wipeBlock(x.k2)
	x.k1, x.k2 = nil, nil
}

// wipeBlock zeroes the value behind a cipher.Block in place: crypto/aes
// keeps its round keys there and offers no way to clear them. Slices and
// arrays of numbers inside are cleared too, in case a future crypto/aes
// holds its schedule behind a slice.
func wipeBlock(b cipher.Block) {
	v := reflect.ValueOf(b)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return
	}
	wipeValue(v.Elem(), 4)
}

func wipeValue(v reflect.Value, depth int) {
	if depth == 0 || !v.CanAddr() {
		return
	}
	v = reflect.NewAt(v.Type(), unsafe.Pointer(v.UnsafeAddr())).Elem() // settable, even if unexported
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			wipeValue(v.Field(i), depth-1)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			wipeValue(v.Index(i), depth-1)
		}
	case reflect.Pointer:
		if !v.IsNil() {
			wipeValue(v.Elem(), depth-1)
		}
	}
	v.SetZero()
}

// tweaks fills t with the XTS tweak of each 16-byte block of a sector;
// b is 16 bytes of scratch.
func (x *xtsCipher) tweaks(t, b []byte, iv uint64) {
	clear(b)
	binary.LittleEndian.PutUint64(b[:8], iv)
	x.k2.Encrypt(b, b)
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

// sector encrypts or decrypts one sector. scratch is sector size + 16
// bytes: the sector's tweaks (crypto/aes path) and its encrypted IV.
// Nothing here allocates: under secretDo each allocation would be
// tracked for erasure, at a cost per sector.
func (x *xtsCipher) sector(dst, src, scratch []byte, sectorNo uint64, enc bool) {
	iv := sectorNo*uint64(x.sectorSize/512) + x.ivTweak
	t, tw := scratch[:x.sectorSize], scratch[x.sectorSize:x.sectorSize+16]
	if x.ek != nil {
		clear(tw)
		binary.LittleEndian.PutUint64(tw[:8], iv)
		x.k2.Encrypt(tw, tw)
		if enc {
			xtsEncAsm(x.nr, &x.ek[0], &dst[0], &src[0], len(src), (*[16]byte)(tw))
		} else {
			xtsDecAsm(x.nr, &x.dk[0], &dst[0], &src[0], len(src), (*[16]byte)(tw))
		}
		return
	}
	x.tweaks(t, tw, iv)
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
// It runs under secretDo: the round keys it loads into registers, and a
// signal's saved copy of them, are erased when it returns; the tweaks
// are cleared.
func (x *xtsCipher) cryptSerial(dst, src []byte, first uint64, enc bool) {
	ss := x.sectorSize
	scratch := make([]byte, ss+16)
	secretDo(func() {
		for i := 0; i < len(src)/ss; i++ {
			x.sector(dst[i*ss:(i+1)*ss], src[i*ss:(i+1)*ss], scratch, first+uint64(i), enc)
		}
		clear(scratch)
	})
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
			x.cryptSerial(dst[a*ss:b*ss], src[a*ss:b*ss], first+uint64(a), enc)
		}(a, b)
	}
	wg.Wait()
}
