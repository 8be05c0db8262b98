package linux

import "unsafe"

// unsafePointer is the address of b's first byte, for O_DIRECT alignment.
func unsafePointer(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }
