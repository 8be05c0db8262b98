// Command backup-restic is SoulPad's local backup plugin: the locked pad
// into a restic repository on a second disk or a LAN path (restic from
// Debian deduplicates, encrypts and verifies).
package main

import (
	"github.com/soulpad/soulpad/plugins/backup-restic/restic"
	"github.com/soulpad/soulpad/sdk"
)

func main() { sdk.Serve(restic.New()) }
