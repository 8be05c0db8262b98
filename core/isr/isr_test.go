package isr

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/fstree"
	"github.com/soulpad/soulpad/internal/tests3"
	"github.com/soulpad/soulpad/plugins/store-s3/s3"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/sdktest"
	"github.com/soulpad/soulpad/sdk/store"
)

// s3Store is store-s3 on a real S3 server (SeaweedFS) for the test.
func s3Store(t *testing.T) store.Store {
	t.Helper()
	srv := tests3.Start(t)
	s := sdktest.InProcess(t, s3.New()).(store.Store)
	if _, err := s.Configure(context.Background(), sdk.ConfigureRequest{Config: srv.Config()}); err != nil {
		t.Fatal(err)
	}
	return s
}

// lockedPad makes a pad as a locked one looks: a vault of random bytes,
// a file that changes with it (notes/), a journal (which stays local),
// pad.json, the lock file.
func lockedPad(t *testing.T, vaultMiB int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pad")
	for _, d := range []string{"notes", "journal", "plugins"} {
		os.MkdirAll(filepath.Join(dir, d), 0o700)
	}
	vault := make([]byte, vaultMiB<<20+777)
	rand.Read(vault)
	write(t, dir, "vault", vault)
	write(t, dir, "pad.json", []byte(`{"id":"x"}`))
	write(t, dir, "notes/20261127T000000Z-a.jsonl", []byte("{}\n"))
	write(t, dir, "journal/20261127T000000Z-a.jsonl", []byte("{\"host\":\"pc-a\"}\n"))
	write(t, dir, "lock", []byte("held by a test"))
	return dir
}

