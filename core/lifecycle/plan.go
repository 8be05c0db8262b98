package lifecycle

import (
	"fmt"
	"slices"
	"time"

	"github.com/soulpad/soulpad/core/pad"
)

// PlanInput is what the resume step decides from: the machine's session
// record and sealed points, and what the user asked for.
type PlanInput struct {
	Session pad.SessionState
	// Points are the sealed points, oldest first.
	Points []pad.Point
	// ColdBoot: --cold-boot (boot the disks' latest state).
	ColdBoot bool
	// PointID: --point (resume that point, or boot a disk point).
	PointID string
	// DiskHistory: the VMM plugin can keep a disk state apart and boot it
	// (vmm.CapDiskHistory).
	DiskHistory bool
}

// Plan is what the resume step does.
type Plan struct {
	// Resume is the memory point to resume; nil for a boot.
	Resume *pad.Point
	// BootFrom is the disk point to cold-boot from; nil with Resume nil
	// boots the disks' latest state.
	BootFrom *pad.Point
	// KeepLatestDisk: the disks' latest state holds work that no point
	// has and the plan leaves it behind: keep it as a disk point first.
	KeepLatestDisk bool
	// Reason says why no point is resumed (a boot).
	Reason string
	// Lost says what the last session lost, for the user ("" if nothing).
	Lost string
}

// latestDiskUnsaved reports whether the disks' latest state holds work
// that no sealed point holds: the last session ended without suspending
// (crash or guest power-off) and none of its points exist.
func latestDiskUnsaved(sess pad.SessionState, pts []pad.Point) bool {
	if sess.State != pad.SessionRunning && sess.State != pad.SessionStopped {
		return false
	}
	if sess.Session == "" {
		return true // written before sessions were named: assume so
	}
	// A suspend of that session froze the disk; a checkpoint froze it too,
	// but the session wrote on after it.
	for i := len(pts) - 1; i >= 0; i-- {
		if pts[i].Manifest.Session == sess.Session {
			return pts[i].IsCheckpoint()
		}
	}
	return true
}

// sealedBy returns the newest memory point the session sealed, if any.
func sealedBy(pts []pad.Point, session string) (pad.Point, bool) {
	for i := len(pts) - 1; i >= 0; i-- {
		if session != "" && pts[i].Manifest.Session == session && !pts[i].IsDisk() {
			return pts[i], true
		}
	}
	return pad.Point{}, false
}

