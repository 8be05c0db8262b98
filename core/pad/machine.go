package pad

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/detect"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// Machine is a machine's directory inside the unlocked vault:
//
//	machines/<name>/
//	  machine.json       the spec
//	  session.json       whether a session is running on the latest disk
//	  points/<id>/       sealed suspend points (manifest.json last)
//	  points/.pending-*  a suspend point being written (never resumed)
type Machine struct {
	Dir  string
	Name string
}

// ManifestFile is the file that seals a suspend point.
const ManifestFile = "manifest.json"

const pendingPrefix = ".pending-"

// MachineIn returns the machine called name inside the plaintext directory.
func MachineIn(plaintextDir, name string) *Machine {
	return &Machine{Dir: filepath.Join(plaintextDir, "machines", name), Name: name}
}

// Exists reports whether the machine has been created.
func (m *Machine) Exists() bool {
	_, err := os.Stat(filepath.Join(m.Dir, "machine.json"))
	return err == nil
}

// Create writes the machine's spec; the machine must not exist.
func (m *Machine) Create(spec vmm.Spec) error {
	if m.Exists() {
		return fmt.Errorf("machine %s: %w", m.Name, sdk.ErrAlreadyExists)
	}
	if err := os.MkdirAll(m.PointsDir(), 0o700); err != nil {
		return fmt.Errorf("machine %s: %w", m.Name, err)
	}
	return m.WriteSpec(spec)
}

// WriteSpec replaces the machine's spec atomically.
func (m *Machine) WriteSpec(spec vmm.Spec) error {
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(m.Dir, "machine.json"), append(b, '\n'), 0o600)
}

// Spec reads the machine's spec.
func (m *Machine) Spec() (vmm.Spec, error) {
	var s vmm.Spec
	b, err := os.ReadFile(filepath.Join(m.Dir, "machine.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return s, fmt.Errorf("machine %s: no machine.json in the vault: %w", m.Name, sdk.ErrNotFound)
	}
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("machine %s: machine.json: %v: %w", m.Name, err, sdk.ErrCorrupt)
	}
	return s, nil
}

// PointsDir holds the suspend points.
func (m *Machine) PointsDir() string { return filepath.Join(m.Dir, "points") }

// Point kinds.
const (
	// KindMemory: memory and device state with the disk state they were
	// taken with; resuming it continues the running machine.
	KindMemory = "memory"
	// KindDisk: a disk state alone, kept when a session ended without
	// suspending (a crash) and an older point was resumed instead; booting
	// it is a cold boot of that disk.
	KindDisk = "disk"
)

// Manifest seals a suspend point. It is written last; a point without one
// is incomplete and is never resumed.
type Manifest struct {
	Format  int       `json:"format"`
	ID      string    `json:"id"`
	Machine string    `json:"machine"`
	Created time.Time `json:"created"`
	Files   []FileSum `json:"files"`
	// Kind is KindMemory (also when empty, as in older points) or KindDisk.
	Kind string `json:"kind,omitempty"`
	// Parent is the point the session that made this one resumed from;
	// empty after a cold boot.
	Parent string `json:"parent,omitempty"`
	// Session is the ID of the session that ran the machine.
	Session string `json:"session,omitempty"`
	// Generation numbers the sessions of a machine: each session's disk
	// state is a new generation; the point holds that generation's disk.
	Generation int `json:"generation,omitempty"`
	// SessionStarted is when that session started (for a disk point: the
	// work it holds was done between then and Created).
	SessionStarted time.Time `json:"session_started,omitempty"`
	// CPUModel is the guest CPU model the machine ran with.
	CPUModel string `json:"cpu_model"`
	// CPUFeatures are the host CPU flags the point needs to resume.
	CPUFeatures []string `json:"cpu_features,omitempty"`
	Accelerator string   `json:"accelerator"`
	// Description is the VMM plugin's exact machine description.
	Description string `json:"description"`
	// VMMMachine names the machine in a line for people, as the VMM
	// plugin said (vmm.SuspendResponse.Machine); empty when it did not.
	VMMMachine string             `json:"vmm_machine,omitempty"`
	VMM        PluginRef          `json:"vmm"`
	Host       detect.HostProfile `json:"host"`
	Spec       vmm.Spec           `json:"spec"`
	// Seconds spent writing the state, for status.
	SuspendSeconds float64 `json:"suspend_seconds,omitempty"`
	// Checkpoint: a memory point taken while the machine went on running
	// (session.checkpoint_minutes); resumed as any memory point, kept
	// apart by session.keep_checkpoints.
	Checkpoint bool `json:"checkpoint,omitempty"`
	// Unchecked lists the points this one's memory derives from whose
	// mapped memory had not passed its check when this one was sealed
	// (its session resumed from them and suspended before the check
	// finished): a resume of this point checks them too, and refuses it
	// when one of them is damaged.
	Unchecked []string `json:"unchecked,omitempty"`
}

