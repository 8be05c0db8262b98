//go:build amd64 && !purego

package luks

import "golang.org/x/sys/cpu"

// haveAESNI says whether the AES-NI XTS in xts_amd64.s can run here.
var haveAESNI = cpu.X86.HasAES && cpu.X86.HasSSE2

// xtsEncAsm encrypts n bytes (a multiple of 128) of src into dst with the
// round keys xk (nr rounds), starting from the encrypted tweak.
//
//go:noescape
func xtsEncAsm(nr int, xk *byte, dst, src *byte, n int, tweak *[16]byte)

// xtsDecAsm is xtsEncAsm's inverse; xk are the decryption round keys.
//
//go:noescape
func xtsDecAsm(nr int, xk *byte, dst, src *byte, n int, tweak *[16]byte)

// invMixColumns is AESIMC: it turns an encryption round key into the
// equivalent inverse cipher's.
//
//go:noescape
func invMixColumns(dst, src *byte)
