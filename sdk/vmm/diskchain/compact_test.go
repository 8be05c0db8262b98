package diskchain

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/soulpad/soulpad/sdk/vmm"
)

// TestCollectMergesALongChainAndEveryPointReadsTheSame: a disk after
// fourteen sessions and checkpoints, of which two are kept points and one
// the current top. Collect merges the eleven other overlays into three
// (one per run between the named ones); each named overlay is the same
// file byte for byte afterwards, and reads as the same disk.
func TestCollectMergesALongChainAndEveryPointReadsTheSame(t *testing.T) {
	c := Chain{QemuImg: requireQemuImg(t), Plugin: "test"}
	qemuIO, err := exec.LookPath("qemu-io")
	if err != nil {
		t.Skip("qemu-io is missing (qemu-utils)")
	}
	ctx := context.Background()
	m := t.TempDir()
	d := vmm.Disk{Name: "root", Path: "disk.qcow2", Format: "qcow2", SizeMiB: 8}
	dir := DiskDir(m, d)
	var chain []string // bottom first
	top := ""
	for i := 1; i <= 14; i++ {
		name, err := c.NewOverlay(ctx, m, d, top)
		if err != nil {
			t.Fatal(err)
		}
		// Each layer writes a block of its own and rewrites a shared one.
		for _, w := range []string{fmt.Sprintf("write -P %d %dk 64k", i, i*128), fmt.Sprintf("write -P %d 4096k 32k", i)} {
			cmd := exec.Command(qemuIO, "-f", "qcow2", "-c", w, name)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("qemu-io %s: %v %s", w, err, out)
			}
		}
		chain, top = append(chain, name), name
	}
	if err := SetCurrent(m, d, top); err != nil {
		t.Fatal(err)
	}
	// Points hold layers 3 and 10 (a hard-linked copy, as Freeze makes).
	var keep []KeptPoint
	for _, i := range []int{3, 10} {
		sd := t.TempDir()
		if err := os.Link(filepath.Join(dir, chain[i-1]), filepath.Join(sd, StateDiskName(d))); err != nil {
			t.Fatal(err)
		}
		keep = append(keep, KeptPoint{StateDir: sd, Disks: map[string]string{"root": chain[i-1]}})
	}
	named := []string{chain[2], chain[9], top}
	files, views := map[string]string{}, map[string]string{}
	for _, n := range named {
		files[n], views[n] = fileSHA(t, filepath.Join(dir, n)), diskView(t, c, dir, n)
	}

	removed, freed, err := c.Collect(m, []vmm.Disk{d}, keep)
	if err != nil {
		t.Fatal(err)
	}
	after, err := chainOf(dir, top)
	if err != nil {
		t.Fatal(err)
	}
	// 14, 13-11, 10, 9-4, 3, 2-1.
	if len(after) != 6 || len(removed) != 8 {
		t.Fatalf("after Collect the chain is %d overlays (want 6), %d files removed (want 8): %v", len(after), len(removed), removed)
	}
	for _, n := range named {
		if got := fileSHA(t, filepath.Join(dir, n)); got != files[n] {
			t.Errorf("%s, a point's disk or the current top, was written", n)
		}
		if got := diskView(t, c, dir, n); got != views[n] {
			t.Errorf("%s reads as another disk after the merge", n)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 6+1 { // the overlays and "current" (the base is beside)
		t.Errorf("%d files in the disk's directory after the merge; want 7", len(ents))
	}
	t.Logf("14 overlays → %d; %d files removed, %d bytes freed", len(after), len(removed), freed)

	// A short chain is left as it is.
	if removed, _, err := c.Collect(m, []vmm.Disk{d}, keep); err != nil || len(removed) != 0 {
		t.Fatalf("a second Collect removed %v (%v)", removed, err)
	}
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// diskView is the SHA-256 of the disk as a guest reads it through the
// overlay name (its whole chain).
func diskView(t *testing.T, c Chain, dir, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "view.raw")
	cmd := exec.Command(c.QemuImg, "convert", "-O", "raw", name, out)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert %s: %v %s", name, err, b)
	}
	return fileSHA(t, out)
}
