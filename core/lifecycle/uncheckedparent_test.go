package lifecycle_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/soulpad/soulpad/core/lifecycle"
	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/internal/testplugins/counter"
	"github.com/soulpad/soulpad/sdk"
)

// A suspend does not wait for the check of the resumed point's memory
// (1 GiB here: hashing it takes about a second; the suspend comes 0.1 s into
// the session). The point it seals lists the points left unchecked, and
// so does the next one sealed before its check ends. A resume checks the
// points listed: when one of them is damaged, the resumed point is
// refused although its own memory is intact, and nothing is sealed on
// top of it.
func TestSuspendDoesNotWaitForTheCheckButItsResumeDoes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pad")
	cfg := siteConfig(t, dir, `plugin "vmm-counter" { mapped_mib = 1024 }`)
	initPad(t, cfg)
	points := filepath.Join(dir, "vault/machines/soul/points")
	manifest := func(id string) pad.Manifest { return readManifest(t, points, id) }
	a, err := session(t, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if u := manifest(a.Point).Unchecked; len(u) != 0 {
		t.Fatalf("a point of a cold boot lists unchecked points %v", u)
	}
	b, err := session(t, cfg, nil)
	if err != nil || b.ResumedFrom != a.Point {
		t.Fatalf("resume %s: %+v, %v", a.Point, b, err)
	}
	if u := manifest(b.Point).Unchecked; !slices.Equal(u, []string{a.Point}) {
		t.Fatalf("point %s, sealed 0.1 s after resuming %s, lists unchecked %v; want [%s]", b.Point, a.Point, u, a.Point)
	}
	if !lastSessionSays(dir, "has not finished") {
		t.Error("the journal does not say the suspend went on before the check finished")
	}
	c, err := session(t, cfg, nil)
	if err != nil || c.ResumedFrom != b.Point {
		t.Fatalf("resume %s: %+v, %v", b.Point, c, err)
	}
	if u := manifest(c.Point).Unchecked; !slices.Equal(u, []string{b.Point, a.Point}) {
		t.Fatalf("point %s lists unchecked %v; want [%s %s]", c.Point, u, b.Point, a.Point)
	}
	pts, err := pad.MachineIn(filepath.Join(dir, "vault"), "soul").Points()
	if err != nil {
		t.Fatal(err)
	}
	if doomed := lifecycle.PrunePlan(pts, 1, true); len(doomed) != 0 {
		t.Fatalf("pruning to one point removes %v, which point %s's resume checks", doomed, c.Point)
	}

	// One byte of the oldest point's mapped file changes: the newest
	// point's own memory is intact, but derives from it unchecked.
	f, err := os.OpenFile(filepath.Join(points, a.Point, counter.MappedFile), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff}, 12345)
	f.Close()
	before, _ := os.ReadDir(points)
	// No suspend is asked for: the check's end ends the session.
	_, err = session(t, cfg, func(o *lifecycle.Options) { o.SuspendRequests = nil })
	if !errors.Is(err, lifecycle.ErrRefusedPoint) || !errors.Is(err, sdk.ErrCorrupt) || !strings.Contains(err.Error(), "derives from point "+a.Point) {
		t.Fatalf("a damaged point that the newest derives from: %v; want the newest refused, naming %s", err, a.Point)
	}
	after, _ := os.ReadDir(points)
	if len(after) != len(before) {
		t.Fatalf("points before %d, after %d: something was sealed on top of damaged memory", len(before), len(after))
	}
}
