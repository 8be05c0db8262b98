//go:build linux && amd64

// Package kvmprobe tells whether KVM works on this host, not only whether
// /dev/kvm opens: nested or half-broken KVM (seen on cloud VMs) opens fine
// and then hides basic CPU features or never runs a guest, and a machine
// booted on it hangs. The probe asks for the CPUID features the portable
// CPU model needs and runs three instructions in a throw-away VM.
package kvmprobe

import (
	"fmt"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl numbers from <linux/kvm.h> (x86-64).
const (
	kvmGetAPIVersion        = 0xAE00
	kvmCreateVM             = 0xAE01
	kvmGetVCPUMmapSize      = 0xAE04
	kvmGetSupportedCPUID    = 0xC008AE05
	kvmCreateVCPU           = 0xAE41
	kvmSetUserMemoryRegion  = 0x4020AE46
	kvmRun                  = 0xAE80
	kvmSetRegs              = 0x4090AE82
	kvmGetSregs             = 0x8138AE83
	kvmSetSregs             = 0x4138AE84
	kvmExitIO               = 2
	cpuidEntrySize          = 40
	maxCPUIDEntries         = 256
	sregsSize               = 0x138
	regsSize                = 0x90
	guestAddr               = 0x1000
	probePort               = 0x10
	probeValue              = 0x2a
	runTimeout              = 3 * time.Second
	cpuidLeaf1ECXNeeded     = 1<<0 | 1<<13 // SSE3 (pni), CMPXCHG16B
	cpuidLeaf1EDXNeeded     = 1<<0 | 1<<4 | 1<<5 | 1<<8 | 1<<15 | 1<<23 | 1<<24 | 1<<25 | 1<<26
	cpuidLeaf1EDXNeededDesc = "fpu tsc msr cx8 cmov mmx fxsr sse sse2"
)

var (
	once   sync.Once
	ok     bool
	reason string
)

// Usable reports whether KVM at dev (normally /dev/kvm) runs guests, and
// if not, why. The result for /dev/kvm is computed once per process.
func Usable(dev string) (bool, string) {
	if dev != "/dev/kvm" {
		return probe(dev)
	}
	once.Do(func() { ok, reason = probe(dev) })
	return ok, reason
}

func ioctl(fd int, req uintptr, arg uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if errno != 0 {
		return r, errno
	}
	return r, nil
}

func probe(dev string) (bool, string) {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Sprintf("%s: %v", dev, err)
	}
	defer f.Close()
	kvm := int(f.Fd())
	if v, err := ioctl(kvm, kvmGetAPIVersion, 0); err != nil || v != 12 {
		return false, fmt.Sprintf("%s: KVM API version %d (%v), want 12", dev, v, err)
	}
	if why := checkCPUID(kvm); why != "" {
		return false, why
	}
	return runGuest(kvm)
}

// checkCPUID: the features the portable model (qemu64) needs must be
// offered to guests.
func checkCPUID(kvm int) string {
	buf := make([]byte, 8+maxCPUIDEntries*cpuidEntrySize)
	*(*uint32)(unsafe.Pointer(&buf[0])) = maxCPUIDEntries
	if _, err := ioctl(kvm, kvmGetSupportedCPUID, uintptr(unsafe.Pointer(&buf[0]))); err != nil {
		return fmt.Sprintf("KVM_GET_SUPPORTED_CPUID: %v", err)
	}
	n := *(*uint32)(unsafe.Pointer(&buf[0]))
	for i := uint32(0); i < n && i < maxCPUIDEntries; i++ {
		e := buf[8+i*cpuidEntrySize:]
		fn := *(*uint32)(unsafe.Pointer(&e[0]))
		if fn != 1 {
			continue
		}
		ecx := *(*uint32)(unsafe.Pointer(&e[20]))
		edx := *(*uint32)(unsafe.Pointer(&e[24]))
		if ecx&cpuidLeaf1ECXNeeded != cpuidLeaf1ECXNeeded || edx&cpuidLeaf1EDXNeeded != cpuidLeaf1EDXNeeded {
			return fmt.Sprintf("KVM offers guests too few CPU features (leaf 1: ecx %#x, edx %#x; the portable CPU needs pni cx16 and %s): nested or restricted KVM", ecx, edx, cpuidLeaf1EDXNeededDesc)
		}
		return ""
	}
	return "KVM offers no CPUID leaf 1 to guests"
}

