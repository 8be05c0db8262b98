// Package static is a test detect plugin that reports the host profile
// given in its config block (or a fixed small x86-64 host), so tests can
// play a session on a host of their choosing.
package static

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/detect"
)

// Config is the plugin's block.
type Config struct {
	Profile *detect.HostProfile `json:"profile"`
	// ProfileFile is a JSON file holding the profile (e.g. one recorded on
	// another host); it wins over Profile.
	ProfileFile string `json:"profile_file"`
	Fail        bool   `json:"fail"`
}

// Plugin is detect-static.
type Plugin struct{ cfg Config }

// New returns the plugin.
func New() *Plugin { return &Plugin{} }

var _ detect.Detect = (*Plugin)(nil)

// DefaultFlags are the CPU flags of the default profile: a small x86-64
// host (as /proc/cpuinfo of an Atom x5-Z8350 lists them).
const DefaultFlags = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx lm " +
	"constant_tsc pni monitor ssse3 cx16 sse4_1 sse4_2 movbe popcnt rdrand lahf_lm 3dnowprefetch ept vpid smep erms arat"

// Default is the profile reported without config.
var Default = detect.HostProfile{
	Hostname: "static-host", Fingerprint: "static-0001", Arch: "amd64",
	CPU:           detect.CPU{Vendor: "GenuineIntel", Family: 6, Model: 85, ModelName: "test CPU", Flags: strings.Fields(DefaultFlags), Cores: 2},
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
	if c.ProfileFile != "" {
		b, err := os.ReadFile(c.ProfileFile)
		if err != nil {
			return sdk.ConfigureResponse{}, fmt.Errorf("detect-static: profile_file: %v: %w", err, sdk.ErrInvalidConfig)
		}
		c.Profile = new(detect.HostProfile)
		if err := json.Unmarshal(b, c.Profile); err != nil {
			return sdk.ConfigureResponse{}, fmt.Errorf("detect-static: profile_file %s: %v: %w", c.ProfileFile, err, sdk.ErrInvalidConfig)
		}
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
