// Command detect-linux is SoulPad's detect plugin for Linux hosts: CPU,
// KVM, memory, storage, network, display and a stable fingerprint, read
// from /proc and /sys in well under a second.
package main

import (
	"github.com/soulpad/soulpad/plugins/detect-linux/linux"
	"github.com/soulpad/soulpad/sdk"
)

func main() { sdk.Serve(linux.New(sdk.Logger("detect-linux"))) }