func write(t *testing.T, dir, rel string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, rel), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// tree hashes what a copy carries: every path and file but the lock and
// the sync state.
func tree(t *testing.T, dir string) string {
	t.Helper()
	h, err := fstree.Hash(dir, skipped)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// The walk-up of ISR: A copies out, B (no pad) checks out and copies in,
// changes a little and copies out; A copies in only that.
func TestCopyOutAndInMoveOnlyWhatChanged(t *testing.T) {
	ctx := context.Background()
	st := s3Store(t)
	a := lockedPad(t, 8)
	b := filepath.Join(t.TempDir(), "empty", "pad")
	if _, err := Checkout(ctx, st, a, "alice", "pc-a", time.Hour, false); err != nil {
		t.Fatal(err)
	}
	out, err := Push(ctx, st, a, "alice", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out.Seq != 1 || out.Uploaded != out.PadBytes {
		t.Fatalf("first copy-out = %+v; want version 1 with every byte", out)
	}
	if _, err := Checkout(ctx, st, b, "alice", "pc-b", time.Hour, false); !errors.Is(err, sdk.ErrBusy) || !strings.Contains(err.Error(), "pc-a") {
		t.Fatalf("checkout on B while A holds the lease = %v; want busy, naming pc-a", err)
	}
	if err := Checkin(ctx, st, a, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := Checkout(ctx, st, b, "alice", "pc-b", time.Hour, false); err != nil {
		t.Fatal(err)
	}
	in, err := Pull(ctx, st, b, "alice", 0, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if in.Seq != 1 || in.Fetched != in.PadBytes || tree(t, b) != tree(t, a) {
		t.Fatalf("copy-in to an empty place = %+v; want all of version 1, the same tree", in)
	}
	// B works: one chunk of the vault and a new journal.
	f, _ := os.OpenFile(filepath.Join(b, "vault"), os.O_WRONLY, 0)
	f.WriteAt([]byte("changed"), 3<<20+5)
	f.Close()
	write(t, b, "notes/20261127T010000Z-b.jsonl", []byte("{\"b\":1}\n"))
	out, err = Push(ctx, st, b, "alice", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(1<<20 + len("{\"b\":1}\n")); out.Seq != 2 || out.Uploaded != want {
		t.Fatalf("second copy-out = %+v; want version 2 and %d bytes (one chunk and the journal)", out, want)
	}
	if err := Checkin(ctx, st, b, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := Checkout(ctx, st, a, "alice", "pc-a", time.Hour, false); err != nil {
		t.Fatal(err)
	}
	in, err = Pull(ctx, st, a, "alice", 0, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if in.Seq != 2 || in.Fetched != 1<<20+int64(len("{\"b\":1}\n")) || tree(t, a) != tree(t, b) {
		t.Fatalf("copy-in to A = %+v; want version 2 by one chunk and the journal", in)
	}
	if again, err := Pull(ctx, st, a, "alice", 0, false, nil); err != nil || again.Fetched != 0 || again.Hashed != 0 {
		t.Fatalf("a copy-in of a current pad = %+v, %v; want nothing fetched or read", again, err)
	}
	// Rollback: version 1 again, then forward.
	v1 := tree(t, b)
	if _, err := Pull(ctx, st, a, "alice", 1, false, nil); err != nil {
		t.Fatal(err)
	}
	if tree(t, a) == v1 {
		t.Fatal("a copy-in of version 1 left version 2's tree")
	}
	if _, err := os.Stat(filepath.Join(a, "notes/20261127T010000Z-b.jsonl")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("rolling back to version 1 kept a file only version 2 has")
	}
}

// A session while the store was out of reach leaves the pad ahead; if the
// store moved on meanwhile, neither side is overwritten.
func TestOfflineChangesAreKeptOrRefused(t *testing.T) {
	ctx := context.Background()
	st := s3Store(t)
	a := lockedPad(t, 2)
	Checkout(ctx, st, a, "bob", "pc-a", time.Hour, false)
	if _, err := Push(ctx, st, a, "bob", nil, nil); err != nil {
		t.Fatal(err)
	}
	write(t, a, "notes/offline.jsonl", []byte("{}\n"))
	in, err := Pull(ctx, st, a, "bob", 0, false, nil)
	if err != nil || !in.Ahead || in.Fetched != 0 {
		t.Fatalf("copy-in with local changes = %+v, %v; want Ahead, nothing fetched", in, err)
	}
	// Another PC makes version 2 (A's lease broken: it was away).
	b := filepath.Join(t.TempDir(), "pad")
	if _, err := Checkout(ctx, st, b, "bob", "pc-b", time.Hour, true); err != nil {
		t.Fatal(err)
	}
	if _, err := Pull(ctx, st, b, "bob", 0, false, nil); err != nil {
		t.Fatal(err)
	}
	write(t, b, "notes/b.jsonl", []byte("{}\n"))
	if out, err := Push(ctx, st, b, "bob", nil, nil); err != nil || out.Seq != 2 {
		t.Fatalf("B's copy-out = %+v, %v", out, err)
	}
	if _, err := Pull(ctx, st, a, "bob", 0, false, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("copy-in to A with its own changes and a newer version = %v; want ErrConflict", err)
	}
	if _, err := Push(ctx, st, a, "bob", nil, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("copy-out from A behind the store = %v; want ErrConflict", err)
	}
	if _, err := os.Stat(filepath.Join(a, "notes/offline.jsonl")); err != nil {
		t.Fatal("a refused copy lost the pad's own change")
	}
	// Deliberately: the store's version wins.
	if _, err := Pull(ctx, st, a, "bob", 0, true, nil); err != nil {
		t.Fatal(err)
	}
	if tree(t, a) != tree(t, b) {
		t.Fatal("a forced copy-in did not make A version 2")
	}
}

// A copy-in cut short leaves a pad that says so: it is neither copied out
// nor trusted, and the next copy-in compares every chunk and repairs it.
func TestCutShortCopyInIsRedone(t *testing.T) {
	ctx := context.Background()
	st := s3Store(t)
	a := lockedPad(t, 3)
	Checkout(ctx, st, a, "carol", "pc-a", time.Hour, false)
	if _, err := Push(ctx, st, a, "carol", nil, nil); err != nil {
		t.Fatal(err)
	}
	want := tree(t, a)
	state, _ := LoadState(a)
	state.Incomplete = true
	state.Save(a)
	f, _ := os.OpenFile(filepath.Join(a, "vault"), os.O_WRONLY, 0)
	f.WriteAt([]byte("half"), 2<<20)
	f.Close()
	if _, err := Push(ctx, st, a, "carol", nil, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("copy-out of a cut-short copy-in = %v; want ErrConflict", err)
	}
	in, err := Pull(ctx, st, a, "carol", 0, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if in.Fetched != 1<<20 || tree(t, a) != want {
		t.Fatalf("the repairing copy-in = %+v; want the one damaged chunk back", in)
	}
}

// gc removes the chunks no version names, and nothing a version needs.
func TestGCKeepsWhatVersionsNeed(t *testing.T) {
	ctx := context.Background()
	st := s3Store(t)
	a := lockedPad(t, 2)
	Checkout(ctx, st, a, "dave", "pc-a", time.Hour, false)
	Push(ctx, st, a, "dave", nil, nil)
	write(t, a, "vault", []byte("all new"))
	if out, err := Push(ctx, st, a, "dave", nil, nil); err != nil || out.Seq != 2 {
		t.Fatal(out, err)
	}
	if n, err := GC(ctx, st, "dave"); err != nil || n != 0 {
		t.Fatalf("gc with both versions = %d, %v; want nothing removed", n, err)
	}
	st.Delete(ctx, store.DeleteRequest{Name: "dave", Versions: []uint64{1}})
	if n, err := GC(ctx, st, "dave"); err != nil || n != 3 {
		t.Fatalf("gc after dropping version 1 = %d, %v; want its 3 vault chunks", n, err)
	}
	b := filepath.Join(t.TempDir(), "pad")
	Checkin(ctx, st, a, "dave")
	Checkout(ctx, st, b, "dave", "pc-b", time.Hour, false)
	if _, err := Pull(ctx, st, b, "dave", 0, false, nil); err != nil || tree(t, b) != tree(t, a) {
		t.Fatalf("version 2 after gc: %v", err)
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"format":1,"name":"alice","seq":1,"chunk_bytes":1048576,"files":[{"path":"vault","size":3,"mode":384,"chunks":["` + strings.Repeat("a", 64) + `"]}]}`))
	f.Add([]byte(`{"format":1,"name":"alice","seq":1,"chunk_bytes":4,"dirs":["journal"],"files":[{"path":"../x","size":0,"chunks":[]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		for _, fl := range m.Files {
			if checkPath(fl.Path) != nil || filepath.IsAbs(fl.Path) || strings.HasPrefix(filepath.Clean(fl.Path), "..") {
				t.Fatalf("accepted a path outside the pad: %q", fl.Path)
			}
			if int64(len(fl.Chunks)) != chunksOf(fl.Size, m.ChunkBytes) {
				t.Fatal("accepted a chunk count that does not fit the size")
			}
		}
	})
}

// A copy-out cut short (killed, or the network went) leaves chunks on the
// store but no version; the next copy-out sends only the rest.
func TestCutShortCopyOutResumes(t *testing.T) {
	ctx := context.Background()
	st := s3Store(t)
	a := lockedPad(t, 6)
	Checkout(ctx, st, a, "erin", "pc-a", time.Hour, false)
	local, _, _, err := Scan(ctx, a, DefaultChunkBytes, nil)
	if err != nil {
		t.Fatal(err)
	}
	// What the cut-short copy-out had sent: the vault's first 4 chunks.
	var sent []store.Piece
	var sentBytes int64
	for _, l := range local {
		if l.Path == "vault" {
			for i, c := range l.Chunks[:4] {
				sent = append(sent, store.Piece{Sum: c, Path: filepath.Join(a, "vault"), Offset: int64(i) << 20, Length: 1 << 20})
				sentBytes += 1 << 20
			}
		}
	}
	if _, err := st.Push(ctx, store.TransferRequest{Name: "erin", Pieces: sent}); err != nil {
		t.Fatal(err)
	}
	if vs, _ := st.Versions(ctx, store.VersionsRequest{Name: "erin"}); len(vs.Versions) != 0 {
		t.Fatal("chunks alone made a version")
	}
	out, err := Push(ctx, st, a, "erin", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out.Seq != 1 || out.Uploaded != out.PadBytes-sentBytes {
		t.Fatalf("the resumed copy-out = %+v; want version 1 sending all but the %d bytes already there", out, sentBytes)
	}
}

// The store never plants anything to run: the pad's plugins/ neither
// goes out nor comes in (and a manifest that lists it is refused), and
// no file comes in executable, whatever mode its manifest says.
func TestCopyInPlantsNothingToRun(t *testing.T) {
	ctx := context.Background()
	st := s3Store(t)
	a := lockedPad(t, 1)
	write(t, a, "plugins/crypt-x", []byte("#!/bin/sh\necho gotcha\n"))
	write(t, a, "tool.sh", []byte("#!/bin/sh\n"))
	for _, p := range []string{"plugins/crypt-x", "tool.sh"} {
		if err := os.Chmod(filepath.Join(a, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Checkout(ctx, st, a, "carol", "pc-a", time.Hour, false); err != nil {
		t.Fatal(err)
	}
	if _, err := Push(ctx, st, a, "carol", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := Checkin(ctx, st, a, "carol"); err != nil {
		t.Fatal(err)
	}
	b := filepath.Join(t.TempDir(), "pc-b", "pad")
	if _, err := Checkout(ctx, st, b, "carol", "pc-b", time.Hour, false); err != nil {
		t.Fatal(err)
	}
	if _, err := Pull(ctx, st, b, "carol", 0, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(b, "plugins", "crypt-x")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the pad's plugin came in through the store: %v", err)
	}
	// Nor does the store learn hosts: the journal stays on each pad, and a
	// version's manifest names no host.
	if _, err := os.Stat(filepath.Join(b, "journal", "20261127T000000Z-a.jsonl")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the pad's journal went through the store: %v", err)
	}
	mb, err := st.GetVersion(ctx, store.GetVersionRequest{Name: "carol", Seq: 1})
	if err != nil {
		t.Fatal(err)
	}
	if man, err := ParseManifest(mb.Manifest); err != nil || man.Host != "" || strings.Contains(string(mb.Manifest), "pc-a") {
		t.Fatalf("the version's manifest names a host: %v\n%s", err, mb.Manifest)
	}
	fi, err := os.Stat(filepath.Join(b, "tool.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o111 != 0 {
		t.Fatalf("tool.sh came in with mode %v; want no execute bit", fi.Mode().Perm())
	}
	manifest := func(p string) []byte {
		return []byte(`{"format":1,"name":"carol","seq":1,"chunk_bytes":1048576,"files":[{"path":"` + p + `","size":0,"mode":493,"chunks":[]}]}`)
	}
	if _, err := ParseManifest(manifest("tool.sh")); err != nil {
		t.Fatalf("a manifest listing tool.sh: %v", err)
	}
	for _, p := range []string{"plugins/crypt-x", "plugins"} {
		if _, err := ParseManifest(manifest(p)); err == nil {
			t.Errorf("a manifest listing %s was accepted", p)
		}
	}
}

// A rollback by hand (copy in an older version) is the user's choice: the
// pad then runs, and its copy-out becomes the newest version instead of a
// conflict with the version it rolled back from.
func TestRollbackBecomesTheNextVersion(t *testing.T) {
	ctx := context.Background()
	st := s3Store(t)
	a := lockedPad(t, 1)
	if _, err := Checkout(ctx, st, a, "dave", "pc-a", time.Hour, false); err != nil {
		t.Fatal(err)
	}
	if _, err := Push(ctx, st, a, "dave", nil, nil); err != nil {
		t.Fatal(err)
	}
	v1 := tree(t, a)
	write(t, a, "notes/20261127T020000Z-v2.jsonl", []byte("{\"v\":2}\n"))
	if out, err := Push(ctx, st, a, "dave", nil, nil); err != nil || out.Seq != 2 {
		t.Fatalf("version 2: %+v, %v", out, err)
	}
	if _, err := Pull(ctx, st, a, "dave", 1, false, nil); err != nil {
		t.Fatalf("copy in version 1: %v", err)
	}
	if tree(t, a) != v1 {
		t.Fatal("the rollback did not bring version 1 back")
	}
	// Without a change, and after the session changed the pad.
	out, err := Push(ctx, st, a, "dave", nil, nil)
	if err != nil || out.Seq != 3 {
		t.Fatalf("copy-out after the rollback = %+v, %v; want version 3", out, err)
	}
	if _, err := Pull(ctx, st, a, "dave", 1, false, nil); err != nil {
		t.Fatal(err)
	}
	write(t, a, "notes/20261127T030000Z-after.jsonl", []byte("{\"after\":1}\n"))
	if res, err := Pull(ctx, st, a, "dave", 0, false, nil); err != nil || !res.Ahead {
		t.Fatalf("a copy-in of a rolled-back pad with changes = %+v, %v; want it ahead (its changes kept)", res, err)
	}
	if out, err = Push(ctx, st, a, "dave", nil, nil); err != nil || out.Seq != 4 {
		t.Fatalf("copy-out of the rolled-back pad's changes = %+v, %v; want version 4", out, err)
	}
	// A store that moved on meanwhile is still a conflict.
	b := filepath.Join(t.TempDir(), "pc-b", "pad")
	if err := Checkin(ctx, st, a, "dave"); err != nil {
		t.Fatal(err)
	}
	if _, err := Checkout(ctx, st, b, "dave", "pc-b", time.Hour, false); err != nil {
		t.Fatal(err)
	}
	if _, err := Pull(ctx, st, b, "dave", 0, false, nil); err != nil {
		t.Fatal(err)
	}
	write(t, b, "notes/20261127T040000Z-b.jsonl", []byte("{\"b\":1}\n"))
	if out, err := Push(ctx, st, b, "dave", nil, nil); err != nil || out.Seq != 5 {
		t.Fatalf("B's copy-out = %+v, %v", out, err)
	}
	if err := Checkin(ctx, st, b, "dave"); err != nil {
		t.Fatal(err)
	}
	if _, err := Checkout(ctx, st, a, "dave", "pc-a", time.Hour, false); err != nil {
		t.Fatal(err)
	}
	write(t, a, "notes/20261127T050000Z-a.jsonl", []byte("{\"a\":1}\n"))
	if _, err := Push(ctx, st, a, "dave", nil, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("A's copy-out after B's version 5: %v; want a conflict", err)
	}
}

// A store that hides the newest version (or all of them) is caught
// before anything of the pad is replaced; going back on purpose, by
// number, still works.
func TestStoreGoingBackwardsIsRefused(t *testing.T) {
	ctx := context.Background()
	st := s3Store(t)
	a := lockedPad(t, 1)
	if _, err := Checkout(ctx, st, a, "erin", "pc-a", time.Hour, false); err != nil {
		t.Fatal(err)
	}
	if _, err := Push(ctx, st, a, "erin", nil, nil); err != nil {
		t.Fatal(err)
	}
	write(t, a, "notes/v2", []byte("work of version 2"))
	if out, err := Push(ctx, st, a, "erin", nil, nil); err != nil || out.Seq != 2 {
		t.Fatalf("version 2: %+v, %v", out, err)
	}
	before := tree(t, a)
	if _, err := st.Delete(ctx, store.DeleteRequest{Name: "erin", Versions: []uint64{2}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Pull(ctx, st, a, "erin", 0, false, nil); !errors.Is(err, ErrStoreBehind) || !strings.Contains(err.Error(), "went backwards") {
		t.Fatalf("copy-in from a store that hid version 2: %v; want ErrStoreBehind", err)
	}
	if _, err := Pull(ctx, st, a, "erin", 0, true, nil); !errors.Is(err, ErrStoreBehind) {
		t.Fatalf("--force does not take the store's word either: %v", err)
	}
	if tree(t, a) != before {
		t.Fatal("the pad changed on the word of a store that went backwards")
	}
	if _, err := st.Delete(ctx, store.DeleteRequest{Name: "erin", Versions: []uint64{1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Pull(ctx, st, a, "erin", 0, false, nil); !errors.Is(err, ErrStoreBehind) {
		t.Fatalf("copy-in from a store with no version left: %v; want ErrStoreBehind", err)
	}
	if tree(t, a) != before {
		t.Fatal("the pad changed on the word of a store that lost every version")
	}
}

// A sealed version vouches for its number, its files and its chunks: a
// manifest changed in any of them, relabelled, or stripped of its seal
// once the vault seals, fails; one from before seals passes only while
// the vault has never sealed.
func TestSealCatchesForgeries(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	m := Manifest{Format: ManifestFormat, Name: "fay", Seq: 4, Parent: 3, ChunkBytes: DefaultChunkBytes,
		Files: []File{{Path: "vault", Size: 3, Chunks: []string{strings.Repeat("a", 64)}}}}
	m.Sign(key)
	if err := m.Verify(key, SealRecord{Sealed: true}); err != nil {
		t.Fatalf("a sealed manifest: %v", err)
	}
	for name, forge := range map[string]func(m *Manifest){
		"relabelled": func(m *Manifest) { m.Seq = 9 },
		"a chunk":    func(m *Manifest) { m.Files[0].Chunks = []string{strings.Repeat("b", 64)} },
		"no file":    func(m *Manifest) { m.Files = nil },
		"stripped":   func(m *Manifest) { m.Seal = "" },
		"other key":  func(m *Manifest) { m.Sign(bytes.Repeat([]byte{8}, 32)) },
	} {
		f := m
		f.Files = append([]File(nil), m.Files...)
		forge(&f)
		if err := f.Verify(key, SealRecord{Sealed: true}); !errors.Is(err, ErrUnsealed) {
			t.Errorf("%s: %v; want ErrUnsealed", name, err)
		}
	}
	old := m
	old.Seal = ""
	if err := old.Verify(key, SealRecord{}); err != nil {
		t.Fatalf("a version from before seals, in a vault that never sealed: %v", err)
	}
}

// The lease names the pad bound to the PC: a copy of the pad taken to
// another PC (its sync state and holder identifier with it) is another
// holder there, refused while the first PC holds the lease; once that
// lease lapses unrenewed, the copy takes it over, and the first PC can
// neither renew it nor copy out.
func TestLeaseIsBoundToThePCAndLapses(t *testing.T) {
	ctx := context.Background()
	st := s3Store(t)
	a := lockedPad(t, 2)
	if _, err := Checkout(ctx, st, a, "frank", "pc-a", 3*time.Second, false); err != nil {
		t.Fatal(err)
	}
	stateA, err := LoadState(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := stateA.Save(a); err != nil { // the holder identifier, kept
		t.Fatal(err)
	}
	copyB := filepath.Join(t.TempDir(), "pad")
	if out, err := exec.Command("cp", "-a", a, copyB).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	thisPC := hostID
	defer func() { hostID = thisPC }()
	hostID = func() string { return "another-pc" }
	stateB, err := LoadState(copyB)
	if err != nil || stateB.Holder != stateA.Holder {
		t.Fatalf("the copy's state %+v, %v; want the same holder identifier as A's", stateB, err)
	}
	if _, err := Checkout(ctx, st, copyB, "frank", "pc-b", time.Hour, false); !errors.Is(err, sdk.ErrBusy) || !strings.Contains(err.Error(), "pc-a") {
		t.Fatalf("the copy's checkout on another PC while A holds the lease = %v; want busy, naming pc-a", err)
	}
	time.Sleep(4 * time.Second) // A is gone: no renewal
	res, err := Checkout(ctx, st, copyB, "frank", "pc-b", time.Hour, false)
	if err != nil || res.Replaced == nil || res.Replaced.Host != "pc-a" {
		t.Fatalf("checkout after A's lease lapsed = %+v, %v; want B's, replacing pc-a's", res, err)
	}
	hostID = thisPC // back on A
	if err := RenewLease(ctx, st, a, "frank", "pc-a", time.Now(), time.Hour); !errors.Is(err, sdk.ErrBusy) {
		t.Fatalf("A renewing after B took over = %v; want busy", err)
	}
	if _, err := Push(ctx, st, a, "frank", nil, nil); !errors.Is(err, sdk.ErrBusy) {
		t.Fatalf("A copying out after B took over = %v; want busy", err)
	}
}
