// Package registry lets each kind package tell sdk.Serve how to serve and
// dispense its kind without sdk importing the kind packages (which import
// sdk).
package registry

import (
	"sync"

	"github.com/hashicorp/go-plugin"
)

// Maker returns the go-plugin Plugin for a kind. impl is the plugin's
// implementation on the server side and nil on the host side.
type Maker func(impl any) (plugin.Plugin, error)

var (
	mu    sync.Mutex
	kinds = map[string]Maker{}
)

// Register records the maker for kind; kind packages call it from init.
func Register(kind string, m Maker) {
	mu.Lock()
	defer mu.Unlock()
	kinds[kind] = m
}

// Lookup returns the maker for kind, or nil.
func Lookup(kind string) Maker {
	mu.Lock()
	defer mu.Unlock()
	return kinds[kind]
}
