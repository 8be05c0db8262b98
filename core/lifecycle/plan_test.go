package lifecycle

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/sdk"
)

func pt(id, kind, session string, minute int) pad.Point {
	return pad.Point{Dir: "/v/points/" + id, Manifest: pad.Manifest{ID: id, Kind: kind, Session: session,
		Created: time.Date(2026, 1, 1, 14, minute, 0, 0, time.UTC)}}
}

func ckpt(id, session string, minute int) pad.Point {
	p := pt(id, pad.KindMemory, session, minute)
	p.Manifest.Checkpoint = true
	return p
}

func TestCheckpointsArePrunedApartFromSuspendPoints(t *testing.T) {
	pts := []pad.Point{pt("p1", pad.KindMemory, "s1", 0), ckpt("c1", "s2", 1), ckpt("c2", "s2", 2), pt("p2", "", "s2", 3),
		ckpt("c3", "s3", 4), ckpt("c4", "s3", 5)}
	ids := func(ps []pad.Point) string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Manifest.ID)
		}
		return strings.Join(out, " ")
	}
	if got := ids(CheckpointPrunePlan(pts, 2)); got != "c1 c2" {
		t.Errorf("keep 2 checkpoints: pruned %q, want the oldest two", got)
	}
	if got := ids(CheckpointPrunePlan(pts, 1, "c3")); got != "c1 c2" {
		t.Errorf("keep 1, c3 protected, c4 the newest: pruned %q", got)
	}
	if got := ids(CheckpointPrunePlan(pts, 1)); got != "c1 c2 c3" {
		t.Errorf("keep 1: pruned %q, want all but the newest", got)
	}
	if got := ids(PrunePlan(pts, 1, false)); got != "p1" {
		t.Errorf("keep 1 suspend point: pruned %q, want p1 only (checkpoints are not counted or pruned there)", got)
	}
}

