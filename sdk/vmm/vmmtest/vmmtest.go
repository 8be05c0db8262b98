// Package vmmtest is the conformance suite for VMM plugins. A plugin author
// runs it against the plugin in-process and as a built binary:
//
//	func TestConformance(t *testing.T) {
//		v := sdktest.InProcess(t, myvmm.New()).(vmm.VMM)
//		vmmtest.Run(t, v, vmmtest.Options{Spec: mySpec, Progress: myCounter})
//	}
//
// Each check builds its own machine directory and machine, runs alone,
// and leaves nothing running. The suite proves what a user relies on: the
// guest goes on after a resume (a plugin that cold-boots instead fails),
// a bad state is refused without being changed, a guest that powers off
// is reported, and the capabilities announced in Info are the ones that
// work.
package vmmtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// Machine is a running machine as a check sees it.
type Machine struct {
	Spec vmm.Spec
	// Dir is its machine directory.
	Dir string
	// Console is what Start or Resume returned.
	Console vmm.Console
}

// Options tune the suite to a plugin.
type Options struct {
	// Config is the plugin's config block as JSON.
	Config []byte
	// Spec returns the machine to run; machineDir is a fresh directory the
	// spec's relative paths are relative to (copy a kernel there, etc.).
	Spec func(t *testing.T, machineDir string) vmm.Spec
	// Progress reads how far the guest has got: a number that grows while
	// it runs (a counter the guest prints on its console, say), and false
	// while there is nothing to read yet. Required: it is how the suite
	// tells a resumed guest from a rebooted one.
	Progress func(ctx context.Context, v vmm.VMM, m Machine) (uint64, bool)
	// PowerOffSpec, when set, returns a machine whose guest powers itself
	// off within a minute; the suite then checks that the plugin reports it
	// (EventPoweredOff, Status stopped).
	PowerOffSpec func(t *testing.T, machineDir string) vmm.Spec
	// Timeout bounds each call and each wait (default 2 minutes).
	Timeout time.Duration
	// TempDir, when set, makes the fresh directories the suite uses for
	// machines and suspend points (default t.TempDir): a plugin that
	// behaves differently on another file system runs the suite there.
	TempDir func(t *testing.T) string
}

func (s *suite) tempDir(t *testing.T) string {
	if s.opt.TempDir != nil {
		return s.opt.TempDir(t)
	}
	return t.TempDir()
}

type suite struct {
	v    vmm.VMM
	opt  Options
	info sdk.InfoResponse
}

// Run runs the whole suite against v.
func Run(t *testing.T, v vmm.VMM, opt Options) {
	if opt.Timeout == 0 {
		opt.Timeout = 2 * time.Minute
	}
	if opt.Spec == nil || opt.Progress == nil {
		t.Fatal("vmmtest: Options.Spec and Options.Progress are required")
	}
	s := &suite{v: v, opt: opt}
	ctx, cancel := s.ctx()
	defer cancel()
	info, err := v.Info(ctx, sdk.InfoRequest{})
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Kind != sdk.KindVMM || info.Name == "" || !slices.Contains(info.APIVersions, vmm.APIVersion) {
		t.Fatalf("Info = %+v; want kind vmm, a name, API version %d", info, vmm.APIVersion)
	}
	s.info = info
	t.Run("NothingRunning", s.nothingRunning)
	t.Run("StartBusyPowerOff", s.startBusyPowerOff)
	t.Run("ResumeContinuesTheGuest", s.resumeContinues)
	t.Run("BadStateIsRefusedUnchanged", s.badState)
	if opt.PowerOffSpec != nil {
		t.Run("GuestPowerOffIsReported", s.guestPowerOff)
	}
	t.Run("CapabilitiesMatch", s.capabilities)
	if slices.Contains(vmm.Announced(info.Capabilities, vmm.CapFirmwarePrefix), vmm.FirmwareUEFI) {
		t.Run("UEFIMachineResumes", s.uefiResumes)
	}
	if info.Has(vmm.CapMedia) {
		t.Run("MediaInTheDrive", s.mediaInTheDrive)
	}
	if info.Has(vmm.CapDiskHistory) {
		t.Run("DiskHistory", s.diskHistory)
	}
}

func (s *suite) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.opt.Timeout)
}

