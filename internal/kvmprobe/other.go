//go:build !(linux && amd64)

// Package kvmprobe tells whether KVM works on this host; only x86-64
// Linux is probed.
package kvmprobe

// Usable reports false: KVM is only probed on x86-64 Linux.
func Usable(string) (bool, string) { return false, "KVM is only used on x86-64 Linux" }