func TestPlanResume(t *testing.T) {
	p1 := pt("p1", pad.KindMemory, "s1", 0)
	p2 := pt("p2", "", "s2", 10) // a point written before kinds: memory
	d3 := pt("d3", pad.KindDisk, "s3", 20)
	since := time.Date(2026, 1, 1, 14, 30, 0, 0, time.UTC)
	running := func(session string) pad.SessionState {
		return pad.SessionState{State: pad.SessionRunning, Session: session, Since: since}
	}
	cases := []struct {
		name string
		in   PlanInput
		// want: resume ID, boot-from ID, keep, reason and lost substrings.
		resume, bootFrom string
		keep             bool
		reason, lost     string
		err              error
	}{
		{name: "new machine", in: PlanInput{Session: pad.SessionState{State: pad.SessionNew}, DiskHistory: true}, reason: "no suspend point yet"},
		{name: "suspended", in: PlanInput{Session: pad.SessionState{State: pad.SessionSuspended, Point: "p2"}, Points: []pad.Point{p1, p2}, DiskHistory: true}, resume: "p2"},
		{name: "crash after a resume: newest point, disk kept, loss said",
			in:     PlanInput{Session: running("s3"), Points: []pad.Point{p1, p2}, DiskHistory: true},
			resume: "p2", keep: true, lost: "the work since point p2"},
		{name: "crash after the seal: nothing lost",
			in:     PlanInput{Session: running("s2"), Points: []pad.Point{p1, p2}, DiskHistory: true},
			resume: "p2", lost: "nothing was lost"},
		{name: "crash whose disk was already kept: not kept twice",
			in:     PlanInput{Session: running("s3"), Points: []pad.Point{p1, p2, d3}, DiskHistory: true},
			resume: "p2"},
		{name: "crash after a checkpoint: the checkpoint, the disk since kept, the loss said",
			in:     PlanInput{Session: running("s3"), Points: []pad.Point{p1, p2, ckpt("c3", "s3", 25)}, DiskHistory: true},
			resume: "c3", keep: true, lost: "resumes from its checkpoint c3"},
		{name: "crash after a checkpoint whose disk was already kept",
			in:     PlanInput{Session: running("s3"), Points: []pad.Point{p2, ckpt("c3", "s3", 25), d3}, DiskHistory: true},
			resume: "c3", lost: "resumes from its checkpoint c3"},
		{name: "crash after a checkpoint, VMM without disk history: not resumed",
			in:     PlanInput{Session: running("s3"), Points: []pad.Point{p2, ckpt("c3", "s3", 25)}},
			reason: "cannot keep that disk apart"},
		{name: "crash of a session recorded before sessions had IDs",
			in:     PlanInput{Session: pad.SessionState{State: pad.SessionRunning}, Points: []pad.Point{p1}, DiskHistory: true},
			resume: "p1", keep: true, lost: "is lost"},
		{name: "crash, VMM without disk history: old behaviour",
			in:     PlanInput{Session: running("s3"), Points: []pad.Point{p1, p2}},
			reason: "cannot keep that disk apart"},
		{name: "crash with no point at all: boot its disk",
			in:     PlanInput{Session: running("s1"), DiskHistory: true},
			reason: "no suspend point to go back to"},
		{name: "a disk point is never resumed as memory",
			in:     PlanInput{Session: pad.SessionState{State: pad.SessionSuspended}, Points: []pad.Point{p1, d3}, DiskHistory: true},
			resume: "p1"},
		{name: "powered off", in: PlanInput{Session: pad.SessionState{State: pad.SessionStopped, Session: "s3"}, Points: []pad.Point{p1}, DiskHistory: true},
			reason: "powered off"},
		{name: "cold boot asked", in: PlanInput{Session: running("s3"), Points: []pad.Point{p1}, ColdBoot: true, DiskHistory: true},
			reason: "--cold-boot"},
		{name: "--point older after a clean suspend: nothing to keep",
			in:     PlanInput{Session: pad.SessionState{State: pad.SessionSuspended, Session: "s2"}, Points: []pad.Point{p1, p2}, PointID: "p1", DiskHistory: true},
			resume: "p1"},
		{name: "--point after a power-off keeps the disk",
			in:     PlanInput{Session: pad.SessionState{State: pad.SessionStopped, Session: "s9"}, Points: []pad.Point{p1, p2}, PointID: "p1", DiskHistory: true},
			resume: "p1", keep: true},
		{name: "--point of a disk point boots it",
			in:       PlanInput{Session: pad.SessionState{State: pad.SessionSuspended}, Points: []pad.Point{p1, d3}, PointID: "d3", DiskHistory: true},
			bootFrom: "d3", reason: "disk kept in point d3"},
		{name: "--point by unique prefix", in: PlanInput{Session: pad.SessionState{State: pad.SessionSuspended}, Points: []pad.Point{p1, d3}, PointID: "p", DiskHistory: true},
			resume: "p1"},
		{name: "--point unknown", in: PlanInput{Points: []pad.Point{p1}, PointID: "zz", DiskHistory: true}, err: sdk.ErrNotFound},
		{name: "--point older without disk history is refused",
			in:  PlanInput{Session: pad.SessionState{State: pad.SessionSuspended}, Points: []pad.Point{p1, p2}, PointID: "p1"},
			err: errors.New("disk-history")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := PlanResume(c.in)
			if c.err != nil {
				if err == nil || (errors.Is(c.err, sdk.ErrNotFound) && !errors.Is(err, sdk.ErrNotFound)) || !errors.Is(c.err, sdk.ErrNotFound) && !strings.Contains(err.Error(), c.err.Error()) {
					t.Fatalf("err = %v; want %v", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			id := func(p *pad.Point) string {
				if p == nil {
					return ""
				}
				return p.Manifest.ID
			}
			if id(got.Resume) != c.resume || id(got.BootFrom) != c.bootFrom || got.KeepLatestDisk != c.keep {
				t.Fatalf("plan resume=%q bootFrom=%q keep=%v; want %q %q %v", id(got.Resume), id(got.BootFrom), got.KeepLatestDisk, c.resume, c.bootFrom, c.keep)
			}
			if !strings.Contains(got.Reason, c.reason) || (c.reason == "" && got.Reason != "" && got.Resume != nil) {
				t.Fatalf("reason %q; want it to say %q", got.Reason, c.reason)
			}
			if !strings.Contains(got.Lost, c.lost) || (c.lost == "" && got.Lost != "") {
				t.Fatalf("lost %q; want %q", got.Lost, c.lost)
			}
		})
	}
}

func TestPrunePlan(t *testing.T) {
	var pts []pad.Point
	for i, k := range []string{"memory", "memory", "disk", "memory", "memory", "memory"} {
		pts = append(pts, pt(string(rune('a'+i)), k, "", i))
	}
	ids := func(ps []pad.Point) string {
		var s []string
		for _, p := range ps {
			s = append(s, p.Manifest.ID)
		}
		return strings.Join(s, ",")
	}
	for _, c := range []struct {
		keep      int
		disks     bool
		protected []string
		want      string
	}{
		{keep: 3, want: "a,b"},
		{keep: 3, disks: true, want: "a,b,c"},
		{keep: 5, want: ""},
		{keep: 1, want: "a,b,d,e"},
		{keep: 1, protected: []string{"a"}, want: "b,d,e"},
		{keep: 1, protected: []string{"f"}, want: "a,b,d,e"},
	} {
		if got := ids(PrunePlan(pts, c.keep, c.disks, c.protected...)); got != c.want {
			t.Errorf("PrunePlan(keep %d, disks %v, protected %v) = %q; want %q", c.keep, c.disks, c.protected, got, c.want)
		}
	}
}

// Empty mount directories left by killed sessions go: this pad's at once,
// other pads' once a minute old; non-empty or young ones stay.
func TestSweepMountDirs(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	old := time.Now().Add(-2 * time.Minute)
	mk := func(name string, age time.Time, file bool) string {
		d := filepath.Join(tmp, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if file {
			os.WriteFile(filepath.Join(d, "x"), nil, 0o600)
		}
		os.Chtimes(d, age, age)
		return d
	}
	mine := mk("soulpad-0123456789abcdef-1", time.Now(), false)
	otherOld := mk("soulpad-fedcba9876543210-2", old, false)
	otherYoung := mk("soulpad-fedcba9876543210-3", time.Now(), false)
	full := mk("soulpad-fedcba9876543210-4", old, true)
	notOurs := mk("soulpad-testbin-5", old, false)
	sweepMountDirs("0123456789abcdef")
	for d, gone := range map[string]bool{mine: true, otherOld: true, otherYoung: false, full: false, notOurs: false} {
		if _, err := os.Stat(d); (err != nil) != gone {
			t.Errorf("%s: gone = %v; want %v", filepath.Base(d), err != nil, gone)
		}
	}
}