func when(t time.Time) string {
	if t.IsZero() {
		return "an unknown time"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// PlanResume decides what the resume step does. It is pure: the same
// input gives the same plan.
//
// The invariant it keeps: after any crash the newest sealed point is
// resumed with the disk state it was taken with, and a newer disk state
// that the plan leaves behind is kept as a disk point first (reachable
// with --point until it is pruned). A VMM plugin that cannot keep disk
// states apart gets the older behaviour: boot the latest disk, keep the
// point.
func PlanResume(in PlanInput) (Plan, error) {
	unsaved := latestDiskUnsaved(in.Session, in.Points)
	var latest *pad.Point
	for i := len(in.Points) - 1; i >= 0; i-- {
		if !in.Points[i].IsDisk() {
			latest = &in.Points[i]
			break
		}
	}
	switch {
	case in.PointID != "":
		p, err := pad.FindPoint(in.Points, in.PointID)
		if err != nil {
			return Plan{}, err
		}
		if !in.DiskHistory && (unsaved || p.IsDisk() || latest == nil || p.Manifest.ID != latest.Manifest.ID) {
			return Plan{}, fmt.Errorf("the VMM plugin cannot keep disk states apart (no %q capability), so only the newest point can be resumed", "disk-history")
		}
		plan := Plan{KeepLatestDisk: unsaved}
		if p.IsDisk() {
			plan.BootFrom = &p
			plan.Reason = fmt.Sprintf("booting the disk kept in point %s (--point; it has no memory state)", p.Manifest.ID)
		} else {
			plan.Resume = &p
		}
		return plan, nil
	case in.ColdBoot:
		return Plan{Reason: "cold boot asked for (--cold-boot): the disks' latest state boots; the suspend points are kept"}, nil
	case in.Session.State == pad.SessionStopped:
		return Plan{Reason: "the guest powered off last time"}, nil
	case latest == nil && in.Session.State == pad.SessionRunning:
		return Plan{Reason: "the last session ended without suspending (crash or power loss?) and there is no suspend point to go back to: its disk boots"}, nil
	case latest == nil:
		return Plan{Reason: "no suspend point yet"}, nil
	case in.Session.State != pad.SessionRunning:
		return Plan{Resume: latest}, nil
	}
	// The last session ended without suspending (crash, kill, power loss).
	if p, ok := sealedBy(in.Points, in.Session.Session); ok && p.Manifest.ID == latest.Manifest.ID && p.IsCheckpoint() && (in.DiskHistory || !unsaved) {
		return Plan{Resume: latest, KeepLatestDisk: unsaved,
			Lost: fmt.Sprintf("the last session (started %s) ended without suspending (crash, kill or power loss): it resumes from its checkpoint %s (%s); the work since then is lost from memory",
				when(in.Session.Since), p.Manifest.ID, when(p.Manifest.Created))}, nil
	}
	if p, ok := sealedBy(in.Points, in.Session.Session); ok && p.Manifest.ID == latest.Manifest.ID && !p.IsCheckpoint() {
		return Plan{Resume: latest, Lost: fmt.Sprintf("the last session was cut short after its suspend point %s was sealed: nothing was lost", p.Manifest.ID)}, nil
	}
	if !unsaved {
		return Plan{Resume: latest}, nil
	}
	if !in.DiskHistory {
		return Plan{Reason: fmt.Sprintf("the last session ended without suspending (crash or power loss?): the disk has moved on since point %s, and the VMM plugin cannot keep that disk apart, so the point is not resumed (it is kept)", latest.Manifest.ID)}, nil
	}
	return Plan{Resume: latest, KeepLatestDisk: true,
		Lost: fmt.Sprintf("the last session (started %s) ended without suspending (crash, kill or power loss): the work since point %s (%s) is lost from memory",
			when(in.Session.Since), latest.Manifest.ID, when(latest.Manifest.Created))}, nil
}

// PrunePlan picks the points to remove so that at most keep memory points
// stay, oldest first; protected points, the newest memory point and the
// points another lists as unchecked stay whatever keep says. Disk points
// go only when disks is set.
func PrunePlan(pts []pad.Point, keep int, disks bool, protected ...string) []pad.Point {
	protected = append(protected, checkedWithOthers(pts)...)
	for i := len(pts) - 1; i >= 0; i-- {
		if !pts[i].IsDisk() {
			protected = append(protected, pts[i].Manifest.ID)
			break
		}
	}
	isProtected := func(id string) bool {
		for _, p := range protected {
			if p == id {
				return true
			}
		}
		return false
	}
	mem := 0
	for _, p := range pts {
		if !p.IsDisk() && !p.IsCheckpoint() {
			mem++
		}
	}
	var out []pad.Point
	for _, p := range pts { // oldest first
		switch {
		case isProtected(p.Manifest.ID), p.IsCheckpoint():
		case p.IsDisk():
			if disks {
				out = append(out, p)
			}
		case mem > keep:
			out = append(out, p)
			mem--
		}
	}
	return out
}

// CheckpointPrunePlan picks the checkpoints to remove so that at most
// keep stay, oldest first; the newest memory point (which a crash
// resumes) and protected points stay whatever keep says. Suspend points
// are PrunePlan's.
func CheckpointPrunePlan(pts []pad.Point, keep int, protected ...string) []pad.Point {
	protected = append(protected, checkedWithOthers(pts)...)
	newest := ""
	for i := len(pts) - 1; i >= 0 && newest == ""; i-- {
		if !pts[i].IsDisk() {
			newest = pts[i].Manifest.ID
		}
	}
	n := 0
	for _, p := range pts {
		if p.IsCheckpoint() {
			n++
		}
	}
	var out []pad.Point
	for _, p := range pts {
		if !p.IsCheckpoint() || p.Manifest.ID == newest || slices.Contains(protected, p.Manifest.ID) || n <= keep {
			continue
		}
		out = append(out, p)
		n--
	}
	return out
}

// checkedWithOthers are the points another point lists as unchecked
// (pad.Manifest.Unchecked): they stay while it does, since its resume
// checks them.
func checkedWithOthers(pts []pad.Point) []string {
	var out []string
	for _, p := range pts {
		out = append(out, p.Manifest.Unchecked...)
	}
	return out
}