// fixture configures the plugin and makes a fresh machine (not started);
// whatever the check does, nothing is left running.
func (s *suite) fixture(t *testing.T, specFn func(*testing.T, string) vmm.Spec) Machine {
	t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	if _, err := s.v.Configure(ctx, sdk.ConfigureRequest{Config: s.opt.Config}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	dir := s.tempDir(t)
	m := Machine{Spec: specFn(t, dir), Dir: dir}
	t.Cleanup(func() {
		ctx, cancel := s.ctx()
		defer cancel()
		_, _ = s.v.PowerOff(ctx, vmm.PowerOffRequest{Name: m.Spec.Name, Force: true})
		if t.Failed() {
			t.Logf("machine directory %s:", dir)
			_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					if fi, err := d.Info(); err == nil {
						t.Logf("  %s  %d bytes", p, fi.Size())
					}
				}
				return nil
			})
		}
	})
	return m
}

func (s *suite) state(t *testing.T, m Machine, want string) {
	t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	st, err := s.v.Status(ctx, vmm.StatusRequest{Name: m.Spec.Name})
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.State != want {
		t.Fatalf("Status = %q (%s); want %q", st.State, st.Detail, want)
	}
}

func (s *suite) start(t *testing.T, m *Machine, from *vmm.PointState) vmm.StartResponse {
	t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	out, err := s.v.Start(ctx, vmm.StartRequest{Spec: m.Spec, MachineDir: m.Dir, From: from})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	m.Console = out.Console
	s.state(t, *m, vmm.StateRunning)
	return out
}

// progressAbove waits until the guest's progress exceeds min and returns it.
func (s *suite) progressAbove(t *testing.T, m Machine, min uint64) uint64 {
	t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	for {
		if n, ok := s.opt.Progress(ctx, s.v, m); ok && n > min {
			return n
		}
		select {
		case <-ctx.Done():
			n, ok := s.opt.Progress(context.Background(), s.v, m)
			t.Fatalf("the guest made no progress past %d in %v (last reading %d, %v)", min, s.opt.Timeout, n, ok)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// firstProgress waits for the first reading after a start or resume.
func (s *suite) firstProgress(t *testing.T, m Machine) uint64 {
	t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	for {
		if n, ok := s.opt.Progress(ctx, s.v, m); ok {
			return n
		}
		select {
		case <-ctx.Done():
			t.Fatalf("nothing to read of the guest's progress in %v", s.opt.Timeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// suspend suspends m into a fresh directory and returns the response.
func (s *suite) suspend(t *testing.T, m Machine) (string, vmm.SuspendResponse) {
	t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	dir := s.tempDir(t)
	out, err := s.v.Suspend(ctx, vmm.SuspendRequest{Name: m.Spec.Name, StateDir: dir})
	if err != nil {
		t.Fatalf("Suspend: %v", err)
	}
	s.state(t, m, vmm.StateStopped)
	if len(out.Files) == 0 {
		t.Fatal("Suspend listed no files")
	}
	for _, f := range out.Files {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("Suspend listed %s: %v", f, err)
		}
	}
	for _, sum := range out.Sums {
		if sum.SHA256 == "" && sum.Mapped {
			continue // the core sums it
		}
		if got := fileSum(t, filepath.Join(dir, sum.Name), sum); got.SHA256 != sum.SHA256 || got.Size != sum.Size || !slices.Equal(got.ChunkSHA256, sum.ChunkSHA256) {
			t.Fatalf("Suspend's checksum of %s is not the file's: said %d bytes, %s; the file has %d bytes, %s", sum.Name, sum.Size, sum.SHA256, got.Size, got.SHA256)
		}
	}
	return dir, out
}

// fileSum reads a file as want says it was summed (whole or by chunks).
func fileSum(t *testing.T, path string, want vmm.FileSum) vmm.FileSum {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	whole := sha256.Sum256(data)
	got := vmm.FileSum{Size: uint64(len(data)), SHA256: hex.EncodeToString(whole[:])}
	if want.ChunkBytes > 0 {
		var chunks [][sha256.Size]byte
		for off := uint64(0); off < uint64(len(data)); off += want.ChunkBytes {
			chunks = append(chunks, sha256.Sum256(data[off:min(off+want.ChunkBytes, uint64(len(data)))]))
		}
		c := vmm.SumOfChunkSums(want.Name, got.Size, want.ChunkBytes, chunks)
		got.ChunkSHA256 = c.ChunkSHA256
		if want.SumOfChunks {
			got.SHA256 = c.SHA256
		}
	}
	return got
}
