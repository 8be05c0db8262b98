package control

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const id = "0123456789abcdef"

func withBase(t *testing.T) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("the runtime directory checks here are written for root (/run/soulpad)")
	}
	dir := filepath.Join(t.TempDir(), "soulpad")
	old := dirFor
	dirFor = func() string { return dir }
	t.Cleanup(func() { dirFor = old })
	return dir
}

func TestListenAndSend(t *testing.T) {
	dir := withBase(t)
	t.Setenv("TMPDIR", t.TempDir())
	srv, err := Listen(id, func(r Request) Response { return Response{OK: true, Stage: "run", Message: r.Command} })
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	fi, err := os.Stat(filepath.Join(dir, id+".sock"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v; want mode 0600", fi, err)
	}
	// Another TMPDIR finds the same session.
	t.Setenv("TMPDIR", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := Send(ctx, id, Request{Command: "status"})
	if err != nil || !r.OK || r.Message != "status" {
		t.Fatalf("Send: %+v %v", r, err)
	}
	if _, err := Listen(id, nil); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("a second Listen: %v", err)
	}
}

// Another local user who made the directory first (open to all, or
// theirs) cannot stand in for the session: Listen and Send refuse it.
func TestForeignDirectoryIsRefused(t *testing.T) {
	dir := withBase(t)
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(id, nil); err == nil || !strings.Contains(err.Error(), "another user") {
		t.Fatalf("Listen in a directory of nobody's: %v", err)
	}
	if _, err := Send(context.Background(), id, Request{Command: "console"}); err == nil {
		t.Fatal("Send trusted a directory of nobody's")
	}
	if err := os.Chown(dir, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(id, nil); err == nil || !strings.Contains(err.Error(), "open to others") {
		t.Fatalf("Listen in a directory open to all: %v", err)
	}
	os.Remove(dir)
	if err := os.Symlink(t.TempDir(), dir); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(id, nil); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("Listen through a symlink: %v", err)
	}
}

func TestBadIDIsRefused(t *testing.T) {
	withBase(t)
	for _, bad := range []string{"../../etc/x", "", "0123456789ABCDEF", "0123456789abcdef0"} {
		if _, err := Listen(bad, nil); err == nil {
			t.Errorf("Listen(%q) accepted", bad)
		}
		if _, err := Send(context.Background(), bad, Request{}); err == nil {
			t.Errorf("Send(%q) accepted", bad)
		}
	}
}

// A socket left by a session killed outright is removed by the next
// Listen; a live one is left alone.
func TestStaleSocketsAreSwept(t *testing.T) {
	dir := withBase(t)
	if err := ownDir(dir); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "fedcba9876543210.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // as a kill -9 leaves it: the file, nobody behind it
	live, err := Listen("00000000000000aa", func(Request) Response { return Response{OK: true} })
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	srv, err := Listen(id, func(Request) Response { return Response{OK: true} })
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := os.Stat(stale); err == nil {
		t.Error("the stale socket is still there")
	}
	if _, err := os.Stat(SocketPath("00000000000000aa")); err != nil {
		t.Errorf("a live session's socket was removed: %v", err)
	}
}
