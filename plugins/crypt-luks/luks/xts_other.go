//go:build !amd64 || purego

package luks

const haveAESNI = false

func xtsEncAsm(int, *byte, *byte, *byte, int, *[16]byte) { panic("no AES-NI") }
func xtsDecAsm(int, *byte, *byte, *byte, int, *[16]byte) { panic("no AES-NI") }
func invMixColumns(*byte, *byte)                         { panic("no AES-NI") }
