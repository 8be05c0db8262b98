// Package linux implements detect-linux: the host profile read from /proc
// and /sys (under a root directory, so recorded trees of other hosts can
// be probed in tests), with an optional bounded sequential-read test of
// the storage devices.
package linux

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/soulpad/soulpad/internal/kvmprobe"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/detect"
)

// Version is the plugin's version.
const Version = "0.1.0"

// Config is the plugin's block in site.hcl.
type Config struct {
	// Root is where /proc, /sys and /dev are looked for. Default "/".
	Root string `json:"root"`
	// ProbeMiB bounds the storage read test per device (default 256),
	// ProbeSeconds its time (default 1).
	ProbeMiB     int     `json:"probe_mib"`
	ProbeSeconds float64 `json:"probe_seconds"`
}

// Plugin is detect-linux.
type Plugin struct {
	cfg Config
	log hclog.Logger
}

// New returns the plugin probing this host, logging to log (nil: nowhere).
func New(log hclog.Logger) *Plugin {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Plugin{cfg: defaults(), log: log}
}

func defaults() Config { return Config{Root: "/", ProbeMiB: 256, ProbeSeconds: 1} }

var _ detect.Detect = (*Plugin)(nil)

// Info implements sdk.Plugin.
func (p *Plugin) Info(context.Context, sdk.InfoRequest) (sdk.InfoResponse, error) {
	return sdk.InfoResponse{Name: "detect-linux", Kind: sdk.KindDetect, Version: Version, APIVersions: []int{detect.APIVersion},
		Description: "host profile from /proc and /sys: CPU, KVM, memory, storage, network, display"}, nil
}

// Configure implements sdk.Plugin.
func (p *Plugin) Configure(_ context.Context, req sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	c := defaults()
	if err := req.Decode(&c); err != nil {
		return sdk.ConfigureResponse{}, fmt.Errorf("detect-linux: %w", err)
	}
	if c.ProbeMiB < 1 || c.ProbeMiB > 65536 || c.ProbeSeconds <= 0 || c.ProbeSeconds > 60 {
		return sdk.ConfigureResponse{}, fmt.Errorf("detect-linux: probe_mib must be 1..65536 and probe_seconds in (0, 60]: %w", sdk.ErrInvalidConfig)
	}
	if st, err := os.Stat(filepath.Join(c.Root, "proc")); err != nil || !st.IsDir() {
		return sdk.ConfigureResponse{}, fmt.Errorf("detect-linux: root %q has no proc directory: %w", c.Root, sdk.ErrInvalidConfig)
	}
	p.cfg = c
	return sdk.ConfigureResponse{}, nil
}

// Probe implements detect.Detect.
func (p *Plugin) Probe(ctx context.Context, req detect.ProbeRequest) (detect.ProbeResponse, error) {
	prof, err := probe(p.cfg.Root, p.log)
	if err != nil {
		return detect.ProbeResponse{}, err
	}
	if req.StorageProbe {
		limit, d := int64(p.cfg.ProbeMiB)<<20, time.Duration(p.cfg.ProbeSeconds*float64(time.Second))
		if len(req.StoragePaths) == 0 {
			// Every listed device; one this process may not read is left
			// without a figure.
			for i := range prof.Storage {
				s := &prof.Storage[i]
				s.ReadMBps, _ = readProbe(ctx, filepath.Join(p.cfg.Root, "dev", s.Name), limit, d)
			}
		}
		for _, path := range req.StoragePaths {
			mbps, err := readProbe(ctx, path, limit, d)
			if err != nil {
				return detect.ProbeResponse{}, fmt.Errorf("detect-linux: storage probe: %w", err)
			}
			i := slices.IndexFunc(prof.Storage, func(s detect.Storage) bool { return "/dev/"+s.Name == path })
			if i < 0 {
				prof.Storage = append(prof.Storage, detect.Storage{Name: path})
				i = len(prof.Storage) - 1
			}
			prof.Storage[i].ReadMBps = mbps
		}
	}
	return detect.ProbeResponse{Profile: prof}, nil
}

