// Command backup-tsm is SoulPad's backup plugin for IBM Storage Protect
// (Tivoli Storage Manager), driving the site's dsmc client.
package main

import (
	"github.com/soulpad/soulpad/plugins/backup-tsm/tsm"
	"github.com/soulpad/soulpad/sdk"
)

func main() { sdk.Serve(tsm.New()) }
