package diskchain

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/vmm"
)

func requireQemuImg(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("qemu-img")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("qemu-img missing; `make test` installs it")
		}
		t.Skip("qemu-img missing (scripts/deps.sh)")
	}
	return p
}

func overlays(t *testing.T, dir string) []string {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if isOverlayName(e.Name()) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// Sessions, points kept and dropped, a crashed session's disk kept as a
// point: Collect removes exactly what nothing needs, and every kept point
// and the latest disk still open with their whole backing chain.
func TestCollectKeepsWhatPointsNeed(t *testing.T) {
	c := Chain{QemuImg: requireQemuImg(t), Plugin: "test"}
	ctx := context.Background()
	m := t.TempDir()
	disks := []vmm.Disk{{Name: "root", Path: "disk.qcow2", Format: "qcow2", SizeMiB: 8}}
	dir := DiskDir(m, disks[0])

	// session: boot → suspend into point dir; returns the frozen overlay.
	session := func(from *KeptPoint) (KeptPoint, string) {
		var tops map[string]string
		var err error
		if from == nil {
			tops, err = c.StartTops(ctx, m, disks)
		} else {
			tops, err = c.ResumeTops(ctx, m, from.StateDir, disks, from.Disks)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Commit(m, disks, tops); err != nil {
			t.Fatal(err)
		}
		pd := t.TempDir()
		_, frozen, err := c.Freeze(m, pd, disks, tops)
		if err != nil {
			t.Fatal(err)
		}
		return KeptPoint{StateDir: pd, Disks: frozen}, tops["root"]
	}
	p1, g1 := session(nil)
	p2, g2 := session(&p1)
	p3, g3 := session(&p2)
	// A crash: a session resumed p3 and died; its disk is kept as a point.
	crashTops, err := c.ResumeTops(ctx, m, p3.StateDir, disks, p3.Disks)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(m, disks, crashTops); err != nil {
		t.Fatal(err)
	}
	kd := t.TempDir()
	_, keptDisk, err := c.Keep(m, kd, disks)
	if err != nil || keptDisk["root"] != crashTops["root"] {
		t.Fatalf("keep: %v %v", keptDisk, err)
	}
	d4 := KeptPoint{StateDir: kd, Disks: keptDisk}
	// The next run resumes p3 again; its overlay becomes the latest.
	p5, g5 := session(&p3)
	// A start that never committed (crash before Commit) leaves an orphan.
	orphan, err := c.NewOverlay(ctx, m, disks[0], g5)
	if err != nil {
		t.Fatal(err)
	}
	all := overlays(t, dir)

	// Retention dropped p1 and p2: g1 and g2 are still below p3; only the
	// orphan goes.
	removed, _, err := c.Collect(m, disks, []KeptPoint{p3, d4, p5})
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || filepath.Base(removed[0]) != orphan {
		t.Fatalf("removed %v; want only the orphan %s (had %v)", removed, orphan, all)
	}
	// Dropping the disk point frees the crashed session's overlay.
	removed, _, err = c.Collect(m, disks, []KeptPoint{p3, p5})
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || filepath.Base(removed[0]) != crashTops["root"] {
		t.Fatalf("removed %v; want %s", removed, crashTops["root"])
	}
	for _, g := range []string{g1, g2, g3, g5} {
		if _, err := os.Stat(filepath.Join(dir, g)); err != nil {
			t.Fatalf("%s, needed by a kept point, is gone: %v", g, err)
		}
	}
	// Every kept state opens with its whole chain.
	for _, f := range []string{filepath.Join(dir, g3), filepath.Join(dir, g5)} {
		cmd := exec.Command(c.QemuImg, "info", "--backing-chain", f)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("qemu-img info %s: %v %s", f, err, out)
		}
	}
	_ = p2
}

// A chain the pad lost a file of (and no point has a copy): nothing of
// that disk is removed.
func TestCollectLeavesABrokenChainAlone(t *testing.T) {
	c := Chain{QemuImg: requireQemuImg(t), Plugin: "test"}
	ctx := context.Background()
	m := t.TempDir()
	disks := []vmm.Disk{{Name: "root", Path: "disk.qcow2", Format: "qcow2", SizeMiB: 8}}
	tops, err := c.StartTops(ctx, m, disks)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Commit(m, disks, tops)
	top2, err := c.NewOverlay(ctx, m, disks[0], tops["root"])
	if err != nil {
		t.Fatal(err)
	}
	_ = SetCurrent(m, disks[0], top2)
	stray, _ := c.NewOverlay(ctx, m, disks[0], "")
	if err := os.Remove(filepath.Join(DiskDir(m, disks[0]), top2)); err != nil {
		t.Fatal(err)
	}
	removed, _, err := c.Collect(m, disks, nil)
	if err != nil || len(removed) != 0 {
		t.Fatalf("removed %v (%v) from a broken chain; want nothing", removed, err)
	}
	if _, err := os.Stat(filepath.Join(DiskDir(m, disks[0]), stray)); err != nil {
		t.Fatal(err)
	}
}

func TestParseBacking(t *testing.T) {
	qi := requireQemuImg(t)
	dir := t.TempDir()
	for _, args := range [][]string{{"create", "-q", "-f", "qcow2", "base.qcow2", "1M"}, {"create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "base.qcow2", "g1.qcow2"}} {
		cmd := exec.Command(qi, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	for f, want := range map[string]string{"base.qcow2": "", "g1.qcow2": "base.qcow2"} {
		got, err := backingName(filepath.Join(dir, f))
		if err != nil || got != want {
			t.Fatalf("%s: backing %q, %v; want %q", f, got, err, want)
		}
	}
	if _, err := ParseBacking([]byte("not an image at all")); err == nil {
		t.Fatal("garbage parsed")
	}
}

func FuzzParseBacking(f *testing.F) {
	hdr := make([]byte, 128)
	copy(hdr, "QFI\xfb\x00\x00\x00\x03")
	hdr[15] = 104 // offset
	hdr[19] = 10  // size
	copy(hdr[104:], "base.qcow2")
	f.Add(hdr)
	f.Add([]byte("QFI\xfb"))
	f.Fuzz(func(t *testing.T, b []byte) {
		name, err := ParseBacking(b)
		if err == nil && name != "" && !strings.Contains(string(b), name) {
			t.Fatalf("name %q is not in the input", name)
		}
		if len(name) > 1023 {
			t.Fatalf("name of %d bytes", len(name))
		}
	})
}

func FuzzDisksOf(f *testing.F) {
	f.Add(`{"disks":{"root":"g1.qcow2"}}`)
	f.Add(`{"disks":{"root":"../../etc/passwd"}}`)
	f.Fuzz(func(t *testing.T, s string) {
		m, err := DisksOf(s)
		if err != nil {
			return
		}
		for _, v := range m {
			if strings.Contains(v, "/") || v == ".." {
				t.Fatalf("DisksOf let %q through", v)
			}
		}
	})
}

// The embeddable DiskHistory refuses while the plugin runs a machine, and
// holds the plugin's lock for the call.
func TestHistoryRefusesWhileRunning(t *testing.T) {
	var mu sync.Mutex
	running, held := true, false
	h := History{Chain: func() Chain { return Chain{QemuImg: "qemu-img", Plugin: "vmm-x"} },
		Hold: func() (bool, func()) { mu.Lock(); held = true; return running, func() { held = false; mu.Unlock() } }}
	if _, err := h.KeepDisks(context.Background(), vmm.KeepDisksRequest{}); !errors.Is(err, sdk.ErrBusy) || !strings.Contains(err.Error(), "vmm-x") {
		t.Fatalf("KeepDisks while running: %v; want ErrBusy naming the plugin", err)
	}
	if _, err := h.CollectDisks(context.Background(), vmm.CollectDisksRequest{}); !errors.Is(err, sdk.ErrBusy) {
		t.Fatalf("CollectDisks while running: %v; want ErrBusy", err)
	}
	if held {
		t.Fatal("the plugin's lock was not given back")
	}
}
