package diskchain

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/soulpad/soulpad/sdk/atomicfile"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// A chain grows by an overlay per session and per checkpoint, and every
// overlay stays as long as a newer one is backed by it: a machine used
// every day with checkpoints every ten minutes would reach hundreds of
// files (and QEMU opens every one). Collect keeps chains short: once
// more than compactSlack overlays of a chain are named by nothing (no
// kept point holds one as its disk, and none is the current top), each
// run of two or more such overlays is merged into one. The run's content
// is committed into its lowest overlay, which then takes the highest
// one's name (the overlay above the run is backed by that name), and the
// others go. What every point and the current state read is unchanged,
// and no file a point holds is written: a point's disk is a named
// overlay, never part of a run. A crash part way leaves a chain that
// reads the same (the commit only writes, into an overlay the run hides,
// data the overlays above it still hold), and the files it leaves behind
// are collected next time.

// compactSlack is how many unnamed overlays a chain may hold before
// Collect merges them.
const compactSlack = 8

// chainOf lists the overlays of the chain whose top is top, top first,
// down to the first file that is not an overlay (the base image).
func chainOf(dir, top string) ([]string, error) {
	var chain []string
	seen := map[string]bool{}
	for name := top; name != "" && isOverlayName(name) && filepath.Base(name) == name; {
		if seen[name] {
			return nil, fmt.Errorf("disk chain loops at %s", name)
		}
		seen[name] = true
		chain = append(chain, name)
		back, err := backingName(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		name = back
	}
	return chain, nil
}

// compactDisk is compact for disk d, whose chain is in dir with top cur,
// where the kept points name their overlays; the files that went are
// given relative to the machine's directory.
func (c Chain) compactDisk(d vmm.Disk, dir, cur string, keep []KeptPoint) ([]string, uint64, error) {
	set := map[string]bool{cur: true}
	for _, k := range keep {
		if f := k.Disks[d.Name]; f != "" {
			set[f] = true
		}
	}
	merged, freed, err := c.compact(context.Background(), dir, cur, set)
	var removed []string
	for _, n := range merged {
		removed = append(removed, filepath.Join("disks", d.Name, n))
	}
	return removed, freed, err
}

// compact merges the runs of unnamed overlays in the chain under top
// once there are more than compactSlack of them. It returns the file
// names that went and the bytes freed.
func (c Chain) compact(ctx context.Context, dir, top string, named map[string]bool) (removed []string, freed uint64, err error) {
	chain, err := chainOf(dir, top)
	if err != nil {
		return nil, 0, nil // a chain that cannot be read whole is left as it is
	}
	unnamed := 0
	for _, n := range chain {
		if !named[n] {
			unnamed++
		}
	}
	if unnamed <= compactSlack {
		return nil, 0, nil
	}
	for i := 0; i < len(chain); i++ {
		if named[chain[i]] {
			continue
		}
		j := i
		for j+1 < len(chain) && !named[chain[j+1]] {
			j++
		}
		if j > i {
			r, f, err := c.mergeRun(ctx, dir, chain[i:j+1])
			removed, freed = append(removed, r...), freed+f
			if err != nil {
				return removed, freed, err
			}
		}
		i = j
	}
	return removed, freed, nil
}

// mergeRun merges run (overlays, highest first, each backed by the next)
// into one file under the highest one's name.
func (c Chain) mergeRun(ctx context.Context, dir string, run []string) ([]string, uint64, error) {
	hi, lo := run[0], run[len(run)-1]
	var before uint64
	for _, n := range run {
		fi, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			return nil, 0, err
		}
		// A file linked elsewhere (a point's copy) is never written.
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			return nil, 0, nil
		}
		before += uint64(fi.Size())
	}
	if err := c.qemuImg(ctx, dir, "commit", "-q", "-d", "-b", lo, hi); err != nil {
		return nil, 0, fmt.Errorf("%s: merge %d overlays: %w", c.Plugin, len(run), err)
	}
	if err := os.Rename(filepath.Join(dir, lo), filepath.Join(dir, hi)); err != nil {
		return nil, 0, err
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return nil, 0, err
	}
	removed := []string{lo}
	for _, n := range run[1 : len(run)-1] {
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return removed, 0, err
		}
		removed = append(removed, n)
	}
	var after uint64
	if fi, err := os.Stat(filepath.Join(dir, hi)); err == nil {
		after = uint64(fi.Size())
	}
	if after > before {
		return removed, 0, atomicfile.SyncDir(dir)
	}
	return removed, before - after, atomicfile.SyncDir(dir)
}
