// Package storetest is the conformance suite every store plugin passes:
// the lease is exclusive, versions are create-only, chunks go out and come
// back byte for byte, and damaged data is refused.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/store"
)

// Run runs every check against s, which is configured already. Each
// check uses a pad name of its own, so one store serves them all.
func Run(t *testing.T, s store.Store) {
	checks := []struct {
		name string
		fn   func(*testing.T, store.Store, string)
	}{
		{"LeaseIsExclusive", leaseIsExclusive},
		{"LeaseLapsesUnlessRenewed", leaseLapses},
		{"ReleaseAfterATakeoverIsRefused", releaseAfterTakeover},
		{"VersionsAreCreateOnlyAndNeedTheLease", versionsAreCreateOnly},
		{"ChunksRoundTrip", chunksRoundTrip},
		{"DamagedDataIsRefused", damagedDataIsRefused},
		{"BadNamesAreRefused", badNames},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) { c.fn(t, s, Name(t)) })
	}
}

// Name is a fresh pad name for a test.
func Name(t testing.TB) string {
	b := make([]byte, 6)
	rand.Read(b)
	return "test-" + hex.EncodeToString(b)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func lease(holder string) store.Lease {
	return store.Lease{Holder: holder, Host: "host-" + holder, Acquired: time.Now().UTC().Truncate(time.Second)}
}

func leaseIsExclusive(t *testing.T, s store.Store, name string) {
	c := ctx(t)
	if _, err := s.Acquire(c, store.AcquireRequest{Name: name, Lease: lease("a")}); err != nil {
		t.Fatalf("first Acquire: %v", err)
	}
	if _, err := s.Acquire(c, store.AcquireRequest{Name: name, Lease: lease("b")}); !errors.Is(err, sdk.ErrBusy) {
		t.Fatalf("Acquire by a second holder = %v; want ErrBusy", err)
	}
	if out, err := s.Acquire(c, store.AcquireRequest{Name: name, Lease: lease("a")}); err != nil || out.Lease.Holder != "a" {
		t.Fatalf("Acquire again by the holder = %+v, %v; want its lease", out, err)
	}
	if _, err := s.Release(c, store.ReleaseRequest{Name: name, Holder: "b"}); !errors.Is(err, sdk.ErrBusy) {
		t.Fatalf("Release by another holder = %v; want ErrBusy", err)
	}
	if _, err := s.Release(c, store.ReleaseRequest{Name: name, Holder: "a"}); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if _, err := s.Acquire(c, store.AcquireRequest{Name: name, Lease: lease("b")}); err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	out, err := s.Acquire(c, store.AcquireRequest{Name: name, Lease: lease("a"), Break: true})
	if err != nil {
		t.Fatalf("Acquire with Break: %v", err)
	}
	if out.Lease.Holder != "a" || out.Replaced == nil || out.Replaced.Holder != "b" || out.Replaced.Host != "host-b" {
		t.Fatalf("Acquire with Break = %+v; want a's lease, replacing b's", out)
	}
	if _, err := s.Acquire(c, store.AcquireRequest{Name: name, Lease: lease("b")}); !errors.Is(err, sdk.ErrBusy) {
		t.Fatalf("b after the break = %v; want ErrBusy", err)
	}
	// Two holders racing for a free lease: exactly one wins.
	s.Release(c, store.ReleaseRequest{Name: name, Holder: "a"})
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			_, err := s.Acquire(c, store.AcquireRequest{Name: name, Lease: lease(fmt.Sprint("racer", i))})
			errs <- err
		}()
	}
	won := 0
	for range 8 {
		switch err := <-errs; {
		case err == nil:
			won++
		case !errors.Is(err, sdk.ErrBusy):
			t.Fatalf("a racer got %v; want ErrBusy or the lease", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d racers got the lease; want exactly 1", won)
	}
}

// leaseLapses: a lease renewed by its holder (Acquire again, a later
// Expires) keeps others out; one that lapsed is another holder's to take
// without a break, and its old holder can then neither renew it nor make
// a version.
func leaseLapses(t *testing.T, s store.Store, name string) {
	c := ctx(t)
	a := lease("a")
	a.Expires = time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if _, err := s.Acquire(c, store.AcquireRequest{Name: name, Lease: a}); err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	a.Expires = a.Expires.Add(time.Hour)
	out, err := s.Acquire(c, store.AcquireRequest{Name: name, Lease: a})
	if err != nil || !out.Lease.Expires.Equal(a.Expires) || out.Replaced != nil {
		t.Fatalf("renewal = %+v, %v; want the lease until %s", out, err, a.Expires)
	}
	if _, err := s.Acquire(c, store.AcquireRequest{Name: name, Lease: lease("b")}); !errors.Is(err, sdk.ErrBusy) {
		t.Fatalf("Acquire of a renewed lease by another holder = %v; want ErrBusy", err)
	}
	// The holder is gone: its last renewal lapsed.
	a.Expires = time.Now().Add(-time.Second).UTC().Truncate(time.Second)
	if _, err := s.Acquire(c, store.AcquireRequest{Name: name, Lease: a}); err != nil {
		t.Fatalf("renewal: %v", err)
	}
	out, err = s.Acquire(c, store.AcquireRequest{Name: name, Lease: lease("b")})
	if err != nil || out.Lease.Holder != "b" || out.Replaced == nil || out.Replaced.Holder != "a" || !out.Replaced.Expires.Equal(a.Expires) {
		t.Fatalf("Acquire of a lapsed lease = %+v, %v; want b's lease, replacing a's lapsed one", out, err)
	}
	a.Expires = time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if _, err := s.Acquire(c, store.AcquireRequest{Name: name, Lease: a}); !errors.Is(err, sdk.ErrBusy) {
		t.Fatalf("the old holder renewing after the takeover = %v; want ErrBusy", err)
	}
	if _, err := s.PutVersion(c, store.PutVersionRequest{Name: name, Seq: 1, Manifest: []byte("{}"), Holder: "a"}); !errors.Is(err, sdk.ErrBusy) {
		t.Fatalf("a version by the old holder after the takeover = %v; want ErrBusy", err)
	}
}

// releaseAfterTakeover: a holder whose lease was broken cannot release
// the new holder's (the release is conditional on the lease it read),
// and the new holder goes on making versions.
func releaseAfterTakeover(t *testing.T, s store.Store, name string) {
	c := ctx(t)
	if _, err := s.Acquire(c, store.AcquireRequest{Name: name, Lease: lease("a")}); err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if _, err := s.Acquire(c, store.AcquireRequest{Name: name, Lease: lease("b"), Break: true}); err != nil {
		t.Fatalf("Acquire with Break: %v", err)
	}
	if _, err := s.Release(c, store.ReleaseRequest{Name: name, Holder: "a"}); !errors.Is(err, sdk.ErrBusy) {
		t.Fatalf("Release by the holder whose lease was broken = %v; want ErrBusy", err)
	}
	if _, err := s.PutVersion(c, store.PutVersionRequest{Name: name, Seq: 1, Manifest: []byte("{}"), Holder: "b"}); err != nil {
		t.Fatalf("a version by the new holder after the old one tried to release: %v", err)
	}
	// Racing releases and takeovers: whoever ends up holding the lease
	// is the one the store names, and a released lease is free.
	if _, err := s.Release(c, store.ReleaseRequest{Name: name, Holder: "b"}); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if _, err := s.Release(c, store.ReleaseRequest{Name: name, Holder: "b"}); err != nil {
		t.Fatalf("a second Release: %v", err)
	}
	if _, err := s.PutVersion(c, store.PutVersionRequest{Name: name, Seq: 2, Manifest: []byte("{}"), Holder: "b"}); !errors.Is(err, sdk.ErrBusy) {
		t.Fatalf("a version after the release = %v; want ErrBusy", err)
	}
	if out, err := s.Acquire(c, store.AcquireRequest{Name: name, Lease: lease("c")}); err != nil || out.Replaced != nil {
		t.Fatalf("Acquire of a released lease = %+v, %v; want it, replacing nothing", out, err)
	}
}

func versionsAreCreateOnly(t *testing.T, s store.Store, name string) {
	c := ctx(t)
	if _, err := s.PutVersion(c, store.PutVersionRequest{Name: name, Seq: 1, Manifest: []byte(`{"v":1}`), Holder: "a"}); !errors.Is(err, sdk.ErrBusy) {
		t.Fatalf("PutVersion without the lease = %v; want ErrBusy", err)
	}
	if _, err := s.Acquire(c, store.AcquireRequest{Name: name, Lease: lease("a")}); err != nil {
		t.Fatal(err)
	}
	if out, err := s.Versions(c, store.VersionsRequest{Name: name}); err != nil || len(out.Versions) != 0 {
		t.Fatalf("Versions of a new pad = %+v, %v; want none", out, err)
	}
	for _, seq := range []uint64{2, 1} {
		if _, err := s.PutVersion(c, store.PutVersionRequest{Name: name, Seq: seq, Manifest: []byte(fmt.Sprintf(`{"v":%d}`, seq)), Holder: "a"}); err != nil {
			t.Fatalf("PutVersion %d: %v", seq, err)
		}
	}
	if _, err := s.PutVersion(c, store.PutVersionRequest{Name: name, Seq: 2, Manifest: []byte(`{"v":"again"}`), Holder: "a"}); !errors.Is(err, sdk.ErrAlreadyExists) {
		t.Fatalf("PutVersion over an existing version = %v; want ErrAlreadyExists", err)
	}
	out, err := s.Versions(c, store.VersionsRequest{Name: name})
	if err != nil || len(out.Versions) != 2 || out.Versions[0].Seq != 1 || out.Versions[1].Seq != 2 {
		t.Fatalf("Versions = %+v, %v; want 1 and 2, oldest first", out, err)
	}
	if out.Versions[1].ManifestBytes != uint64(len(`{"v":2}`)) || time.Since(out.Versions[1].Created) > time.Hour {
		t.Fatalf("version 2 = %+v; want its manifest's size and a recent time", out.Versions[1])
	}
	got, err := s.GetVersion(c, store.GetVersionRequest{Name: name, Seq: 2})
	if err != nil || string(got.Manifest) != `{"v":2}` {
		t.Fatalf("GetVersion 2 = %q, %v; want the first manifest written", got.Manifest, err)
	}
	if _, err := s.GetVersion(c, store.GetVersionRequest{Name: name, Seq: 9}); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("GetVersion of a missing version = %v; want ErrNotFound", err)
	}
	if _, err := s.Delete(c, store.DeleteRequest{Name: name, Versions: []uint64{1}}); err != nil {
		t.Fatal(err)
	}
	if out, _ := s.Versions(c, store.VersionsRequest{Name: name}); len(out.Versions) != 1 || out.Versions[0].Seq != 2 {
		t.Fatalf("after deleting version 1: %+v", out)
	}
}

