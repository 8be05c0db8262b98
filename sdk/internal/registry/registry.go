// Package registry is where each plugin kind declares itself, once: its
// name, its API version, where it comes in a session, and how to serve and
// dispense it. Kind packages call Register from init; sdk, the host and
// the tests derive everything else from it (sdk does not import the kind
// packages, which import sdk).
package registry

import (
	"sort"
	"sync"

	"github.com/hashicorp/go-plugin"
)

// Maker returns the go-plugin Plugin for a kind. impl is the plugin's
// implementation on the server side and nil on the host side.
type Maker func(impl any) (plugin.Plugin, error)

// Kind is one plugin kind.
type Kind struct {
	Name       string
	APIVersion int
	// Order places the kind in a session (detect 10, crypt 20, vmm 30,
	// backup 40): lists of kinds follow it.
	Order int
	Maker Maker
}

var (
	mu    sync.Mutex
	kinds = map[string]Kind{}
)

// Register records a kind; kind packages call it from init.
func Register(k Kind) {
	mu.Lock()
	defer mu.Unlock()
	kinds[k.Name] = k
}

// Lookup returns the kind called name.
func Lookup(name string) (Kind, bool) {
	mu.Lock()
	defer mu.Unlock()
	k, ok := kinds[name]
	return k, ok
}

// All lists the registered kinds in session order.
func All() []Kind {
	mu.Lock()
	defer mu.Unlock()
	out := make([]Kind, 0, len(kinds))
	for _, k := range kinds {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Order < out[j].Order })
	return out
}
