// Package static is a test detect plugin that reports the host profile
// given in its config block (or a fixed small x86-64 host), so tests can
// play a session on a host of their choosing.
package static

import (
	"context"
	"fmt"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/detect"
)

// Config is the plugin's block.
type Config struct {
	Profile *detect.HostProfile `json:"profile"`
	Fail    bool                `json:"fail"`
}

// Plugin is detect-static.
type Plugin struct{ cfg Config }

// New returns the plugin.
func New() *Plugin { return &Plugin{} }

var _ detect.Detect = (*Plugin)(nil)

// Default is the profile reported without config.
var Default = detect.HostProfile{
	Hostname: "static-host", Fingerprint: "static-0001", Arch: "amd64",
	CPU:           detect.CPU{Vendor: "GenuineIntel", Family: 6, Model: 85, ModelName: "test CPU", Flags: []string{"fpu", "sse2", "ssse3", "sse4_1", "sse4_2", "popcnt"}, Cores: 2},
	MemTotalBytes: 4 << 30, MemAvailableBytes: 3 << 30,
}

// Info implements sdk.Plugin.
func (p *Plugin) Info(context.Context, sdk.InfoRequest) (sdk.InfoResponse, error) {
	return sdk.InfoResponse{Name: "detect-static", Kind: sdk.KindDetect, Version: "0.1.0", APIVersions: []int{detect.APIVersion},
		Description: "test detect plugin: reports the profile in its config"}, nil
}

// Configure implements sdk.Plugin.
func (p *Plugin) Configure(_ context.Context, req sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	var c Config
	if err := req.Decode(&c); err != nil {
		return sdk.ConfigureResponse{}, err
	}
	p.cfg = c
	return sdk.ConfigureResponse{}, nil
}

// Probe implements detect.Detect.
func (p *Plugin) Probe(context.Context, detect.ProbeRequest) (detect.ProbeResponse, error) {
	if p.cfg.Fail {
		return detect.ProbeResponse{}, fmt.Errorf("detect-static: injected failure (fail)")
	}
	if p.cfg.Profile != nil {
		return detect.ProbeResponse{Profile: *p.cfg.Profile}, nil
	}
	return detect.ProbeResponse{Profile: Default}, nil
}
