// Command backup-copy is a test backup plugin; see package copybackup.
package main

import (
	"github.com/soulpad/soulpad/internal/testplugins/copybackup"
	"github.com/soulpad/soulpad/sdk"
)

func main() { sdk.Serve(copybackup.New()) }
