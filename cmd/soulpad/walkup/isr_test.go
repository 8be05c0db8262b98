package walkup

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/fstree"
	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/internal/testcli"
	"github.com/soulpad/soulpad/internal/tests3"
	"github.com/soulpad/soulpad/plugins/store-s3/s3"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/sdktest"
	"github.com/soulpad/soulpad/sdk/store"
)

var copiedIn = regexp.MustCompile(`copied in ([0-9.]+ [KMG]?i?B) of ([0-9.]+ [KMG]?i?B)`)

// Internet Suspend/Resume as users walk it: PC A works and suspends, and
// the pad goes to the store; PC B, with no pad, checks it out, copies it
// in and resumes where A left off; a third place is refused while B holds
// the lease; A, back, copies in only what B changed.
func TestISRWalkUpAcrossPCs(t *testing.T) {
	srv := tests3.Start(t)
	testbin.Build(t, "plugins/store-s3")
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1", "crypt-gocryptfs")
	withStore(t, e, srv, "alice")
	padA := e.Pad
	// Nothing on the store and no pad: run says what to do, and init then
	// makes the pad in that place.
	if out, errOut, code := e.Run(t, "run"); code == 0 || !strings.Contains(out+errOut, "make one with `soulpad init`") {
		t.Fatalf("run with no pad and an empty store: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	ticksA, out := e.Session(t, 3)
	if !strings.Contains(out, "a new pad: its first version is copied out at the end") || !strings.Contains(out, "copied out version 1") {
		t.Fatalf("A's first session did not copy the new pad out:\n%s", out)
	}

	// PC B: nothing here but the config.
	padB := filepath.Join(t.TempDir(), "pc-b", "pad")
	e.Pad = padB
	t.Setenv("SOULPAD_PAD_PATH", padB)
	_, buf, done := e.StartRun(t)
	if !strings.Contains(buf.String(), "version 1: copied in") {
		t.Fatalf("B did not copy version 1 in:\n%s", buf.String())
	}
	vs := e.WaitCounter(t, 1)
	if vs[0] <= ticksA[len(ticksA)-1] {
		t.Fatalf("on B the counter printed %d first; A had reached %d: it must continue", vs[0], ticksA[len(ticksA)-1])
	}
	// A third place while B holds the lease.
	c := e
	c.Pad = filepath.Join(t.TempDir(), "pc-c", "pad")
	t.Setenv("SOULPAD_PAD_PATH", c.Pad)
	cout, cerr, code := c.Run(t, "run")
	if code != 3 || !strings.Contains(cout+cerr, "checked out by") {
		t.Fatalf("a run elsewhere while B holds the lease: exit %d\n%s%s", code, cout, cerr)
	}
	t.Setenv("SOULPAD_PAD_PATH", padB)
	ticksB := e.WaitCounter(t, len(vs)+2)
	if o, eo, code := e.Run(t, "suspend"); code != 0 {
		t.Fatalf("suspend on B: %s %s", o, eo)
	}
	testcli.Wait(t, done, buf)
	if !strings.Contains(buf.String(), "copied out version 2") {
		t.Fatalf("B did not copy out version 2:\n%s", buf.String())
	}
	js, _, _ := e.Run(t, "store", "versions", "--json")
	var list struct {
		Versions []struct {
			Version uint64 `json:"version"`
			Local   bool   `json:"local"`
		} `json:"versions"`
	}
	if err := json.Unmarshal([]byte(js), &list); err != nil || len(list.Versions) != 2 || !list.Versions[1].Local {
		t.Fatalf("store versions --json on B: %v\n%s", err, js)
	}

	// Back on A: only what B changed comes in.
	e.Pad = padA
	t.Setenv("SOULPAD_PAD_PATH", padA)
	ticksA2, out := e.Session(t, 2)
	m := copiedIn.FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "version 2: copied in") {
		t.Fatalf("A did not copy version 2 in:\n%s", out)
	}
	if fetched, total := parseSize(m[1]), parseSize(m[2]); fetched <= 0 || fetched*2 > total {
		t.Fatalf("A copied in %s of %s; want only what B changed (well under half)", m[1], m[2])
	}
	if ticksA2[0] <= ticksB[len(ticksB)-1] {
		t.Fatalf("back on A the counter printed %d first; B had reached %d", ticksA2[0], ticksB[len(ticksB)-1])
	}
}

func parseSize(s string) float64 {
	f := strings.Fields(s)
	n, _ := strconv.ParseFloat(f[0], 64)
	switch f[1] {
	case "KiB":
		n *= 1 << 10
	case "MiB":
		n *= 1 << 20
	case "GiB":
		n *= 1 << 30
	}
	return n
}

// The store's steps by hand: push copies the pad out (once), pull makes
// a place that had no pad the store's version, gc keeps what a version
// uses; each takes the pad's lock and the store's lease and gives both
// back, and push with no pad changes nothing.
func TestStoreCommandsByHand(t *testing.T) {
	srv := tests3.Start(t)
	testbin.Build(t, "plugins/store-s3")
	e := testcli.Setup(t)
	withStore(t, e, srv, "bob")

	if out, errOut, code := e.Run(t, "store", "push"); code == 0 || !strings.Contains(errOut, "no pad") {
		t.Fatalf("push with no pad: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(e.Pad); err == nil {
		t.Fatalf("push with no pad made %s", e.Pad)
	}
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	if out, errOut, code := e.Run(t, "store", "push"); code != 0 || !strings.Contains(out, "copied out version 1 of bob") {
		t.Fatalf("push: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := e.Run(t, "store", "push"); code != 0 || !strings.Contains(out, "the store has the pad already") {
		t.Fatalf("a second push: exit %d\n%s%s", code, out, errOut)
	}
	want, err := os.ReadFile(filepath.Join(e.Pad, "pad.json"))
	if err != nil {
		t.Fatal(err)
	}

	// Another place with no pad.
	b := e
	b.Pad = filepath.Join(t.TempDir(), "pc-b", "pad")
	t.Setenv("SOULPAD_PAD_PATH", b.Pad)
	if out, errOut, code := b.Run(t, "store", "pull"); code != 0 || !strings.Contains(out, "the pad is version 1 of bob") {
		t.Fatalf("pull into an empty place: exit %d\n%s%s", code, out, errOut)
	}
	if got, err := os.ReadFile(filepath.Join(b.Pad, "pad.json")); err != nil || string(got) != string(want) {
		t.Fatalf("the pulled pad's pad.json = %q, %v; want %q", got, err, want)
	}
	if out, errOut, code := b.Run(t, "store", "gc", "--keep", "1"); code != 0 || !strings.Contains(out, "removed 0 chunks no version uses") {
		t.Fatalf("gc: exit %d\n%s%s", code, out, errOut)
	}
	// The lease went back each time: the first place pushes again.
	t.Setenv("SOULPAD_PAD_PATH", e.Pad)
	if out, errOut, code := e.Run(t, "store", "push"); code != 0 {
		t.Fatalf("push after B's pull: exit %d\n%s%s", code, out, errOut)
	}
	// A run holds the pad: the store's steps wait their turn.
	_, buf, done := e.StartRun(t)
	if out, errOut, code := e.Run(t, "store", "push"); code != 3 {
		t.Fatalf("push while a run holds the pad: exit %d; want 3\n%s%s", code, out, errOut)
	}
	e.Run(t, "suspend")
	testcli.Wait(t, done, buf)
}

// A lying store, as a user meets it: PC A's sealed version 1 is replayed
// by the store as version 2 (anyone holding the store's credentials can
// write that). PC B, with no pad, copies it in; once the vault is open
// the run refuses it, saying what the store did, and nothing resumes.
// The genuine version says so in the table.
func TestForgedVersionIsRefusedAfterUnlock(t *testing.T) {
	srv := tests3.Start(t)
	e := firstVersion(t, srv, "gus")

	// A genuine copy-in says the seal is there.
	b := e
	b.Pad = filepath.Join(t.TempDir(), "pc-b", "pad")
	t.Setenv("SOULPAD_PAD_PATH", b.Pad)
	_, buf, done := b.StartRun(t)
	if !strings.Contains(buf.String(), "version 1 carries this vault's seal") {
		t.Fatalf("B's copy-in of version 1 did not check its seal:\n%s", buf.String())
	}
	b.Run(t, "suspend")
	testcli.Wait(t, done, buf)

	// The store replays version 1 as version 3.
	st := sdktest.InProcess(t, s3.New()).(store.Store)
	ctx := context.Background()
	if _, err := st.Configure(ctx, sdk.ConfigureRequest{Config: srv.Config()}); err != nil {
		t.Fatal(err)
	}
	v1, err := st.GetVersion(ctx, store.GetVersionRequest{Name: "gus", Seq: 1})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(v1.Manifest, &m); err != nil || m["seal"] == nil {
		t.Fatalf("version 1's manifest is not sealed: %v\n%s", err, v1.Manifest)
	}
	m["seq"], m["parent"] = 3, 2
	forged, _ := json.Marshal(m)
	if _, err := st.Acquire(ctx, store.AcquireRequest{Name: "gus", Lease: store.Lease{Holder: "the-store", Host: "the-store"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutVersion(ctx, store.PutVersionRequest{Name: "gus", Seq: 3, Manifest: forged, Holder: "the-store"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Release(ctx, store.ReleaseRequest{Name: "gus", Holder: "the-store"}); err != nil {
		t.Fatal(err)
	}
	c := e
	c.Pad = filepath.Join(t.TempDir(), "pc-c", "pad")
	t.Setenv("SOULPAD_PAD_PATH", c.Pad)
	out, errOut, code := c.Run(t, "run")
	if code == 0 || !strings.Contains(out+errOut, "does not carry this vault's seal") || strings.Contains(out, "resumed ") {
		t.Fatalf("a run on a replayed version: exit %d\n%s%s", code, out, errOut)
	}
	// Nor is the forgery laundered: no version is made from it.
	vs, err := st.Versions(ctx, store.VersionsRequest{Name: "gus"})
	if err != nil || len(vs.Versions) != 3 || strings.Contains(out, "copy-out") {
		t.Fatalf("after the refused run the store has %d versions (want 3: none made from the forgery), %v\n%s", len(vs.Versions), err, out)
	}

	// B holds version 2 and is offered the replay too: the copy-in
	// replaces B's files on the store's word, the check refuses it, and
	// what it replaced is put back: B holds its own version 2 again.
	t.Setenv("SOULPAD_PAD_PATH", b.Pad)
	synced := func(rel string) bool {
		return rel == "journal" || strings.HasPrefix(rel, "journal/") || rel == ".store" || strings.HasPrefix(rel, ".store/") || rel == "lock"
	}
	before, err := fstree.Hash(b.Pad, synced)
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code = b.Run(t, "run")
	if code == 0 || !strings.Contains(out+errOut, "does not carry this vault's seal") || !strings.Contains(out+errOut, "the refused copy-in was undone: the pad holds its own version 2 again") {
		t.Fatalf("a run of B (version 2) on a replayed version: exit %d\n%s%s", code, out, errOut)
	}
	if after, err := fstree.Hash(b.Pad, synced); err != nil || after != before {
		t.Fatalf("after the refused copy-in B's pad is not what it was (%v)", err)
	}
}

// firstVersion makes a pad (the test VMM's) on a store as name, and a
// session on it copies out version 1.
func firstVersion(t *testing.T, srv tests3.Server, name string) testcli.Env {
	t.Helper()
	testbin.Build(t, "plugins/store-s3")
	e := testcli.Setup(t)
	withStore(t, e, srv, name)
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	_, buf, done := e.StartRun(t)
	e.Run(t, "suspend")
	testcli.Wait(t, done, buf)
	if !strings.Contains(buf.String(), "copied out version 1") {
		t.Fatalf("A did not copy out version 1:\n%s", buf.String())
	}
	return e
}

// withStore adds the store (plugins.store, store.name and the S3 server's
// block) to e's config.
func withStore(t *testing.T, e testcli.Env, srv tests3.Server, name string) {
	t.Helper()
	f, err := os.OpenFile(e.Cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "store { name = %q }\n%s", name, srv.HCL())
	f.Close()
	t.Setenv("SOULPAD_PLUGINS_STORE", "store-s3")
}

// A live session keeps its lease by renewing it (a lease of 3 seconds,
// renewed every second, keeps another PC out for as long as the session
// runs); a session killed outright stops renewing, and once its lease
// lapses another PC takes the pad over without a break, and says whose
// lease it took.
func TestLeaseLapsesWhenItsSessionDies(t *testing.T) {
	t.Setenv("SOULPAD_STORE_LEASE_MINUTES", "0.05")
	e := firstVersion(t, tests3.Start(t), "hank")
	run, _, killed := e.StartRun(t)
	time.Sleep(5 * time.Second) // past the lease's term: renewals keep it
	b := e
	b.Pad = filepath.Join(t.TempDir(), "pc-b", "pad")
	t.Setenv("SOULPAD_PAD_PATH", b.Pad)
	out, errOut, code := b.Run(t, "run")
	if code != 3 || !strings.Contains(out+errOut, "checked out by") {
		t.Fatalf("a run elsewhere while A's live session renews its lease: exit %d\n%s%s", code, out, errOut)
	}
	// A dies without a word: no suspend, no check-in, no renewal.
	syscall.Kill(-run.Process.Pid, syscall.SIGKILL)
	run.Process.Kill()
	<-killed
	time.Sleep(4 * time.Second)
	_, buf, done := b.StartRun(t)
	if !strings.Contains(buf.String(), "took over the lease of hank from") || !strings.Contains(buf.String(), "version 1: copied in") {
		t.Fatalf("B's run after A's lease lapsed:\n%s", buf.String())
	}
	if o, eo, code := b.Run(t, "suspend"); code != 0 {
		t.Fatalf("suspend on B: %s %s", o, eo)
	}
	testcli.Wait(t, done, buf)
	if !strings.Contains(buf.String(), "copied out version 2") {
		t.Fatalf("B did not copy out version 2:\n%s", buf.String())
	}
}
