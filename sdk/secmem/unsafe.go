//go:build linux

package secmem

import "unsafe"

// unsafeSlice is the n bytes from p: the whole mapping of a buffer whose
// slice is shorter.
func unsafeSlice(p *byte, n int) []byte { return unsafe.Slice(p, n) }

func unsafePointer(p *byte) unsafe.Pointer { return unsafe.Pointer(p) }
