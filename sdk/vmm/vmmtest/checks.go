package vmmtest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/vmm"
)

func (s *suite) nothingRunning(t *testing.T) {
	m := s.fixture(t, s.opt.Spec)
	s.state(t, m, vmm.StateStopped)
	ctx, cancel := s.ctx()
	defer cancel()
	if _, err := s.v.Suspend(ctx, vmm.SuspendRequest{Name: m.Spec.Name, StateDir: s.tempDir(t)}); !errors.Is(err, sdk.ErrNotRunning) {
		t.Fatalf("Suspend with nothing running = %v; want sdk.ErrNotRunning", err)
	}
	if _, err := s.v.PowerOff(ctx, vmm.PowerOffRequest{Name: m.Spec.Name, Force: true}); err != nil {
		t.Fatalf("PowerOff with nothing running = %v; want nil", err)
	}
}

func (s *suite) startBusyPowerOff(t *testing.T) {
	m := s.fixture(t, s.opt.Spec)
	s.start(t, &m, nil)
	ctx, cancel := s.ctx()
	defer cancel()
	if _, err := s.v.Start(ctx, vmm.StartRequest{Spec: m.Spec, MachineDir: m.Dir}); !errors.Is(err, sdk.ErrBusy) {
		t.Fatalf("Start while running = %v; want sdk.ErrBusy", err)
	}
	s.progressAbove(t, m, 0)
	if _, err := s.v.PowerOff(ctx, vmm.PowerOffRequest{Name: m.Spec.Name, Force: true}); err != nil {
		t.Fatalf("PowerOff: %v", err)
	}
	s.state(t, m, vmm.StateStopped)
	if _, err := s.v.PowerOff(ctx, vmm.PowerOffRequest{Name: m.Spec.Name, Force: true}); err != nil {
		t.Fatalf("PowerOff on a stopped machine = %v; want nil", err)
	}
}

func (s *suite) resumeContinues(t *testing.T) { s.resumeContinuesWith(t, s.opt.Spec, nil) }

// uefiResumes: a plugin that announces UEFI firmware boots the machine
// with it, and a suspended UEFI machine resumes where it was.
func (s *suite) uefiResumes(t *testing.T) {
	s.resumeContinuesWith(t, func(t *testing.T, dir string) vmm.Spec {
		spec := s.opt.Spec(t, dir)
		spec.Firmware, spec.MemoryMiB = vmm.FirmwareUEFI, max(spec.MemoryMiB, 256) // OVMF needs room
		return spec
	}, nil)
}

// mediaInTheDrive: a plugin with a CD-ROM drive starts a machine with an
// ISO in it and resumes it after the ISO was ejected.
func (s *suite) mediaInTheDrive(t *testing.T) {
	s.resumeContinuesWith(t, func(t *testing.T, dir string) vmm.Spec {
		spec := s.opt.Spec(t, dir)
		iso := make([]byte, 64<<10)
		copy(iso[16*2048:], "\x01CD001\x01")
		if err := os.WriteFile(filepath.Join(dir, "media.iso"), iso, 0o600); err != nil {
			t.Fatal(err)
		}
		spec.Media = "media.iso"
		return spec
	}, func(spec *vmm.Spec) { spec.Media = "" })
}

// resumeContinuesWith suspends a machine of specFn and resumes it (with
// its spec changed by change first, when set): the guest continues.
func (s *suite) resumeContinuesWith(t *testing.T, specFn func(*testing.T, string) vmm.Spec, change func(*vmm.Spec)) {
	m := s.fixture(t, specFn)
	start := s.start(t, &m, nil)
	before := s.progressAbove(t, m, 1)
	dir, sus := s.suspend(t, m)
	desc := sus.Description
	if desc == "" {
		desc = start.Description
	}
	sums := snapshot(t, dir)
	ctx, cancel := s.ctx()
	defer cancel()
	if change != nil {
		change(&m.Spec)
	}
	out, err := s.v.Resume(ctx, vmm.ResumeRequest{Spec: m.Spec, MachineDir: m.Dir, StateDir: dir, Description: desc})
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	m.Console = out.Console
	s.state(t, m, vmm.StateRunning)
	if after := s.firstProgress(t, m); after < before {
		t.Fatalf("after Resume the guest is at %d; it was at %d when suspended: it did not continue (a cold boot?)", after, before)
	}
	s.progressAbove(t, m, before)
	if !sameSums(sums, snapshot(t, dir)) {
		t.Fatal("Resume modified the state directory")
	}
}