// Point is a suspend point on disk.
type Point struct {
	Dir      string
	Manifest Manifest
}

// IsDisk reports whether the point holds a disk state alone.
func (p Point) IsDisk() bool { return p.Manifest.Kind == KindDisk }

// KindCheckpoint names a checkpoint (a memory point) in listings.
const KindCheckpoint = "checkpoint"

// IsCheckpoint: a memory point taken while the machine ran on.
func (p Point) IsCheckpoint() bool { return !p.IsDisk() && p.Manifest.Checkpoint }

// KindName is the point's kind, KindMemory for older points and
// KindCheckpoint for a checkpoint.
func (p Point) KindName() string {
	if p.IsCheckpoint() {
		return KindCheckpoint
	}
	if p.Manifest.Kind == "" {
		return KindMemory
	}
	return p.Manifest.Kind
}

// Memory modes of a point (Point.Memory): guest RAM mapped from a file
// the VMM plugin read on demand at resume, or streamed in with the
// device state.
const (
	MemoryMapped   = "mapped"
	MemoryStreamed = "streamed"
)

// Memory is how the VMM plugin said the point holds guest RAM (a file it
// maps, or a stream): "" for a disk point.
func (p Point) Memory() string {
	if p.IsDisk() {
		return ""
	}
	for _, f := range p.Manifest.Files {
		if f.Mapped {
			return MemoryMapped
		}
	}
	return MemoryStreamed
}

// Size is the total size of the point's files.
func (p Point) Size() int64 {
	var n int64
	for _, f := range p.Manifest.Files {
		n += f.Size
	}
	return n
}

// Points lists the sealed suspend points, oldest first. Directories
// without a readable manifest are skipped (they were never sealed).
func (m *Machine) Points() ([]Point, error) {
	ents, err := os.ReadDir(m.PointsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Point
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		dir := filepath.Join(m.PointsDir(), e.Name())
		b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
		if err != nil {
			continue
		}
		var man Manifest
		if json.Unmarshal(b, &man) != nil || man.ID != e.Name() {
			continue
		}
		out = append(out, Point{Dir: dir, Manifest: man})
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Manifest.Created.Before(out[k].Manifest.Created) })
	return out, nil
}

// Latest returns the newest sealed point with memory, or false.
func (m *Machine) Latest() (Point, bool, error) {
	pts, err := m.Points()
	if err != nil {
		return Point{}, false, err
	}
	for i := len(pts) - 1; i >= 0; i-- {
		if !pts[i].IsDisk() {
			return pts[i], true, nil
		}
	}
	return Point{}, false, nil
}

