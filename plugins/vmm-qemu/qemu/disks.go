package qemu

import "github.com/soulpad/soulpad/sdk/vmm/diskchain"

// Disks are chains of qcow2 overlays paired with suspend points; see
// package diskchain.
func (p *Plugin) chain() diskchain.Chain {
	return diskchain.Chain{QemuImg: p.imgPath, Plugin: "vmm-qemu"}
}
