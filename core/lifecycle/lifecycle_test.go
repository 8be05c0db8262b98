package lifecycle_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/lifecycle"
	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/core/pluginhost"
	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/internal/testplugins/counter"
	"github.com/soulpad/soulpad/sdk"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// pluginDir builds the plugins the tests use and returns their directory.
func pluginDir(t *testing.T) string {
	t.Helper()
	testbin.Build(t, "plugins/crypt-plain")
	testbin.Build(t, "internal/testplugins/vmm-counter")
	testbin.Build(t, "internal/testplugins/detect-static")
	return testbin.Dir()
}

// siteConfig writes a config for a pad at padDir; extra is appended HCL.
func siteConfig(t *testing.T, padDir, extra string) *config.Config {
	t.Helper()
	hcl := fmt.Sprintf(`
pad { path = %q }
machine {
  name = "soul"
  memory_mib = 64
  disk_size_mib = 0
}
plugins {
  dirs   = [%q]
  crypt  = "crypt-plain"
  vmm    = "vmm-counter"
  detect = "detect-static"
}
session {
  stage_timeout_seconds = 60
  suspend_timeout_seconds = 60
}
plugin "crypt-plain" { allow_no_encryption = true }
%s
`, padDir, pluginDir(t), extra)
	cfg, err := config.LoadBytes("test.hcl", t.TempDir(), []byte(hcl), nil)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

func initPad(t *testing.T, cfg *config.Config) *pad.Pad {
	t.Helper()
	p, err := lifecycle.Init(context.Background(), lifecycle.InitOptions{Config: cfg, PluginDirs: []string{pluginDir(t)}})
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	return p
}

// session runs one session; it asks for a suspend every 50 ms once the
// machine runs, until the session ends.
func session(t *testing.T, cfg *config.Config, mod func(*lifecycle.Options)) (lifecycle.Result, error) {
	t.Helper()
	req := make(chan struct{}, 1)
	running := make(chan struct{})
	opts := lifecycle.Options{Config: cfg, SuspendRequests: req, PluginDirs: []string{pluginDir(t)},
		OnRunning: func(*lifecycle.Session) { close(running) }}
	if mod != nil {
		mod(&opts)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-running:
		case <-done:
			return
		}
		time.Sleep(100 * time.Millisecond)
		for {
			select {
			case req <- struct{}{}:
			case <-done:
				return
			default:
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return lifecycle.New(opts).Run(ctx)
}

// memory reads the counter stored in a suspend point.
func memory(t *testing.T, padDir, point string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(padDir, "vault", "machines", "soul", "points", point, "memory.json"))
	if err != nil {
		t.Fatalf("read point %s: %v", point, err)
	}
	var m counter.Memory
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m.Counter
}

// treeHash hashes every path and file under dir except the journal.
func treeHash(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "journal" {
			return filepath.SkipDir
		}
		io.WriteString(h, rel+"\n")
		if d.Type().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(h, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func stages(r lifecycle.Result) string {
	var s []string
	for _, t := range r.Timings {
		x := t.Stage
		if t.Err != nil {
			x += "!"
		}
		s = append(s, x)
	}
	return strings.Join(s, " ")
}

// cleanups lists the cleanup journal entries of the pad's last session.
func cleanups(t *testing.T, padDir string) []string {
	t.Helper()
	es, err := pad.LastSession(filepath.Join(padDir, "journal"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if strings.HasPrefix(e.Message, "cleanup: ") {
			out = append(out, strings.TrimPrefix(e.Message, "cleanup: "))
		}
	}
	return out
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
}

func TestWalkUpAcrossPads(t *testing.T) {
	padA := filepath.Join(t.TempDir(), "pad")
	cfgA := siteConfig(t, padA, "")
	initPad(t, cfgA)

	r1, err := session(t, cfgA, nil)
	if err != nil {
		t.Fatalf("first session: %v", err)
	}
	if r1.Outcome != lifecycle.OutcomeSuspended || r1.ResumedFrom != "" || r1.ColdBootReason == "" {
		t.Fatalf("first session = %+v; want a cold boot that ends suspended", r1)
	}
	if got := stages(r1); got != "boot detect unlock resume run suspend shutdown" {
		t.Fatalf("stages = %q", got)
	}
	n1 := memory(t, padA, r1.Point)
	if n1 == 0 {
		t.Fatal("the counter did not run before the suspend")
	}

	// Unplug, walk, plug in elsewhere: the pad moves to a new path.
	padB := filepath.Join(t.TempDir(), "elsewhere")
	copyTree(t, padA, padB)
	cfgB := siteConfig(t, padB, "")
	r2, err := session(t, cfgB, nil)
	if err != nil {
		t.Fatalf("second session: %v", err)
	}
	if r2.ResumedFrom != r1.Point {
		t.Fatalf("second session resumed %q; want %q (cold boot reason: %s)", r2.ResumedFrom, r1.Point, r2.ColdBootReason)
	}
	n2 := memory(t, padB, r2.Point)
	if n2 <= n1 {
		t.Fatalf("counter after resume = %d; want above %d (it must continue, not restart)", n2, n1)
	}

	// A second cycle on the moved pad.
	r3, err := session(t, cfgB, nil)
	if err != nil || r3.ResumedFrom != r2.Point {
		t.Fatalf("third session = %+v, %v; want a resume of %s", r3, err, r2.Point)
	}
	if n3 := memory(t, padB, r3.Point); n3 <= n2 {
		t.Fatalf("counter after the second resume = %d; want above %d", n3, n2)
	}

	// Every stage is journaled with a duration.
	es, err := pad.LastSession(filepath.Join(padB, "journal"))
	if err != nil {
		t.Fatal(err)
	}
	ended := map[string]bool{}
	for _, e := range es {
		if e.Event == "end" && e.DurationMS > 0 {
			ended[e.Stage] = true
		}
	}
	for _, s := range []string{"boot", "detect", "unlock", "resume", "run", "suspend", "shutdown"} {
		if !ended[s] {
			t.Errorf("journal has no timed end for stage %s", s)
		}
	}
	if got, want := strings.Join(cleanups(t, padB), ", "), "power off machine, lock vault, stop plugins, release the pad"; got != want {
		t.Errorf("cleanups ran as %q; want %q", got, want)
	}
}

// suspended makes a pad with one sealed suspend point.
func suspended(t *testing.T) (string, lifecycle.Result) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pad")
	cfg := siteConfig(t, dir, "")
	initPad(t, cfg)
	r, err := session(t, cfg, nil)
	if err != nil {
		t.Fatalf("setup session: %v", err)
	}
	return dir, r
}

func TestFailureInEachStageRunsCleanupsInReverseAndKeepsThePad(t *testing.T) {
	cases := []struct {
		name     string
		extra    string
		stage    string
		prepare  func(t *testing.T, padDir string)
		crash    bool
		wantErr  error
		cleanups string
	}{
		{name: "boot", extra: `plugins { vmm = "vmm-nowhere" }`, stage: "boot", wantErr: pluginhost.ErrNotFound, cleanups: "stop plugins, release the pad"},
		{name: "detect", extra: `plugin "detect-static" { fail = true }`, stage: "detect", cleanups: "stop plugins, release the pad"},
		{name: "unlock", stage: "unlock", wantErr: sdk.ErrNotFound, cleanups: "lock vault, stop plugins, release the pad",
			prepare: func(t *testing.T, padDir string) {
				if err := os.Remove(filepath.Join(padDir, "vault/machines/soul/machine.json")); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "resume", extra: `plugin "vmm-counter" { fail_resume = true }`, stage: "resume", cleanups: "lock vault, stop plugins, release the pad"},
		{name: "run", extra: `plugin "vmm-counter" { crash_after_ms = 150 }`, stage: "run", crash: true, wantErr: sdk.ErrPluginExited, cleanups: "power off machine, lock vault, stop plugins, release the pad"},
		{name: "suspend", extra: `plugin "vmm-counter" { fail_suspend_times = -1 }`, stage: "suspend", cleanups: "power off machine, lock vault, stop plugins, release the pad"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, first := suspended(t)
			if tc.prepare != nil {
				tc.prepare(t, dir)
			}
			cfg := siteConfig(t, dir, tc.extra)
			before := treeHash(t, dir)
			r, err := session(t, cfg, func(o *lifecycle.Options) {
				if tc.crash {
					o.SuspendRequests = nil
				}
			})
			if err == nil {
				t.Fatalf("session succeeded: %+v", r)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("error = %v; want %v", err, tc.wantErr)
			}
			failed := ""
			for _, tm := range r.Timings {
				if tm.Err != nil && tm.Stage != "shutdown" {
					failed = tm.Stage
				}
			}
			if failed != tc.stage {
				t.Fatalf("failed stage = %q; want %q (stages %s, error %v)", failed, tc.stage, stages(r), err)
			}
			if last := r.Timings[len(r.Timings)-1]; last.Stage != "shutdown" {
				t.Fatalf("last stage = %s; want shutdown", last.Stage)
			}
			if got := strings.Join(cleanups(t, dir), ", "); got != tc.cleanups {
				t.Fatalf("cleanups ran as %q; want %q", got, tc.cleanups)
			}
			// The sealed point is intact and still the latest.
			m := pad.MachineIn(filepath.Join(dir, "vault"), "soul")
			latest, ok, err := m.Latest()
			if err != nil || !ok || latest.Manifest.ID != first.Point {
				t.Fatalf("latest point = %v %v %v; want %s", latest.Manifest.ID, ok, err, first.Point)
			}
			if err := latest.Verify(); err != nil {
				t.Fatalf("the sealed point no longer verifies: %v", err)
			}
			if tc.stage != "run" && tc.stage != "suspend" {
				// Nothing ran: the pad is byte for byte as it was.
				if after := treeHash(t, dir); after != before {
					t.Fatal("a failed session changed the pad")
				}
			} else {
				// The machine ran, so the disk moved on: the next run must
				// not resume the old point against it.
				s, _ := m.Session()
				if s.State != pad.SessionRunning {
					t.Fatalf("session.json = %+v; want running", s)
				}
				ents, _ := os.ReadDir(m.PointsDir())
				for _, e := range ents {
					if strings.HasPrefix(e.Name(), ".") {
						t.Fatalf("an unsealed point %s was left behind", e.Name())
					}
				}
			}
		})
	}
}

func TestPluginThatDiesIsOneClearError(t *testing.T) {
	dir, _ := suspended(t)
	cfg := siteConfig(t, dir, `plugin "vmm-counter" { crash_after_ms = 150 }`)
	_, err := session(t, cfg, func(o *lifecycle.Options) { o.SuspendRequests = nil })
	if err == nil {
		t.Fatal("session survived its VMM plugin dying")
	}
	t.Logf("error: %v", err)
	if !errors.Is(err, sdk.ErrPluginExited) || strings.Count(err.Error(), "\n") > 0 ||
		!strings.Contains(err.Error(), "vmm-counter") || !strings.Contains(err.Error(), "stopped unexpectedly") {
		t.Fatalf("error %q does not name the plugin and what happened", err)
	}
}

func TestSuspendFailureRetriesAndLosesNothing(t *testing.T) {
	dir, first := suspended(t)
	cfg := siteConfig(t, dir, `plugin "vmm-counter" { fail_suspend_times = 1 }`)
	r, err := session(t, cfg, nil)
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	if r.Outcome != lifecycle.OutcomeSuspended || r.ResumedFrom != first.Point {
		t.Fatalf("result %+v; want a resume of %s ending suspended", r, first.Point)
	}
	if got := stages(r); got != "boot detect unlock resume run suspend! run suspend shutdown" {
		t.Fatalf("stages = %q; want a failed suspend, back to run, then a good one", got)
	}
	if memory(t, dir, r.Point) <= memory(t, dir, first.Point) {
		t.Fatal("the counter did not continue across the retried suspend")
	}
}

func TestCrashedSessionColdBootsTheLatestDisk(t *testing.T) {
	dir, first := suspended(t)
	if _, err := session(t, siteConfig(t, dir, `plugin "vmm-counter" { crash_after_ms = 150 }`), func(o *lifecycle.Options) { o.SuspendRequests = nil }); err == nil {
		t.Fatal("the crash session did not fail")
	}
	r, err := session(t, siteConfig(t, dir, ""), nil)
	if err != nil {
		t.Fatalf("session after the crash: %v", err)
	}
	if r.ResumedFrom != "" || !strings.Contains(r.ColdBootReason, "ended without suspending") {
		t.Fatalf("after a crash: resumed %q, reason %q; want a cold boot that says why", r.ResumedFrom, r.ColdBootReason)
	}
	pts, _ := pad.MachineIn(filepath.Join(dir, "vault"), "soul").Points()
	if len(pts) != 2 || pts[0].Manifest.ID != first.Point {
		t.Fatalf("points = %d; want the old one kept and a new one", len(pts))
	}
}

func TestCorruptPointIsRefusedAndKept(t *testing.T) {
	dir, first := suspended(t)
	state := filepath.Join(dir, "vault/machines/soul/points", first.Point, "memory.json")
	b, _ := os.ReadFile(state)
	if err := os.WriteFile(state, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	before := treeHash(t, dir)
	_, err := session(t, siteConfig(t, dir, ""), nil)
	if !errors.Is(err, lifecycle.ErrRefusedPoint) || !errors.Is(err, sdk.ErrCorrupt) {
		t.Fatalf("error = %v; want a refused, corrupt point", err)
	}
	if w, ok := lifecycle.WayOutOf(err); !ok || w.Kind != lifecycle.WayOutOtherPoint || !strings.Contains(err.Error(), "memory.json") {
		t.Fatalf("error %q does not name the file and the way out", err)
	}
	if treeHash(t, dir) != before {
		t.Fatal("refusing the point changed the pad")
	}
	r, err := session(t, siteConfig(t, dir, ""), func(o *lifecycle.Options) { o.ColdBoot = true })
	if err != nil || r.ResumedFrom != "" {
		t.Fatalf("--cold-boot: %+v, %v", r, err)
	}
	if _, err := os.Stat(state); err != nil {
		t.Fatal("the refused point was deleted")
	}
}

func TestGuestPowerOffEndsWithoutAPoint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pad")
	cfg := siteConfig(t, dir, `plugin "vmm-counter" { power_off_after_ms = 100 }`)
	initPad(t, cfg)
	r, err := session(t, cfg, func(o *lifecycle.Options) { o.SuspendRequests = nil })
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	if r.Outcome != lifecycle.OutcomePoweredOff || r.Point != "" {
		t.Fatalf("result %+v; want powered off, no point", r)
	}
	if got := stages(r); got != "boot detect unlock resume run shutdown" {
		t.Fatalf("stages = %q", got)
	}
	r2, err := session(t, siteConfig(t, dir, ""), nil)
	if err != nil || r2.ColdBootReason != "the guest powered off last time" {
		t.Fatalf("next session: %+v, %v; want a cold boot because the guest powered off", r2, err)
	}
}

func TestPinnedChecksumMismatchIsRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pad")
	initPad(t, siteConfig(t, dir, ""))
	before := treeHash(t, dir)
	cfg := siteConfig(t, dir, `plugins { sha256 { "vmm-counter" = "`+strings.Repeat("ab", 32)+`" } }`)
	_, err := session(t, cfg, nil)
	if !errors.Is(err, pluginhost.ErrChecksum) {
		t.Fatalf("error = %v; want pluginhost.ErrChecksum", err)
	}
	if treeHash(t, dir) != before {
		t.Fatal("a refused plugin changed the pad")
	}
	// The right pin is accepted.
	b, err := pluginhost.New(nil, []string{pluginDir(t)}, nil).Find("vmm-counter")
	if err != nil {
		t.Fatal(err)
	}
	cfg = siteConfig(t, dir, `plugins { sha256 { "vmm-counter" = "`+b.SHA256+`" } }`)
	if _, err := session(t, cfg, nil); err != nil {
		t.Fatalf("session with the right pin: %v", err)
	}
}

func TestInitLeavesNothingOnFailure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pad")
	cfg := siteConfig(t, dir, `plugin "crypt-plain" { allow_no_encryption = false }`)
	_, err := lifecycle.Init(context.Background(), lifecycle.InitOptions{Config: cfg, PluginDirs: []string{pluginDir(t)}})
	if !errors.Is(err, sdk.ErrInvalidConfig) {
		t.Fatalf("init = %v; want sdk.ErrInvalidConfig", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a failed init left the pad directory behind")
	}
	// An existing pad is never overwritten.
	cfg = siteConfig(t, dir, "")
	initPad(t, cfg)
	before := treeHash(t, dir)
	if _, err := lifecycle.Init(context.Background(), lifecycle.InitOptions{Config: cfg, PluginDirs: []string{pluginDir(t)}}); err == nil {
		t.Fatal("init over an existing pad succeeded")
	}
	if treeHash(t, dir) != before {
		t.Fatal("init over an existing pad changed it")
	}
}

// A machine whose network the VMM plugin does not announce is refused
// before anything starts, naming what it offers.
func TestMachineTheVMMDoesNotRunIsRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pad")
	cfg := siteConfig(t, dir, `machine { network = "none" }`)
	initPad(t, cfg)
	_, err := session(t, cfg, nil)
	if !errors.Is(err, sdk.ErrIncompatibleHost) || !strings.Contains(err.Error(), `machine.network = "none"`) || !strings.Contains(err.Error(), "offers user") {
		t.Fatalf("err = %v", err)
	}
}

// A plugin carried on the pad that changed while the vault was locked
// stops the session right after unlock, naming it, with nothing resumed
// and the record untouched; once the user accepts the new plugins, later
// sessions run.
func TestChangedPadPluginStopsTheSession(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pad")
	cfg := siteConfig(t, dir, "")
	if _, err := lifecycle.Init(context.Background(), lifecycle.InitOptions{Config: cfg, PluginDirs: []string{pluginDir(t)}, CarryPlugins: true}); err != nil {
		t.Fatalf("init: %v", err)
	}
	if _, err := session(t, cfg, nil); err != nil {
		t.Fatal(err)
	}
	carried, _ := filepath.Glob(filepath.Join(dir, "plugins", "*"))
	if len(carried) == 0 {
		t.Fatal("init carried no plugins: the test checks nothing")
	}
	f, err := os.OpenFile(filepath.Join(dir, "plugins", "vmm-counter"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("tampered")
	f.Close()
	before := treeHash(t, filepath.Join(dir, "vault"))
	r, err := session(t, cfg, nil)
	if !errors.Is(err, pad.ErrPluginsChanged) || !strings.Contains(err.Error(), "vmm-counter changed") || !strings.Contains(err.Error(), "change the passphrase") {
		t.Fatalf("err = %v", err)
	}
	if r.ResumedFrom != "" || treeHash(t, filepath.Join(dir, "vault")) != before {
		t.Fatal("a session with a changed plugin on the pad went on or changed the vault")
	}
	if _, err := session(t, cfg, func(o *lifecycle.Options) { o.AcceptPadPlugins = true }); err != nil {
		t.Fatalf("with the plugins accepted: %v", err)
	}
	if _, err := session(t, cfg, nil); err != nil {
		t.Fatalf("after accepting: %v", err)
	}
}

// A point's mapped file (guest RAM a VMM maps) is not read before the
// resume but checked beside the running machine. Intact, the session
// suspends a new point as usual, which marks its own mapped file.
// Damaged, the machine is stopped without suspending anything on top of
// it, the session says so as a refused point, and the point is kept.
func TestMappedFileCheckedBesideTheRunningMachine(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pad")
	extra := `plugin "vmm-counter" { mapped_mib = 16 }`
	cfg := siteConfig(t, dir, extra)
	initPad(t, cfg)
	first, err := session(t, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	points := filepath.Join(dir, "vault/machines/soul/points")
	manifest := func(id string) pad.Manifest { return readManifest(t, points, id) }
	mapped := func(m pad.Manifest) bool {
		for _, f := range m.Files {
			if f.Name == counter.MappedFile {
				return f.Mapped && len(f.SHA256) == 64
			}
		}
		return false
	}
	if !mapped(manifest(first.Point)) {
		t.Fatalf("the point's manifest does not mark %s mapped with its checksum: %+v", counter.MappedFile, manifest(first.Point).Files)
	}
	second, err := session(t, cfg, nil)
	if err != nil || second.ResumedFrom != first.Point || !mapped(manifest(second.Point)) {
		t.Fatalf("resuming a point with a mapped file: %+v, %v", second, err)
	}
	if !lastSessionSays(dir, "mapped memory checked") {
		t.Error("the journal does not say the mapped file was checked")
	}

	// One byte of the newest point's mapped file changes.
	ram := filepath.Join(points, second.Point, counter.MappedFile)
	f, err := os.OpenFile(ram, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff}, 12345)
	f.Close()
	before, _ := os.ReadDir(points)
	_, err = session(t, cfg, nil)
	if !errors.Is(err, lifecycle.ErrRefusedPoint) || !errors.Is(err, sdk.ErrCorrupt) || !strings.Contains(err.Error(), counter.MappedFile) {
		t.Fatalf("a damaged mapped file: %v; want a refused, corrupt point naming the file", err)
	}
	after, _ := os.ReadDir(points)
	if len(after) != len(before) {
		t.Fatalf("points before %d, after %d: something was sealed on top of damaged memory", len(before), len(after))
	}
	if _, err := os.Stat(ram); err != nil {
		t.Fatal("the damaged point was removed")
	}
}

// readManifest reads the manifest of point id in the points directory.
func readManifest(t *testing.T, points, id string) pad.Manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(points, id, pad.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	var m pad.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// lastSessionSays says whether the journal of the pad at dir has an entry
// of its last session whose message contains sub.
func lastSessionSays(dir, sub string) bool {
	es, _ := pad.LastSession(filepath.Join(dir, "journal"))
	for _, e := range es {
		if strings.Contains(e.Message, sub) {
			return true
		}
	}
	return false
}