// runGuest runs "mov al, 0x2a; out 0x10, al; hlt" in real mode.
func runGuest(kvm int) (bool, string) {
	vmfd, err := ioctl(kvm, kvmCreateVM, 0)
	if err != nil {
		return false, fmt.Sprintf("KVM_CREATE_VM: %v", err)
	}
	vm := int(vmfd)
	defer unix.Close(vm)
	mem, err := unix.Mmap(-1, 0, 0x1000, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		return false, fmt.Sprintf("mmap: %v", err)
	}
	defer unix.Munmap(mem)
	copy(mem, []byte{0xb0, probeValue, 0xe6, probePort, 0xf4})
	region := struct {
		slot, flags               uint32
		guestPhys, size, userAddr uint64
	}{0, 0, guestAddr, 0x1000, uint64(uintptr(unsafe.Pointer(&mem[0])))}
	if _, err := ioctl(vm, kvmSetUserMemoryRegion, uintptr(unsafe.Pointer(&region))); err != nil {
		return false, fmt.Sprintf("KVM_SET_USER_MEMORY_REGION: %v", err)
	}
	cpufd, err := ioctl(vm, kvmCreateVCPU, 0)
	if err != nil {
		return false, fmt.Sprintf("KVM_CREATE_VCPU: %v", err)
	}
	cpu := int(cpufd)
	defer unix.Close(cpu)
	size, err := ioctl(kvm, kvmGetVCPUMmapSize, 0)
	if err != nil || size < 64 {
		return false, fmt.Sprintf("KVM_GET_VCPU_MMAP_SIZE: %d %v", size, err)
	}
	run, err := unix.Mmap(cpu, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return false, fmt.Sprintf("mmap vcpu: %v", err)
	}
	defer unix.Munmap(run)
	var sregs [sregsSize]byte
	if _, err := ioctl(cpu, kvmGetSregs, uintptr(unsafe.Pointer(&sregs[0]))); err != nil {
		return false, fmt.Sprintf("KVM_GET_SREGS: %v", err)
	}
	*(*uint64)(unsafe.Pointer(&sregs[0])) = 0  // cs.base
	*(*uint16)(unsafe.Pointer(&sregs[12])) = 0 // cs.selector
	if _, err := ioctl(cpu, kvmSetSregs, uintptr(unsafe.Pointer(&sregs[0]))); err != nil {
		return false, fmt.Sprintf("KVM_SET_SREGS: %v", err)
	}
	var regs [regsSize / 8]uint64
	regs[16] = guestAddr // rip
	regs[17] = 2         // rflags
	if _, err := ioctl(cpu, kvmSetRegs, uintptr(unsafe.Pointer(&regs[0]))); err != nil {
		return false, fmt.Sprintf("KVM_SET_REGS: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := ioctl(cpu, kvmRun, 0)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return false, fmt.Sprintf("KVM_RUN: %v", err)
		}
	case <-time.After(runTimeout):
		return false, "KVM_RUN did not come back in 3 s: a guest would hang"
	}
	exit := *(*uint32)(unsafe.Pointer(&run[8]))
	if exit != kvmExitIO {
		return false, fmt.Sprintf("a test guest under KVM stopped with exit reason %d, not the I/O it does", exit)
	}
	port := *(*uint16)(unsafe.Pointer(&run[34]))
	off := *(*uint64)(unsafe.Pointer(&run[40]))
	if port != probePort || off >= uint64(len(run)) || run[off] != probeValue {
		return false, "a test guest under KVM wrote the wrong value"
	}
	return true, ""
}
