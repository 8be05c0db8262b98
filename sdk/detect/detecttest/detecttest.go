// Package detecttest is the conformance suite for detect plugins.
package detecttest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/detect"
)

// Options tune the suite to a plugin.
type Options struct {
	// Config is the plugin's config block as JSON.
	Config []byte
}

// Run runs the suite against d: Info, Configure, and a Probe whose
// profile describes a usable host.
func Run(t *testing.T, d detect.Detect, opt Options) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	info, err := d.Info(ctx, sdk.InfoRequest{})
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Kind != sdk.KindDetect || info.Name == "" || !slices.Contains(info.APIVersions, detect.APIVersion) {
		t.Fatalf("Info = %+v; want kind detect, a name, API version %d", info, detect.APIVersion)
	}
	if _, err := d.Configure(ctx, sdk.ConfigureRequest{Config: opt.Config}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	out, err := d.Probe(ctx, detect.ProbeRequest{})
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	p := out.Profile
	if p.Arch == "" || p.CPU.Cores < 1 || p.MemTotalBytes == 0 || p.CPU.Vendor == "" {
		t.Fatalf("Probe profile lacks arch, CPU vendor, cores or memory: %+v", p)
	}
	if p.MemAvailableBytes > p.MemTotalBytes {
		t.Fatalf("available memory %d exceeds total %d", p.MemAvailableBytes, p.MemTotalBytes)
	}
	again, err := d.Probe(ctx, detect.ProbeRequest{})
	if err != nil {
		t.Fatalf("second Probe: %v", err)
	}
	if again.Profile.Fingerprint != p.Fingerprint {
		t.Fatalf("fingerprint changed between two probes: %q then %q", p.Fingerprint, again.Profile.Fingerprint)
	}
}
