package pad

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/vmm"
)

func TestCreateOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pad")
	p, err := Create(dir, Meta{Machine: "soul", Crypt: PluginRef{Name: "crypt-plain"}})
	if err != nil {
		t.Fatal(err)
	}
	q, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if q.Meta.ID != p.Meta.ID || q.Meta.Format != FormatVersion || q.VaultPath() != filepath.Join(dir, "vault") {
		t.Fatalf("reopened %+v; want %+v", q.Meta, p.Meta)
	}
	if _, err := Create(dir, Meta{}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("create over a pad = %v", err)
	}
	if _, err := Open(t.TempDir()); !errors.Is(err, ErrNotAPad) {
		t.Fatalf("open of a non-pad = %v; want ErrNotAPad", err)
	}
	if err := os.WriteFile(filepath.Join(dir, MetaFile), []byte(`{"format": 99}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "format version 99") {
		t.Fatalf("open of a newer pad = %v", err)
	}
}

func TestWriteFileAtomicLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.json")
	for _, s := range []string{"one", "two"} {
		if err := WriteFileAtomic(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(p)
	ents, _ := os.ReadDir(dir)
	if string(b) != "two" || len(ents) != 1 {
		t.Fatalf("content %q, %d entries; want \"two\" alone", b, len(ents))
	}
}

func TestSealVerifyAndPending(t *testing.T) {
	m := MachineIn(t.TempDir(), "soul")
	if err := m.Create(vmm.Spec{Name: "soul", MemoryMiB: 64}); err != nil {
		t.Fatal(err)
	}
	if err := m.Create(vmm.Spec{Name: "soul"}); !errors.Is(err, sdk.ErrAlreadyExists) {
		t.Fatalf("second create = %v", err)
	}
	pend, err := m.NewPending()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pend.Dir(), "state.bin"), []byte("memory and devices"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Until sealed, the point does not exist.
	if pts, _ := m.Points(); len(pts) != 0 {
		t.Fatal("an unsealed point is listed")
	}
	pt, err := pend.Seal([]string{"state.bin"}, Manifest{CPUModel: "portable"})
	if err != nil {
		t.Fatal(err)
	}
	if err := pt.Verify(); err != nil {
		t.Fatalf("fresh point: %v", err)
	}
	latest, ok, _ := m.Latest()
	if !ok || latest.Manifest.ID != pt.Manifest.ID || latest.Size() != int64(len("memory and devices")) {
		t.Fatalf("latest = %+v", latest)
	}
	// A flipped byte and a truncation are both caught, and named.
	f := filepath.Join(pt.Dir, "state.bin")
	_ = os.WriteFile(f, []byte("memory and devicez"), 0o600)
	if err := pt.Verify(); !errors.Is(err, sdk.ErrCorrupt) || !strings.Contains(err.Error(), "state.bin") {
		t.Fatalf("flipped byte: %v", err)
	}
	_ = os.WriteFile(f, []byte("memory"), 0o600)
	if err := pt.Verify(); !errors.Is(err, sdk.ErrCorrupt) || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("truncation: %v", err)
	}
	// Leftovers of an interrupted suspend are cleaned, sealed points kept.
	if _, err := m.NewPending(); err != nil {
		t.Fatal(err)
	}
	if n, err := m.CleanPending(); err != nil || n != 1 {
		t.Fatalf("CleanPending = %d, %v; want 1", n, err)
	}
	if pts, _ := m.Points(); len(pts) != 1 {
		t.Fatalf("%d points after cleaning; want 1", len(pts))
	}
	if _, err := pend.Seal([]string{"../escape"}, Manifest{}); err == nil {
		t.Fatal("a file name with .. was sealed")
	}
}

func TestJournalSkipsTornLine(t *testing.T) {
	dir := t.TempDir()
	j, err := NewJournal(dir, "s1")
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []string{"boot", "detect"} {
		if err := j.Append(Entry{Stage: st, Event: "end", DurationMS: 1.5}); err != nil {
			t.Fatal(err)
		}
	}
	f, _ := os.OpenFile(j.Path(), os.O_APPEND|os.O_WRONLY, 0)
	_, _ = f.WriteString(`{"time":"2026-01-01T00:00:00Z","sess`)
	f.Close()
	es, err := LastSession(dir)
	if err != nil || len(es) != 2 || es[1].Stage != "detect" || es[0].Session != "s1" {
		t.Fatalf("entries %+v, %v", es, err)
	}
}

// A checksum the VMM plugin gave is recorded without the file being read
// again (its size is still checked); Verify before resume reads it all.
func TestSealTakesThePluginsChecksum(t *testing.T) {
	pend := newPending(t)
	if err := os.WriteFile(filepath.Join(pend.Dir(), "memory.state"), []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrong := strings.Repeat("ab", 32)
	if _, err := pend.Seal([]string{"memory.state"}, Manifest{}, FileSum{Name: "memory.state", Size: 11, SHA256: wrong}); !errors.Is(err, sdk.ErrCorrupt) {
		t.Fatalf("a size the plugin did not write: %v", err)
	}
	pt, err := pend.Seal([]string{"memory.state"}, Manifest{}, FileSum{Name: "memory.state", Size: 10, SHA256: wrong, ChunkBytes: 4, ChunkSHA256: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := pt.Manifest.Files[0]; got.SHA256 != wrong || got.ChunkBytes != 4 {
		t.Fatalf("recorded %+v; want the plugin's sum", got)
	}
	if err := pt.Verify(); !errors.Is(err, sdk.ErrCorrupt) {
		t.Fatalf("Verify of a point whose sum does not match its bytes: %v", err)
	}
}

// A pad.json whose id or vault would steer paths outside the pad is
// refused as damaged.
func TestOpenRefusesSteeringFields(t *testing.T) {
	for _, meta := range []string{
		`{"format":1,"id":"../../tmp/x","vault":"vault"}`,
		`{"format":1,"id":"0123456789abcdef","vault":"../../etc"}`,
		`{"format":1,"id":"0123456789abcdef","vault":"/etc"}`,
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, MetaFile), []byte(meta), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "damaged") {
			t.Errorf("Open with %s: %v", meta, err)
		}
	}
}

func FuzzOpen(f *testing.F) {
	f.Add([]byte(`{"format":1,"id":"0123456789abcdef","vault":"vault","machine":"soul"}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, MetaFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := Open(dir)
		if err != nil {
			return
		}
		if !ValidID(p.Meta.ID) || !strings.HasPrefix(p.VaultPath(), p.Dir+string(filepath.Separator)) {
			t.Fatalf("opened a pad that steers paths: %+v", p.Meta)
		}
	})
}

// A file the VMM marks mapped is checksummed at seal like any other, and
// recorded as mapped: VerifyEager leaves it to VerifyMapped, and Verify
// checks everything.
func TestMappedFileVerifiedApart(t *testing.T) {
	pend := newPending(t)
	for name, b := range map[string]string{"state": "device", "ram": strings.Repeat("r", 1<<16)} {
		if err := os.WriteFile(filepath.Join(pend.Dir(), name), []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pt, err := pend.Seal([]string{"state", "ram"}, Manifest{}, FileSum{Name: "ram", Mapped: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range pt.Manifest.Files {
		if (f.Name == "ram") != f.Mapped || len(f.SHA256) != 64 {
			t.Fatalf("recorded %+v", f)
		}
	}
	if !pt.HasMapped() || pt.Verify() != nil || pt.VerifyEager() != nil || pt.VerifyMapped(context.Background()) != nil {
		t.Fatal("an intact point does not verify")
	}
	if err := os.WriteFile(filepath.Join(pt.Dir, "ram"), []byte(strings.Repeat("x", 1<<16)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := pt.VerifyEager(); err != nil {
		t.Fatalf("VerifyEager read the mapped file: %v", err)
	}
	for _, err := range []error{pt.VerifyMapped(context.Background()), pt.Verify()} {
		if !errors.Is(err, sdk.ErrCorrupt) || !strings.Contains(err.Error(), "ram") {
			t.Fatalf("a damaged mapped file: %v", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := pt.VerifyMapped(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("VerifyMapped after its context ended: %v", err)
	}
}

// newPending makes a machine "soul" in a fresh directory and a pending
// point in it.
func newPending(t *testing.T) *Pending {
	t.Helper()
	m := MachineIn(t.TempDir(), "soul")
	if err := m.Create(vmm.Spec{Name: "soul"}); err != nil {
		t.Fatal(err)
	}
	pend, err := m.NewPending()
	if err != nil {
		t.Fatal(err)
	}
	return pend
}

// A run that found no pad (and a store with no version yet) leaves a lock
// file and the store's sync state: `soulpad init` still makes the pad
// there; anything else in the directory is refused.
func TestCreateWhereARunFoundNoPad(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, LockFile), nil, 0o600)
	os.MkdirAll(filepath.Join(dir, StoreStateDir), 0o700)
	if _, err := Create(dir, Meta{}); err != nil {
		t.Fatalf("create beside a lock and a sync state: %v", err)
	}
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "photo.jpg"), nil, 0o600)
	if _, err := Create(other, Meta{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("create in a directory with a user's file = %v; want it refused", err)
	}
}

// A pad that is not there (the USB disk not plugged in) is told apart
// from a directory that holds no pad, and both say where was looked.
func TestMissingPadSaysWhereItLooked(t *testing.T) {
	gone := filepath.Join(t.TempDir(), "media", "usb")
	_, err := Open(gone)
	if !errors.Is(err, ErrNotAPad) || !strings.Contains(err.Error(), gone) || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "plugged in") {
		t.Fatalf("open of a missing directory = %v; want it to say the directory is missing, and where", err)
	}
	empty := t.TempDir()
	_, err = Open(empty)
	if !errors.Is(err, ErrNotAPad) || !strings.Contains(err.Error(), empty) || !strings.Contains(err.Error(), "no pad.json") {
		t.Fatalf("open of a directory without a pad = %v", err)
	}
}

// A lock file's strings come from whoever held the pad: printed, they
// cannot drive a terminal.
func TestHolderPrintsNoEscapes(t *testing.T) {
	h := Holder{Command: "run\x1b[2J", PID: 7, Session: "s\x07", Host: "pc\x1b]0;owned\x07\xff"}
	s := h.String()
	for _, c := range []byte(s) {
		if c < 0x20 || c == 0x7f {
			t.Fatalf("Holder.String() = %q keeps control byte %#x", s, c)
		}
	}
	if !strings.Contains(s, "pc?]0;owned??") {
		t.Fatalf("Holder.String() = %q; want the host shown with '?' for its control bytes", s)
	}
}

// The last session is the last run, not a maintenance command that came
// after it (points, backup, credential: their journals are "<command>-…").
func TestLastSessionIsTheLastRun(t *testing.T) {
	dir := t.TempDir()
	run, _ := NewJournal(dir, "a1b2c3d4")
	run.Append(Entry{Stage: "boot", Event: "end"})
	run.Append(Entry{Stage: "suspend", Event: "end"})
	time.Sleep(2 * time.Millisecond)
	pts, _ := NewJournal(dir, "points-e5f6a7b8")
	pts.Append(Entry{Stage: "unlock", Event: "end"})
	es, err := LastSession(dir)
	if err != nil || len(es) != 2 || es[0].Session != "a1b2c3d4" {
		t.Fatalf("LastSession = %+v, %v; want the run's two entries", es, err)
	}
}
