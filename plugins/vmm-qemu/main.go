// Command vmm-qemu is the SoulPad VMM plugin that runs machines with QEMU
// over QMP: KVM when /dev/kvm is usable, TCG otherwise.
package main

import (
	"github.com/soulpad/soulpad/plugins/vmm-qemu/qemu"
	"github.com/soulpad/soulpad/sdk"
)

func main() { sdk.Serve(qemu.New(sdk.Logger("vmm-qemu"))) }
