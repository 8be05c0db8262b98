// Package sdk is the contract between the SoulPad core and its plugins.
//
// A plugin is a separate program that serves exactly one kind (vmm, crypt,
// backup or detect) over gRPC with hashicorp/go-plugin. Plugin authors
// implement the Go interface of their kind (sdk/vmm.VMM, sdk/crypt.Crypt,
// sdk/backup.Backup, sdk/detect.Detect), which embeds Plugin, and call Serve
// from main:
//
//	func main() { sdk.Serve(myplugin.New()) }
//
// Every call takes a context and a request struct and returns a response
// struct, so fields can be added without breaking plugins. Errors that a
// plugin returns wrapping one of the sentinels in this package (ErrNotFound,
// ErrWrongPassphrase, …) keep their identity across the RPC: errors.Is works
// on the host side.
//
// This package and its sub-packages never import the core.
package sdk