// FindPoint returns the sealed point with this ID (or a unique prefix of
// it), or an error wrapping sdk.ErrNotFound that lists the points.
func FindPoint(pts []Point, id string) (Point, error) {
	var found []Point
	for _, p := range pts {
		if p.Manifest.ID == id {
			return p, nil
		}
		if id != "" && strings.HasPrefix(p.Manifest.ID, id) {
			found = append(found, p)
		}
	}
	if len(found) == 1 {
		return found[0], nil
	}
	var ids []string
	for _, p := range pts {
		ids = append(ids, p.Manifest.ID)
	}
	list := "there are none"
	if len(ids) > 0 {
		list = "there are: " + strings.Join(ids, ", ")
	}
	if len(found) > 1 {
		return Point{}, &NoPointError{fmt.Sprintf("suspend point %q is ambiguous: %d points start with it (%s)", id, len(found), list)}
	}
	return Point{}, &NoPointError{fmt.Sprintf("no suspend point %q (%s; see `soulpad points`)", id, list)}
}

// NoPointError: a point named (--point, points rm) that is not there, or
// a prefix of more than one. It is an sdk.ErrNotFound, and a wrong
// argument to the command that named it.
type NoPointError struct{ msg string }

func (e *NoPointError) Error() string { return e.msg }
func (e *NoPointError) Unwrap() error { return sdk.ErrNotFound }

// RemovePoint removes a sealed point: first its manifest is renamed away
// (from then on the point does not exist, whatever happens next), then its
// files. A removal cut short leaves an unsealed directory that the next
// CleanPending removes.
func (m *Machine) RemovePoint(p Point) error {
	if filepath.Dir(p.Dir) != m.PointsDir() || p.Manifest.ID == "" {
		return fmt.Errorf("remove suspend point %s: not a point of machine %s", p.Dir, m.Name)
	}
	doomed := filepath.Join(m.PointsDir(), pendingPrefix+"rm-"+p.Manifest.ID)
	if err := os.Rename(p.Dir, doomed); err != nil {
		return fmt.Errorf("remove suspend point %s: %w", p.Manifest.ID, err)
	}
	if err := SyncDir(m.PointsDir()); err != nil {
		return err
	}
	if err := os.RemoveAll(doomed); err != nil {
		return fmt.Errorf("remove suspend point %s: %w", p.Manifest.ID, err)
	}
	return nil
}

// NextGeneration is one more than any generation the machine has used,
// from its session record and its points.
func NextGeneration(sess SessionState, pts []Point) int {
	g := sess.Generation
	for _, p := range pts {
		g = max(g, p.Manifest.Generation)
	}
	return g + 1
}

// Session states in session.json.
const (
	// SessionRunning: a session is (or was, if it crashed) running on the
	// disk; the disk has moved on from the latest suspend point.
	SessionRunning = "running"
	// SessionSuspended: the latest suspend point matches the disk.
	SessionSuspended = "suspended"
	// SessionStopped: the guest powered off; cold boot next time.
	SessionStopped = "stopped"
	// SessionNew: no session has run yet.
	SessionNew = "new"
)

// SessionState records what the disk is paired with.
type SessionState struct {
	State string `json:"state"`
	// Point is the point resumed (running) or sealed (suspended).
	Point string    `json:"point,omitempty"`
	Since time.Time `json:"since"`
	// Session is the ID of the session that wrote this state.
	Session string `json:"session,omitempty"`
	// Generation is that session's disk generation.
	Generation int `json:"generation,omitempty"`
	// Host is where that session ran.
	Host string `json:"host,omitempty"`
}

// Session reads session.json; a machine that never ran is "new".
func (m *Machine) Session() (SessionState, error) {
	var s SessionState
	b, err := os.ReadFile(filepath.Join(m.Dir, "session.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return SessionState{State: SessionNew}, nil
	}
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("machine %s: session.json: %v: %w", m.Name, err, sdk.ErrCorrupt)
	}
	return s, nil
}

// SetSession writes session.json atomically.
func (m *Machine) SetSession(s SessionState) error {
	if s.Since.IsZero() {
		s.Since = time.Now().UTC()
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(m.Dir, "session.json"), append(b, '\n'), 0o600)
}
