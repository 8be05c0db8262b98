// Command vmm-counter is a test VMM plugin whose machine is a counter in
// memory; see package counter.
package main

import (
	"github.com/soulpad/soulpad/internal/testplugins/counter"
	"github.com/soulpad/soulpad/sdk"
)

func main() { sdk.Serve(counter.New()) }