// pieces cuts a file of random bytes into pieces of size n.
func pieces(t *testing.T, size, n int) (string, []byte, []store.Piece) {
	data := make([]byte, size)
	rand.Read(data)
	path := filepath.Join(t.TempDir(), "vault")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var ps []store.Piece
	for off := 0; off < size; off += n {
		end := min(off+n, size)
		s := sha256.Sum256(data[off:end])
		ps = append(ps, store.Piece{Sum: hex.EncodeToString(s[:]), Path: path, Offset: int64(off), Length: int64(end - off)})
	}
	return path, data, ps
}

func sums(ps []store.Piece) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Sum)
	}
	return out
}

func chunksRoundTrip(t *testing.T, s store.Store, name string) {
	c := ctx(t)
	_, data, ps := pieces(t, 5<<20+12345, 1<<20)
	miss, err := s.Missing(c, store.MissingRequest{Name: name, Sums: sums(ps)})
	if err != nil || len(miss.Sums) != len(ps) {
		t.Fatalf("Missing on an empty store = %d of %d, %v; want all", len(miss.Sums), len(ps), err)
	}
	var last store.Progress
	out, err := s.Push(c, store.TransferRequest{Name: name, Pieces: ps[:4], OnProgress: func(p store.Progress) { last = p }})
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	if out.BytesDone != 4<<20 || out.PiecesDone != 4 || last.BytesTotal != 4<<20 {
		t.Fatalf("Push reported %+v (last progress %+v); want 4 pieces, 4 MiB", out, last)
	}
	miss, err = s.Missing(c, store.MissingRequest{Name: name, Sums: sums(ps)})
	if err != nil || !slices.Equal(miss.Sums, sums(ps[4:])) {
		t.Fatalf("Missing after pushing 4 = %v, %v; want the last 2", miss.Sums, err)
	}
	if _, err := s.Push(c, store.TransferRequest{Name: name, Pieces: ps[4:]}); err != nil {
		t.Fatal(err)
	}
	all, err := s.Chunks(c, store.ChunksRequest{Name: name})
	if want := slices.Sorted(slices.Values(sums(ps))); err != nil || !slices.Equal(all.Sums, want) {
		t.Fatalf("Chunks = %v, %v; want %v", all.Sums, err, want)
	}
	// Back into another file, at the same offsets.
	dst := filepath.Join(t.TempDir(), "copy")
	if err := os.WriteFile(dst, make([]byte, len(data)), 0o600); err != nil {
		t.Fatal(err)
	}
	back := slices.Clone(ps)
	for i := range back {
		back[i].Path = dst
	}
	if _, err := s.Fetch(c, store.TransferRequest{Name: name, Pieces: back}); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Fatal("the fetched file differs from the pushed one")
	}
	if _, err := s.Delete(c, store.DeleteRequest{Name: name, Sums: sums(ps[:2])}); err != nil {
		t.Fatal(err)
	}
	if miss, _ := s.Missing(c, store.MissingRequest{Name: name, Sums: sums(ps)}); !slices.Equal(miss.Sums, sums(ps[:2])) {
		t.Fatalf("Missing after deleting 2 = %v; want those 2", miss.Sums)
	}
}

