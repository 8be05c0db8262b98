// Command crypt-plain is the SoulPad crypt plugin that does not encrypt:
// the vault is a plain directory. It exists for tests, to measure what
// encryption costs, and as the example for plugin authors.
package main

import (
	"github.com/soulpad/soulpad/plugins/crypt-plain/plain"
	"github.com/soulpad/soulpad/sdk"
)

func main() { sdk.Serve(plain.New(sdk.Logger("crypt-plain"))) }
