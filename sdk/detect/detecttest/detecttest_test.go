package detecttest_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/detect"
	"github.com/soulpad/soulpad/sdk/detect/detecttest"
	"github.com/soulpad/soulpad/sdk/sdktest"
)

// fixedHost is a test double for the suite itself: it reports a made-up
// host. With unstable it is deliberately broken: each probe reports a new
// fingerprint, so nothing could tell a host it has seen before.
type fixedHost struct {
	unstable bool
	n        atomic.Int64
}

func (f *fixedHost) Info(context.Context, sdk.InfoRequest) (sdk.InfoResponse, error) {
	return sdk.InfoResponse{Name: "detect-fixed", Kind: sdk.KindDetect, Version: "0", APIVersions: []int{detect.APIVersion}}, nil
}
func (f *fixedHost) Configure(context.Context, sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	return sdk.ConfigureResponse{}, nil
}
func (f *fixedHost) Probe(context.Context, detect.ProbeRequest) (detect.ProbeResponse, error) {
	fp := "host-1"
	if f.unstable {
		fp += strings.Repeat("+", int(f.n.Add(1)))
	}
	return detect.ProbeResponse{Profile: detect.HostProfile{Arch: "amd64", Hostname: "pc", Fingerprint: fp,
		CPU: detect.CPU{Vendor: "AuthenticAMD", Cores: 2}, MemTotalBytes: 4 << 30, MemAvailableBytes: 2 << 30}}, nil
}

// TestSuiteRunsTheBrokenPlugin is run in a child process by
// TestSuiteFailsABrokenPlugin; alone it is skipped.
func TestSuiteRunsTheBrokenPlugin(t *testing.T) {
	if os.Getenv("DETECTTEST_BROKEN") == "" {
		t.Skip("run by TestSuiteFailsABrokenPlugin")
	}
	detecttest.Run(t, sdktest.InProcess(t, &fixedHost{unstable: true}).(detect.Detect), detecttest.Options{})
}

// The suite passes the double, and fails it once its fingerprint changes
// from probe to probe.
func TestSuiteFailsABrokenPlugin(t *testing.T) {
	detecttest.Run(t, sdktest.InProcess(t, &fixedHost{}).(detect.Detect), detecttest.Options{})

	cmd := exec.Command(os.Args[0], "-test.run", "^TestSuiteRunsTheBrokenPlugin$", "-test.v")
	cmd.Env = append(os.Environ(), "DETECTTEST_BROKEN=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the suite passed a plugin whose fingerprint changes:\n%s", out)
	}
	if !strings.Contains(string(out), "fingerprint changed between two probes") {
		t.Fatalf("the suite failed the broken plugin, but not for the right reason:\n%s", out)
	}
}
