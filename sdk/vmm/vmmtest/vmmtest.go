// Package vmmtest is the conformance suite for VMM plugins. A plugin author
// runs it against the plugin in-process and as a built binary:
//
//	func TestConformance(t *testing.T) {
//		v := sdktest.InProcess(t, myvmm.New()).(vmm.VMM)
//		vmmtest.Run(t, v, vmmtest.Options{Spec: mySpec})
//	}
package vmmtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// Options tune the suite to a plugin.
type Options struct {
	// Config is the plugin's config block as JSON.
	Config []byte
	// Spec returns the machine to run; machineDir is a fresh directory the
	// spec's relative paths are relative to (copy a kernel there, etc.).
	Spec func(t *testing.T, machineDir string) vmm.Spec
	// Settle is how long the machine runs before it is suspended
	// (default 500 ms).
	Settle time.Duration
	// Timeout bounds each call (default 2 minutes).
	Timeout time.Duration
}

// Run runs the whole suite against v.
func Run(t *testing.T, v vmm.VMM, opt Options) {
	if opt.Settle == 0 {
		opt.Settle = 500 * time.Millisecond
	}
	if opt.Timeout == 0 {
		opt.Timeout = 2 * time.Minute
	}
	call := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), opt.Timeout)
	}
	ctx, cancel := call()
	defer cancel()

	info, err := v.Info(ctx, sdk.InfoRequest{})
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Kind != sdk.KindVMM || info.Name == "" || !slices.Contains(info.APIVersions, vmm.APIVersion) {
		t.Fatalf("Info = %+v; want kind vmm, a name, API version %d", info, vmm.APIVersion)
	}
	if _, err := v.Configure(ctx, sdk.ConfigureRequest{Config: opt.Config}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	mdir := t.TempDir()
	spec := opt.Spec(t, mdir)
	state := func(want string) {
		t.Helper()
		ctx, cancel := call()
		defer cancel()
		st, err := v.Status(ctx, vmm.StatusRequest{Name: spec.Name})
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		if st.State != want {
			t.Fatalf("Status = %q (%s); want %q", st.State, st.Detail, want)
		}
	}
	// Whatever happens, leave nothing running.
	t.Cleanup(func() {
		ctx, cancel := call()
		defer cancel()
		_, _ = v.PowerOff(ctx, vmm.PowerOffRequest{Name: spec.Name, Force: true})
	})

	state(vmm.StateStopped)
	if _, err := v.Suspend(ctx, vmm.SuspendRequest{Name: spec.Name, StateDir: t.TempDir()}); !errors.Is(err, sdk.ErrNotRunning) {
		t.Fatalf("Suspend with nothing running = %v; want sdk.ErrNotRunning", err)
	}

	start, err := v.Start(ctx, vmm.StartRequest{Spec: spec, MachineDir: mdir})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	state(vmm.StateRunning)
	if _, err := v.Start(ctx, vmm.StartRequest{Spec: spec, MachineDir: mdir}); !errors.Is(err, sdk.ErrBusy) {
		t.Fatalf("Start while running = %v; want sdk.ErrBusy", err)
	}
	time.Sleep(opt.Settle)

	sdir := t.TempDir()
	sctx, scancel := call()
	sus, err := v.Suspend(sctx, vmm.SuspendRequest{Name: spec.Name, StateDir: sdir})
	scancel()
	if err != nil {
		t.Fatalf("Suspend: %v", err)
	}
	state(vmm.StateStopped)
	if len(sus.Files) == 0 {
		t.Fatal("Suspend listed no files")
	}
	var biggest string
	var biggestSize int64
	for _, f := range sus.Files {
		st, err := os.Stat(filepath.Join(sdir, f))
		if err != nil {
			t.Fatalf("Suspend listed %s: %v", f, err)
		}
		if st.Size() >= biggestSize {
			biggest, biggestSize = f, st.Size()
		}
	}
	desc := sus.Description
	if desc == "" {
		desc = start.Description
	}

	t.Run("ResumeFromEmptyDirFails", func(t *testing.T) {
		ctx, cancel := call()
		defer cancel()
		_, err := v.Resume(ctx, vmm.ResumeRequest{Spec: spec, MachineDir: mdir, StateDir: t.TempDir(), Description: desc})
		if !errors.Is(err, sdk.ErrNotFound) && !errors.Is(err, sdk.ErrCorrupt) {
			t.Fatalf("Resume from an empty dir = %v; want sdk.ErrNotFound or sdk.ErrCorrupt", err)
		}
		state(vmm.StateStopped)
	})

	t.Run("ResumeFromTruncatedStateFails", func(t *testing.T) {
		bad := t.TempDir()
		for _, f := range sus.Files {
			b, err := os.ReadFile(filepath.Join(sdir, f))
			if err != nil {
				t.Fatal(err)
			}
			if f == biggest {
				b = b[:len(b)/2]
			}
			if err := os.WriteFile(filepath.Join(bad, f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := call()
		defer cancel()
		_, err := v.Resume(ctx, vmm.ResumeRequest{Spec: spec, MachineDir: mdir, StateDir: bad, Description: desc})
		if err == nil {
			t.Fatalf("Resume from a state whose %s is cut in half succeeded", biggest)
		}
		state(vmm.StateStopped)
		if st, _ := os.Stat(filepath.Join(bad, biggest)); st == nil || st.Size() != biggestSize/2 {
			t.Fatal("a failed Resume changed the state files")
		}
	})

	t.Run("ResumeRunsAgain", func(t *testing.T) {
		before := snapshot(t, sdir)
		ctx, cancel := call()
		defer cancel()
		if _, err := v.Resume(ctx, vmm.ResumeRequest{Spec: spec, MachineDir: mdir, StateDir: sdir, Description: desc}); err != nil {
			t.Fatalf("Resume: %v", err)
		}
		state(vmm.StateRunning)
		if after := snapshot(t, sdir); !maps(before, after) {
			t.Fatal("Resume modified the state directory")
		}
	})

	t.Run("PowerOffIsIdempotent", func(t *testing.T) {
		ctx, cancel := call()
		defer cancel()
		if _, err := v.PowerOff(ctx, vmm.PowerOffRequest{Name: spec.Name, Force: true}); err != nil {
			t.Fatalf("PowerOff: %v", err)
		}
		state(vmm.StateStopped)
		if _, err := v.PowerOff(ctx, vmm.PowerOffRequest{Name: spec.Name, Force: true}); err != nil {
			t.Fatalf("PowerOff on a stopped machine = %v; want nil", err)
		}
	})
}

// snapshot hashes every file in dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = hex.EncodeToString(h.Sum(nil))
	}
	return out
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
