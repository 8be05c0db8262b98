package isr

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// What a copy-in replaces stays until the version is verified: a
// version refused at the check (the store's forgery) is undone, chunk by
// chunk, file by file, state and all, even after a second unverified
// copy-in on top; a verified one lets the kept bytes go. Keeping costs
// what was fetched, not a copy of the pad.
func TestACopyInIsUndoneUntilVerified(t *testing.T) {
	ctx := context.Background()
	st := s3Store(t)
	a := lockedPad(t, 4)
	if _, err := Checkout(ctx, st, a, "ida", "pc-a", time.Hour, false); err != nil {
		t.Fatal(err)
	}
	if _, err := Push(ctx, st, a, "ida", nil, nil); err != nil {
		t.Fatal(err)
	}
	mine := tree(t, a)
	// The store's versions 2 and 3, made from a copy: a changed chunk, a
	// shorter vault, a file gone and one new; then another chunk.
	c := filepath.Join(t.TempDir(), "pad")
	if out, err := exec.Command("cp", "-a", a, c).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	f, _ := os.OpenFile(filepath.Join(c, "vault"), os.O_WRONLY, 0)
	f.WriteAt([]byte("forged"), 1<<20+9)
	f.Truncate(3<<20 + 5)
	f.Close()
	os.Remove(filepath.Join(c, "notes/20261127T000000Z-a.jsonl"))
	write(t, c, "notes/20261203T000000Z-c.jsonl", []byte("{\"c\":1}\n"))
	if out, err := Push(ctx, st, c, "ida", nil, nil); err != nil || out.Seq != 2 {
		t.Fatalf("version 2: %+v, %v", out, err)
	}
	if _, err := Pull(ctx, st, a, "ida", 0, false, nil); err != nil {
		t.Fatal(err)
	}
	if tree(t, a) != tree(t, c) || !HasKept(a) {
		t.Fatalf("after the copy-in of version 2 the pad is not version 2 (kept: %v)", HasKept(a))
	}
	kept := dirSize(t, filepath.Join(a, keptDir))
	// A changed chunk (1 MiB), the cut tail (1 MiB and 772 bytes), the
	// new last chunk's 5 bytes, a small file: not the 4 MiB vault.
	if kept < 2<<20 || kept > 2<<20+64<<10 {
		t.Fatalf("the copy-in kept %d bytes; want what it replaced (a chunk, the cut tail, a small file), not a copy of the pad", kept)
	}
	f, _ = os.OpenFile(filepath.Join(c, "vault"), os.O_WRONLY, 0)
	f.WriteAt([]byte("again"), 2<<20+1)
	f.Close()
	if out, err := Push(ctx, st, c, "ida", nil, nil); err != nil || out.Seq != 3 {
		t.Fatalf("version 3: %+v, %v", out, err)
	}
	if _, err := Pull(ctx, st, a, "ida", 0, false, nil); err != nil {
		t.Fatal(err)
	}
	if tree(t, a) != tree(t, c) {
		t.Fatal("after the copy-in of version 3 the pad is not version 3")
	}
	// The check refuses them: the pad is its own version 1 again.
	seq, err := RestoreKept(a)
	if err != nil || seq != 1 || tree(t, a) != mine || HasKept(a) {
		t.Fatalf("RestoreKept = %d, %v (kept left: %v); want version 1, the tree as it was", seq, err, HasKept(a))
	}
	if s, err := LoadState(a); err != nil || s.Seq != 1 || s.Incomplete {
		t.Fatalf("the state after the undo: %+v, %v; want version 1, whole", s, err)
	}
	// A verified copy-in lets the kept bytes go.
	if _, err := Pull(ctx, st, a, "ida", 0, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := DiscardKept(a); err != nil || HasKept(a) || tree(t, a) != tree(t, c) {
		t.Fatalf("DiscardKept: %v (kept left: %v)", err, HasKept(a))
	}
	if seq, err := RestoreKept(a); err != nil || seq != 0 || tree(t, a) != tree(t, c) {
		t.Fatalf("RestoreKept with nothing kept = %d, %v; want nothing done", seq, err)
	}
}

// An undo cut short (no state.json: the copy-in died while keeping, and
// changed nothing yet) is dropped, not applied.
func TestAnUndoCutShortIsDropped(t *testing.T) {
	a := lockedPad(t, 1)
	mine := tree(t, a)
	part := filepath.Join(a, keptDir, "1")
	os.MkdirAll(part, 0o700)
	write(t, part, "0.undo", []byte("half of it"))
	if HasKept(a) {
		t.Fatal("an undo without its record counts as kept")
	}
	if seq, err := RestoreKept(a); err != nil || seq != 0 || tree(t, a) != mine {
		t.Fatalf("RestoreKept of a cut-short undo = %d, %v; want nothing done", seq, err)
	}
	if _, err := os.Stat(part); !os.IsNotExist(err) {
		t.Fatal("the cut-short undo was left")
	}
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// An undo file is the pad's own record, but a damaged one must not make
// the replay write outside the file's old size, or panic.
func FuzzReplay(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 'a', 'b', 'c', 'd'}, int64(16))
	f.Add([]byte{255, 255, 255, 255, 255, 255, 255, 127, 1, 0, 0, 0, 0, 0, 0, 0}, int64(8))
	f.Add([]byte("short"), int64(0))
	f.Fuzz(func(t *testing.T, undoBytes []byte, size int64) {
		if size < 0 || size > 1<<16 {
			return
		}
		dir := t.TempDir()
		undoPath, p := filepath.Join(dir, "0.undo"), filepath.Join(dir, "file")
		if err := os.WriteFile(undoPath, undoBytes, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, 1<<17), 0o600); err != nil {
			t.Fatal(err)
		}
		_ = replay(p, keptFile{Path: "file", Existed: true, Size: size, Mode: 0o600}, undoPath)
		if fi, err := os.Stat(p); err != nil || fi.Size() != size {
			t.Fatalf("after the replay the file has %v bytes, %v; want its old size %d", fi.Size(), err, size)
		}
	})
}