func (s *suite) badState(t *testing.T) {
	m := s.fixture(t, s.opt.Spec)
	start := s.start(t, &m, nil)
	s.progressAbove(t, m, 0)
	dir, sus := s.suspend(t, m)
	desc := sus.Description
	if desc == "" {
		desc = start.Description
	}
	ctx, cancel := s.ctx()
	defer cancel()
	_, err := s.v.Resume(ctx, vmm.ResumeRequest{Spec: m.Spec, MachineDir: m.Dir, StateDir: s.tempDir(t), Description: desc})
	if !errors.Is(err, sdk.ErrNotFound) && !errors.Is(err, sdk.ErrCorrupt) {
		t.Fatalf("Resume from an empty dir = %v; want sdk.ErrNotFound or sdk.ErrCorrupt", err)
	}
	s.state(t, m, vmm.StateStopped)

	var biggest string
	var size int64
	for _, f := range sus.Files {
		if st, err := os.Stat(filepath.Join(dir, f)); err == nil && st.Size() >= size {
			biggest, size = f, st.Size()
		}
	}
	bad := s.tempDir(t)
	for _, f := range sus.Files {
		b, err := os.ReadFile(filepath.Join(dir, f))
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
	sums := snapshot(t, bad)
	if _, err := s.v.Resume(ctx, vmm.ResumeRequest{Spec: m.Spec, MachineDir: m.Dir, StateDir: bad, Description: desc}); err == nil {
		t.Fatalf("Resume from a state whose %s is cut in half succeeded", biggest)
	}
	s.state(t, m, vmm.StateStopped)
	if !sameSums(sums, snapshot(t, bad)) {
		t.Fatal("a failed Resume changed the state files")
	}
}

func (s *suite) guestPowerOff(t *testing.T) {
	m := s.fixture(t, s.opt.PowerOffSpec)
	ctx, cancel := s.ctx()
	defer cancel()
	var events <-chan vmm.Event
	if s.info.Has(vmm.CapEvents) {
		es, ok := s.v.(vmm.EventStreamer)
		if !ok {
			t.Fatal("Info announces events but the plugin is no vmm.EventStreamer")
		}
		ch, err := es.Events(ctx, vmm.EventsRequest{Name: m.Spec.Name})
		if err != nil {
			t.Fatalf("Events: %v", err)
		}
		events = ch
	}
	s.start(t, &m, nil)
	if events == nil {
		for {
			st, err := s.v.Status(ctx, vmm.StatusRequest{Name: m.Spec.Name})
			if err == nil && st.State == vmm.StateStopped {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatal("the guest powered off but Status never said stopped")
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the event stream ended before the guest powered off")
			}
			if ev.Type == vmm.EventPoweredOff {
				s.state(t, m, vmm.StateStopped)
				return
			}
		case <-ctx.Done():
			t.Fatalf("no %s event in %v", vmm.EventPoweredOff, s.opt.Timeout)
		}
	}
}

func (s *suite) capabilities(t *testing.T) {
	m := s.fixture(t, s.opt.Spec)
	ctx, cancel := s.ctx()
	defer cancel()
	if s.info.Has(vmm.CapEvents) {
		es, ok := s.v.(vmm.EventStreamer)
		if !ok {
			t.Fatal("Info announces events but the plugin is no vmm.EventStreamer")
		}
		if _, err := es.Events(ctx, vmm.EventsRequest{Name: m.Spec.Name}); err != nil {
			t.Fatalf("Info announces events but Events = %v", err)
		}
	}
	dh, ok := s.v.(vmm.DiskHistory)
	switch {
	case s.info.Has(vmm.CapDiskHistory) && !ok:
		t.Fatal("Info announces disk-history but the plugin is no vmm.DiskHistory")
	case !s.info.Has(vmm.CapDiskHistory) && ok:
		// Over gRPC every client has the method; the plugin must refuse.
		_, err := dh.KeepDisks(ctx, vmm.KeepDisksRequest{Spec: m.Spec, MachineDir: m.Dir, StateDir: s.tempDir(t)})
		if !errors.Is(err, sdk.ErrUnsupported) {
			t.Fatalf("no disk-history in Info, but KeepDisks = %v; want sdk.ErrUnsupported", err)
		}
	}
}

// diskHistory: a disk state kept apart boots, collecting keeps what the
// points need, and the suspended point still resumes afterwards.
func (s *suite) diskHistory(t *testing.T) {
	dh := s.v.(vmm.DiskHistory)
	m := s.fixture(t, s.opt.Spec)
	start := s.start(t, &m, nil)
	before := s.progressAbove(t, m, 1)
	dir, sus := s.suspend(t, m)
	desc := sus.Description
	if desc == "" {
		desc = start.Description
	}
	ctx, cancel := s.ctx()
	defer cancel()
	kept := s.tempDir(t)
	k, err := dh.KeepDisks(ctx, vmm.KeepDisksRequest{Spec: m.Spec, MachineDir: m.Dir, StateDir: kept})
	if err != nil {
		t.Fatalf("KeepDisks: %v", err)
	}
	for _, f := range k.Files {
		if _, err := os.Stat(filepath.Join(kept, f)); err != nil {
			t.Fatalf("KeepDisks listed %s: %v", f, err)
		}
	}
	s.start(t, &m, &vmm.PointState{StateDir: kept, Description: k.Description})
	s.progressAbove(t, m, 0)
	if _, err := s.v.PowerOff(ctx, vmm.PowerOffRequest{Name: m.Spec.Name, Force: true}); err != nil {
		t.Fatalf("PowerOff: %v", err)
	}
	if _, err := dh.CollectDisks(ctx, vmm.CollectDisksRequest{Spec: m.Spec, MachineDir: m.Dir,
		Keep: []vmm.PointState{{StateDir: dir, Description: desc}, {StateDir: kept, Description: k.Description}}}); err != nil {
		t.Fatalf("CollectDisks: %v", err)
	}
	out, err := s.v.Resume(ctx, vmm.ResumeRequest{Spec: m.Spec, MachineDir: m.Dir, StateDir: dir, Description: desc})
	if err != nil {
		t.Fatalf("Resume after CollectDisks: %v", err)
	}
	m.Console = out.Console
	if after := s.firstProgress(t, m); after < before {
		t.Fatalf("after CollectDisks and Resume the guest is at %d; it was at %d", after, before)
	}
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

func sameSums(a, b map[string]string) bool {
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
