// Package detect is the contract of hardware-detection plugins: one call
// that describes the host, so the core can choose accelerator, memory and
// CPU model, and check a suspend point against the host.
package detect

import (
	"context"

	"github.com/soulpad/soulpad/sdk"
)

// APIVersion is the version of this contract.
const APIVersion = 1

// CPU describes the host processor.
type CPU struct {
	Vendor    string   `json:"vendor"`
	Family    int      `json:"family"`
	Model     int      `json:"model"`
	ModelName string   `json:"model_name"`
	Flags     []string `json:"flags"`
	Cores     int      `json:"cores"`
}

// Storage describes one block device.
type Storage struct {
	Name      string  `json:"name"`
	Model     string  `json:"model,omitempty"`
	SizeBytes uint64  `json:"size_bytes"`
	Removable bool    `json:"removable"`
	ReadMBps  float64 `json:"read_mbps,omitempty"`
}

// NetIf describes one network interface.
type NetIf struct {
	Name  string   `json:"name"`
	Up    bool     `json:"up"`
	MAC   string   `json:"mac,omitempty"`
	Addrs []string `json:"addrs,omitempty"`
}

// HostProfile describes a host. It is recorded verbatim (as JSON) with each
// suspend point.
type HostProfile struct {
	Hostname          string    `json:"hostname,omitempty"`
	Fingerprint       string    `json:"fingerprint,omitempty"`
	Arch              string    `json:"arch,omitempty"`
	CPU               CPU       `json:"cpu"`
	KVM               bool      `json:"kvm"`
	MemTotalBytes     uint64    `json:"mem_total_bytes"`
	MemAvailableBytes uint64    `json:"mem_available_bytes"`
	Storage           []Storage `json:"storage,omitempty"`
	Net               []NetIf   `json:"net,omitempty"`
	Display           bool      `json:"display"`
}

// HasFlag reports whether the CPU has flag f (as /proc/cpuinfo names it).
func (p HostProfile) HasFlag(f string) bool {
	for _, x := range p.CPU.Flags {
		if x == f {
			return true
		}
	}
	return false
}

// ProbeRequest asks for the host profile.
type ProbeRequest struct {
	// StorageProbe asks for a bounded sequential-read measurement of each
	// path in StoragePaths (block devices or files; a path that is not a
	// listed device is added to the profile's storage under its path), or
	// of every listed device when StoragePaths is empty.
	StorageProbe bool
	StoragePaths []string
}

// ProbeResponse carries the profile.
type ProbeResponse struct {
	Profile HostProfile
}

// Detect is the interface every detect plugin implements.
type Detect interface {
	sdk.Plugin
	// Probe describes this host. It has no side effects and is fast
	// (well under a second without StorageProbe).
	Probe(ctx context.Context, req ProbeRequest) (ProbeResponse, error)
}
