package linux_test

import (
	"github.com/soulpad/soulpad/internal/kvmprobe"

	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/plugins/detect-linux/linux"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/detect"
	"github.com/soulpad/soulpad/sdk/detect/detecttest"
	"github.com/soulpad/soulpad/sdk/sdktest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

func TestConformanceInProcess(t *testing.T) {
	detecttest.Run(t, sdktest.InProcess(t, linux.New(sdktest.Logger(t, "detect-linux"))).(detect.Detect), detecttest.Options{})
}

func TestConformanceBinary(t *testing.T) {
	detecttest.Run(t, sdktest.Binary(t, testbin.Build(t, "plugins/detect-linux")).(detect.Detect), detecttest.Options{})
}

func probeRoot(t *testing.T, root string) detect.HostProfile {
	t.Helper()
	d := sdktest.InProcess(t, linux.New(sdktest.Logger(t, "detect-linux"))).(detect.Detect)
	cfg, _ := json.Marshal(map[string]any{"root": root})
	if _, err := d.Configure(context.Background(), sdk.ConfigureRequest{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	out, err := d.Probe(context.Background(), detect.ProbeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return out.Profile
}

// Recorded /proc and /sys trees of three hosts (testdata/).
func TestRecordedHosts(t *testing.T) {
	type want struct {
		vendor, host       string
		family, model      int
		cores              int
		kvm, display       bool
		memGiB             uint64
		flag, notFlag      string
		storage, removable []string
		netUp              []string
	}
	cases := map[string]want{
		"intel-kvm": {vendor: "GenuineIntel", host: "lab-xeon-07", family: 6, model: 143, cores: 4, kvm: true, display: true, memGiB: 62,
			flag: "amx_tile", notFlag: "svm", storage: []string{"nvme0n1", "sda"}, removable: []string{"sda"}, netUp: []string{"eno1"}},
		"amd-nokvm": {vendor: "AuthenticAMD", host: "build-epyc", family: 23, model: 49, cores: 16, kvm: false, display: false, memGiB: 31,
			flag: "svm", notFlag: "avx512f", storage: []string{"sda"}, netUp: []string{"enp65s0f0"}},
		"tiny": {vendor: "GenuineIntel", host: "kiosk", family: 6, model: 76, cores: 2, kvm: false, display: false, memGiB: 1,
			flag: "sse4_2", notFlag: "avx", storage: []string{"mmcblk0", "sdb"}, removable: []string{"sdb"}},
	}
	prints := map[string]string{}
	for name, w := range cases {
		t.Run(name, func(t *testing.T) {
			p := probeRoot(t, "testdata/"+name)
			if p.CPU.Vendor != w.vendor || p.CPU.Family != w.family || p.CPU.Model != w.model || p.CPU.Cores != w.cores || p.Hostname != w.host {
				t.Errorf("CPU %+v host %q; want %s family %d model %d, %d cores, host %q", p.CPU, p.Hostname, w.vendor, w.family, w.model, w.cores, w.host)
			}
			if !p.HasFlag(w.flag) || p.HasFlag(w.notFlag) {
				t.Errorf("flags: has %s = %v (want true), has %s = %v (want false)", w.flag, p.HasFlag(w.flag), w.notFlag, p.HasFlag(w.notFlag))
			}
			if p.KVM != w.kvm || p.Display != w.display {
				t.Errorf("KVM %v display %v; want %v, %v", p.KVM, p.Display, w.kvm, w.display)
			}
			if p.MemTotalBytes>>30 != w.memGiB || p.MemAvailableBytes > p.MemTotalBytes || p.MemAvailableBytes == 0 {
				t.Errorf("memory %d total, %d available; want %d GiB total", p.MemTotalBytes, p.MemAvailableBytes, w.memGiB)
			}
			var names, rem, up []string
			for _, s := range p.Storage {
				names = append(names, s.Name)
				if s.Removable {
					rem = append(rem, s.Name)
				}
				if s.SizeBytes == 0 {
					t.Errorf("storage %s has no size", s.Name)
				}
			}
			for _, n := range p.Net {
				if n.Up {
					up = append(up, n.Name)
				}
				if n.MAC == "" {
					t.Errorf("interface %s has no MAC", n.Name)
				}
			}
			if !slices.Equal(names, w.storage) || !slices.Equal(rem, w.removable) || !slices.Equal(up, w.netUp) {
				t.Errorf("storage %v (removable %v), up %v; want %v (%v), %v", names, rem, up, w.storage, w.removable, w.netUp)
			}
			if again := probeRoot(t, "testdata/"+name); again.Fingerprint != p.Fingerprint || len(p.Fingerprint) != 16 {
				t.Errorf("fingerprint %q then %q; want the same 16 hex digits", p.Fingerprint, again.Fingerprint)
			}
			prints[name] = p.Fingerprint
		})
	}
	if prints["intel-kvm"] == prints["amd-nokvm"] || prints["amd-nokvm"] == prints["tiny"] {
		t.Errorf("different hosts share a fingerprint: %v", prints)
	}
}

func TestThisHost(t *testing.T) {
	d := sdktest.InProcess(t, linux.New(sdktest.Logger(t, "detect-linux"))).(detect.Detect)
	if _, err := d.Configure(context.Background(), sdk.ConfigureRequest{Config: []byte(`{"probe_mib": 32}`)}); err != nil {
		t.Fatal(err)
	}
	// The pad's disk is what matters to a session; a file stands in for
	// it (block devices may be closed to this process).
	f, err := os.CreateTemp("", "soulpad-probe-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	f.Write(make([]byte, 64<<20))
	f.Close()
	out, err := d.Probe(context.Background(), detect.ProbeRequest{StorageProbe: true, StoragePaths: []string{f.Name()}})
	if err != nil {
		t.Fatal(err)
	}
	p := out.Profile
	// KVM is reported when it runs guests, not merely when /dev/kvm opens.
	if ok, why := kvmprobe.Usable("/dev/kvm"); p.KVM != ok {
		t.Errorf("KVM = %v but the KVM probe says %v (%s)", p.KVM, ok, why)
	}
	if _, err := os.Stat("/dev/kvm"); err != nil && p.KVM {
		t.Error("KVM reported without /dev/kvm")
	}
	if len(p.CPU.Flags) < 10 || !p.HasFlag("sse2") {
		t.Errorf("flags %v: an x86-64 host has sse2 and many more", p.CPU.Flags)
	}
	probed := 0
	for _, s := range p.Storage {
		if s.ReadMBps > 0 {
			probed++
			t.Logf("%s %s %d bytes: %.0f MB/s sequential read", s.Name, s.Model, s.SizeBytes, s.ReadMBps)
		}
	}
	if last := p.Storage[len(p.Storage)-1]; last.Name != f.Name() || last.ReadMBps <= 0 {
		t.Errorf("storage probe of %s: %+v", f.Name(), last)
	}
	if probed == 0 {
		t.Errorf("storage probe measured nothing: %+v", p.Storage)
	}
	_, err = d.Probe(context.Background(), detect.ProbeRequest{StorageProbe: true, StoragePaths: []string{"/nonexistent/disk"}})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/disk") {
		t.Errorf("probe of a missing path: %v; want an error naming it", err)
	}
}

func TestConfigureRefusesBadRoot(t *testing.T) {
	d := sdktest.InProcess(t, linux.New(sdktest.Logger(t, "detect-linux"))).(detect.Detect)
	for _, c := range []string{`{"root": "/nonexistent"}`, `{"probe_mib": 0}`, `{"rooot": "/"}`} {
		if _, err := d.Configure(context.Background(), sdk.ConfigureRequest{Config: []byte(c)}); !errors.Is(err, sdk.ErrInvalidConfig) {
			t.Errorf("Configure(%s) = %v; want sdk.ErrInvalidConfig", c, err)
		}
	}
}

// BenchmarkProbe times a whole probe (without the storage test) beside
// reading /proc/cpuinfo alone, the least any probe must do.
func BenchmarkProbe(b *testing.B) {
	p := linux.New(sdktest.Logger(b, "detect-linux"))
	ctx := context.Background()
	b.Run("probe", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := p.Probe(ctx, detect.ProbeRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("read-cpuinfo-baseline", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := os.ReadFile("/proc/cpuinfo"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