func damagedDataIsRefused(t *testing.T, s store.Store, name string) {
	c := ctx(t)
	path, data, ps := pieces(t, 2<<20, 1<<20)
	// The file changed after it was summed: Push refuses.
	bad := ps[0]
	bad.Sum = ps[1].Sum
	if _, err := s.Push(c, store.TransferRequest{Name: name, Pieces: []store.Piece{bad}}); !errors.Is(err, sdk.ErrCorrupt) {
		t.Fatalf("Push of bytes that do not match their sum = %v; want ErrCorrupt", err)
	}
	if _, err := s.Push(c, store.TransferRequest{Name: name, Pieces: ps}); err != nil {
		t.Fatal(err)
	}
	// A chunk that does not give the bytes asked for: Fetch refuses and
	// writes nothing.
	before, _ := os.ReadFile(path)
	short := ps[0]
	short.Length = 4096
	if _, err := s.Fetch(c, store.TransferRequest{Name: name, Pieces: []store.Piece{short}}); !errors.Is(err, sdk.ErrCorrupt) {
		t.Fatalf("Fetch of a piece whose bytes do not match its sum = %v; want ErrCorrupt", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) || !bytes.Equal(after, data) {
		t.Fatal("a refused Fetch wrote into the file")
	}
	gone := ps[0]
	gone.Sum = hex.EncodeToString(make([]byte, 32))
	if _, err := s.Fetch(c, store.TransferRequest{Name: name, Pieces: []store.Piece{gone}}); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("Fetch of a chunk the store lacks = %v; want ErrNotFound", err)
	}
}

func badNames(t *testing.T, s store.Store, _ string) {
	c := ctx(t)
	for _, name := range []string{"", "../etc", "Alice", "a/b", string(make([]byte, 70))} {
		if _, err := s.Versions(c, store.VersionsRequest{Name: name}); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("Versions(%q) = %v; want ErrInvalidArgument", name, err)
		}
	}
	_, _, ps := pieces(t, 100, 100)
	ps[0].Path = "relative/path"
	if _, err := s.Push(c, store.TransferRequest{Name: "ok", Pieces: ps}); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("Push of a relative path = %v; want ErrInvalidArgument", err)
	}
}
