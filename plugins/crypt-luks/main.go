// Command crypt-luks is the SoulPad crypt plugin whose vault is a LUKS2
// container (aes-xts-plain64, 512-bit key, 4096-byte sectors, argon2id)
// with ext4 inside, so any Linux can open a pad with cryptsetup.
package main

import (
	"github.com/soulpad/soulpad/plugins/crypt-luks/luks"
	"github.com/soulpad/soulpad/sdk"
)

func main() { sdk.Serve(luks.New(sdk.Logger("crypt-luks"))) }
