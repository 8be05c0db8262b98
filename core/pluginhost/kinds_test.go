package pluginhost

import (
	"slices"
	"testing"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/sdk"
)

// The config chooses one plugin for each kind the SDK registers, and for
// no other: a new kind registered in sdk without its plugins.<kind> key
// (or a key without a kind) fails here.
func TestConfigChoosesAPluginForEveryRegisteredKind(t *testing.T) {
	var registered []string
	for _, k := range sdk.Kinds() {
		registered = append(registered, string(k))
	}
	configured := config.Plugins{}.Kinds()
	slices.Sort(registered)
	slices.Sort(configured)
	if !slices.Equal(registered, configured) {
		t.Fatalf("the SDK registers kinds %v, but config.Plugins chooses plugins for %v", registered, configured)
	}
}
