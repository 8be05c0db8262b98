// Command crypt-gocryptfs is the SoulPad crypt plugin whose vault is a
// gocryptfs cipher directory: file-level encryption over FUSE, no kernel
// crypto or device-mapper needed, and a cipher text that can be backed up
// file by file without the key.
package main

import (
	"github.com/soulpad/soulpad/plugins/crypt-gocryptfs/gocryptfs"
	"github.com/soulpad/soulpad/sdk"
)

func main() { sdk.Serve(gocryptfs.New(sdk.Logger("crypt-gocryptfs"))) }
