// Command detect-example is a complete SoulPad plugin in one file, for
// integrators to copy: a detect plugin that reports what the Go runtime and
// /proc/meminfo know about the host.
//
// Build it into a plugin directory and point the config at it:
//
//	go build -o /opt/soulpad/plugins/detect-example ./examples/plugin/detect-example
//
//	plugins {
//	  dirs   = ["/opt/soulpad/plugins"]
//	  detect = "detect-example"
//	}
//	plugin "detect-example" {
//	  hostname = "kiosk-3"   # optional: report this name instead
//	}
//
// Three things make a plugin: Info (who it is), Configure (its block from
// site.hcl, decoded into a typed struct), and the methods of its kind's
// interface (here detect.Detect: Probe). main is one line around sdk.Serve.
// Run the kind's conformance suite against it (see main_test.go). A plugin
// holding something that must not outlive its process (a mount it serves,
// a half-made file) also implements sdk.Shutdowner, as crypt-luks does.
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/detect"
)

func main() { sdk.Serve(New()) }

// Config is this plugin's block in site.hcl.
type Config struct {
	Hostname string `json:"hostname"`
}

// Plugin is the example detect plugin.
type Plugin struct{ cfg Config }

// New returns the plugin.
func New() *Plugin { return &Plugin{} }

// Info implements sdk.Plugin.
func (p *Plugin) Info(context.Context, sdk.InfoRequest) (sdk.InfoResponse, error) {
	return sdk.InfoResponse{
		Name:        "detect-example",
		Kind:        sdk.KindDetect,
		Version:     "0.1.0",
		APIVersions: []int{detect.APIVersion},
		Description: "example detect plugin (Go runtime and /proc/meminfo)",
	}, nil
}

// Configure implements sdk.Plugin. Decode rejects unknown keys, so a typo
// in site.hcl is reported with the key's name.
func (p *Plugin) Configure(_ context.Context, req sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	var c Config
	if err := req.Decode(&c); err != nil {
		return sdk.ConfigureResponse{}, fmt.Errorf("detect-example: %w", err)
	}
	p.cfg = c
	return sdk.ConfigureResponse{}, nil
}

// Probe implements detect.Detect.
func (p *Plugin) Probe(context.Context, detect.ProbeRequest) (detect.ProbeResponse, error) {
	prof := detect.HostProfile{Arch: runtime.GOARCH, CPU: detect.CPU{Cores: runtime.NumCPU(), Vendor: cpuVendor()}}
	prof.Hostname = p.cfg.Hostname
	if prof.Hostname == "" {
		prof.Hostname, _ = os.Hostname()
	}
	total, avail, err := meminfo()
	if err != nil {
		// Wrap a sentinel so the host can tell what kind of failure it was.
		return detect.ProbeResponse{}, fmt.Errorf("detect-example: read /proc/meminfo: %v: %w", err, sdk.ErrIncompatibleHost)
	}
	prof.MemTotalBytes, prof.MemAvailableBytes = total, avail
	prof.Fingerprint = fmt.Sprintf("%s-%s-%d", prof.Hostname, prof.CPU.Vendor, prof.CPU.Cores)
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
		f.Close()
		prof.KVM = true
	}
	return detect.ProbeResponse{Profile: prof}, nil
}

func cpuVendor() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "vendor_id" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func meminfo() (total, avail uint64, err error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseUint(fields[1], 10, 64)
		switch fields[0] {
		case "MemTotal:":
			total = kb << 10
		case "MemAvailable:":
			avail = kb << 10
		}
	}
	return total, avail, sc.Err()
}
