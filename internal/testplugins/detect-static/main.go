// Command detect-static is a test detect plugin; see package static.
package main

import (
	"github.com/soulpad/soulpad/internal/testplugins/static"
	"github.com/soulpad/soulpad/sdk"
)

func main() { sdk.Serve(static.New()) }
