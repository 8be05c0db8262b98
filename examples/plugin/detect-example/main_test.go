package main

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/soulpad/soulpad/sdk/detect"
	"github.com/soulpad/soulpad/sdk/detect/detecttest"
	"github.com/soulpad/soulpad/sdk/sdktest"
)

// The conformance suite, in-process over go-plugin's in-memory gRPC…
func TestConformanceInProcess(t *testing.T) {
	detecttest.Run(t, sdktest.InProcess(t, New()).(detect.Detect), detecttest.Options{Config: []byte(`{"hostname": "kiosk-3"}`)})
}

// …and against the built binary, as the core will run it.
func TestConformanceBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "detect-example")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	detecttest.Run(t, sdktest.Binary(t, bin).(detect.Detect), detecttest.Options{})
}