func readString(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// probe reads the profile of the host whose trees are under root.
func probe(root string, log hclog.Logger) (detect.HostProfile, error) {
	var p detect.HostProfile
	p.Arch = runtime.GOARCH
	p.Hostname = readString(filepath.Join(root, "proc/sys/kernel/hostname"))
	cpu, err := parseCPUInfo(filepath.Join(root, "proc/cpuinfo"))
	if err != nil {
		return p, fmt.Errorf("detect-linux: %w", err)
	}
	p.CPU = cpu
	if p.MemTotalBytes, p.MemAvailableBytes, err = parseMemInfo(filepath.Join(root, "proc/meminfo")); err != nil {
		return p, fmt.Errorf("detect-linux: %w", err)
	}
	if root == "/" || root == "" {
		// A /dev/kvm that opens may still not run guests (nested or
		// restricted KVM): ask it to.
		var why string
		if p.KVM, why = kvmprobe.Usable("/dev/kvm"); !p.KVM && why != "" {
			log.Info("KVM is not usable; machines run under TCG", "reason", why)
		}
	} else if f, err := os.OpenFile(filepath.Join(root, "dev/kvm"), os.O_RDWR, 0); err == nil {
		// A recorded host tree: the device node stands for working KVM.
		f.Close()
		p.KVM = true
	}
	p.Storage = storage(root)
	p.Net = netIfs(root)
	p.Display = display(root)
	p.Fingerprint = fingerprint(p, readString(filepath.Join(root, "etc/machine-id")))
	return p, nil
}

func parseCPUInfo(path string) (detect.CPU, error) {
	f, err := os.Open(path)
	if err != nil {
		return detect.CPU{}, err
	}
	defer f.Close()
	var c detect.CPU
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k == "processor" {
			c.Cores++
			continue
		}
		if c.Cores > 1 {
			continue // the first processor describes them all
		}
		switch k {
		case "vendor_id":
			c.Vendor = v
		case "cpu family":
			c.Family, _ = strconv.Atoi(v)
		case "model":
			c.Model, _ = strconv.Atoi(v)
		case "model name":
			c.ModelName = v
		case "flags":
			c.Flags = strings.Fields(v)
		}
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	if c.Cores == 0 || c.Vendor == "" {
		return c, fmt.Errorf("%s: no processor described", path)
	}
	slices.Sort(c.Flags)
	return c, nil
}

func parseMemInfo(path string) (total, avail uint64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "MemTotal:":
			total = n << 10
		case "MemAvailable:":
			avail = n << 10
		}
	}
	if total == 0 {
		return 0, 0, fmt.Errorf("%s: no MemTotal", path)
	}
	return total, avail, nil
}

// storage lists whole block devices, not loop, RAM or device-mapper ones.
func storage(root string) []detect.Storage {
	ents, _ := os.ReadDir(filepath.Join(root, "sys/block"))
	var out []detect.Storage
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") || strings.HasPrefix(n, "dm-") {
			continue
		}
		d := filepath.Join(root, "sys/block", n)
		sectors, _ := strconv.ParseUint(readString(filepath.Join(d, "size")), 10, 64)
		out = append(out, detect.Storage{Name: n, Model: readString(filepath.Join(d, "device/model")), SizeBytes: sectors * 512,
			Removable: readString(filepath.Join(d, "removable")) == "1"})
	}
	return out
}

func netIfs(root string) []detect.NetIf {
	ents, _ := os.ReadDir(filepath.Join(root, "sys/class/net"))
	var out []detect.NetIf
	for _, e := range ents {
		n := e.Name()
		if n == "lo" {
			continue
		}
		d := filepath.Join(root, "sys/class/net", n)
		ni := detect.NetIf{Name: n, Up: readString(filepath.Join(d, "operstate")) == "up", MAC: readString(filepath.Join(d, "address"))}
		if root == "/" {
			if ifc, err := net.InterfaceByName(n); err == nil {
				addrs, _ := ifc.Addrs()
				for _, a := range addrs {
					ni.Addrs = append(ni.Addrs, a.String())
				}
			}
		}
		out = append(out, ni)
	}
	return out
}

// display: a session's display server, or a connected monitor.
func display(root string) bool {
	if root == "/" && (os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != "") {
		return true
	}
	st, _ := filepath.Glob(filepath.Join(root, "sys/class/drm/card*-*/status"))
	for _, f := range st {
		if readString(f) == "connected" {
			return true
		}
	}
	return false
}

// fingerprint is stable for a host: CPU identity and flags, memory size
// (to the GiB, so it does not follow free memory) and the machine id.
func fingerprint(p detect.HostProfile, machineID string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%d|%d|%s|%s|%d|%d|%s", p.CPU.Vendor, p.CPU.Family, p.CPU.Model, p.CPU.ModelName,
		strings.Join(p.CPU.Flags, " "), p.CPU.Cores, (p.MemTotalBytes+1<<29)>>30, machineID)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// readProbe reads up to limit bytes sequentially from dev, for at most d,
// bypassing the page cache, and returns MB/s.
func readProbe(ctx context.Context, dev string, limit int64, d time.Duration) (float64, error) {
	f, err := os.OpenFile(dev, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	raw := make([]byte, 1<<20+4096)
	off := int(4096 - uintptr(unsafePointer(raw))%4096)
	buf := raw[off%4096 : off%4096+1<<20]
	start := time.Now()
	var n int64
	for n < limit && time.Since(start) < d && ctx.Err() == nil {
		m, err := f.Read(buf)
		n += int64(m)
		if err == io.EOF || m == 0 {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	el := time.Since(start).Seconds()
	if n == 0 || el == 0 {
		return 0, fmt.Errorf("%s: nothing read", dev)
	}
	return float64(n) / el / 1e6, nil
}
