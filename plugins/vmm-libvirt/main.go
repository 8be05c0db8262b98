// Command vmm-libvirt is SoulPad's VMM plugin for sites that run their
// machines with libvirt: the same machine spec as vmm-qemu, run as a
// transient libvirt domain, suspended with virDomainSaveFlags into the
// vault and resumed with virDomainRestoreFlags.
package main

import (
	"github.com/soulpad/soulpad/plugins/vmm-libvirt/lv"
	"github.com/soulpad/soulpad/sdk"
)

func main() { sdk.Serve(lv.New()) }
