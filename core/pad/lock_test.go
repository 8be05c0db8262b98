package pad

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/sdk"
)

// A helper process: holds the pad's lock until killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("SOULPAD_TEST_HOLD_LOCK"); dir != "" {
		if _, err := LockPad(dir, "run", false); err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(2)
		}
		os.Stdout.WriteString("held\n")
		select {}
	}
	os.Exit(m.Run())
}

func holdInChild(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), "SOULPAD_TEST_HOLD_LOCK="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	buf := make([]byte, 5)
	if _, err := out.Read(buf); err != nil || string(buf) != "held\n" {
		t.Fatalf("the child did not take the lock: %q %v", buf, err)
	}
	return cmd
}

func TestLockOnePadOneHolder(t *testing.T) {
	dir := t.TempDir()
	child := holdInChild(t, dir)

	_, err := LockPad(dir, "backup", false)
	var le *LockedError
	if !errors.As(err, &le) || !le.Live || !errors.Is(err, ErrPadLocked) || !errors.Is(err, sdk.ErrBusy) {
		t.Fatalf("second holder: %v; want a live LockedError", err)
	}
	if le.Holder.PID != child.Process.Pid || le.Holder.Command != "run" || !strings.Contains(err.Error(), "soulpad run") {
		t.Fatalf("the refusal does not name the holder: %v (%+v)", err, le.Holder)
	}
	if st, _ := PeekLock(dir); !st.Held || st.Holder == nil || st.Holder.PID != child.Process.Pid {
		t.Fatalf("PeekLock while held: %+v", st)
	}
	if _, err := BreakLock(dir); !errors.Is(err, ErrPadLocked) {
		t.Fatalf("break-lock broke a live holder's lock: %v", err)
	}

	// kill -9: the kernel lets go, the next holder takes over and is told.
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	if st, _ := PeekLock(dir); st.Held || !st.Stale || st.Foreign {
		t.Fatalf("PeekLock after the holder died: %+v", st)
	}
	l, err := LockPad(dir, "run", false)
	if err != nil {
		t.Fatalf("after the holder died: %v", err)
	}
	if l.Previous == nil || l.Previous.PID != child.Process.Pid {
		t.Fatalf("the dead holder is not reported: %+v", l.Previous)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatalf("a second release: %v", err)
	}
	if st, _ := PeekLock(dir); st.Held || st.Stale || st.Holder != nil {
		t.Fatalf("after release: %+v", st)
	}
}

func TestLockLeftByAnotherHostNeedsBreaking(t *testing.T) {
	dir := t.TempDir()
	rec := `{"command":"run","pid":4242,"host":"walkup-pc-7","host_id":"0123","since":"2026-11-27T14:02:00Z","session":"abcd1234"}`
	if err := os.WriteFile(filepath.Join(dir, LockFile), []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LockPad(dir, "run", false)
	var le *LockedError
	if !errors.As(err, &le) || le.Live || !strings.Contains(err.Error(), "walkup-pc-7") || !strings.Contains(err.Error(), "soulpad break-lock") {
		t.Fatalf("a lock left by another host: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, LockFile)); string(b) != rec {
		t.Fatal("the refusal changed the lock record")
	}
	if st, _ := PeekLock(dir); st.Held || !st.Stale || !st.Foreign {
		t.Fatalf("PeekLock: %+v", st)
	}
	prev, err := BreakLock(dir)
	if err != nil || prev == nil || prev.Host != "walkup-pc-7" {
		t.Fatalf("break-lock: %+v %v", prev, err)
	}
	l, err := LockPad(dir, "run", false)
	if err != nil || l.Previous != nil {
		t.Fatalf("after break-lock: %+v %v", l, err)
	}
	_ = l.Release()
}

// A record damaged by a power cut mid-write does not block the pad.
func TestDamagedLockRecordIsTakenOver(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, LockFile), []byte(`{"command":"ru`), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := LockPad(dir, "run", false)
	if err != nil {
		t.Fatalf("damaged record: %v", err)
	}
	defer l.Release()
	if l.Previous == nil {
		t.Fatal("the damaged record is not reported")
	}
	if l.Holder().Since.After(time.Now()) {
		t.Fatal("holder time in the future")
	}
}

// The lock file must not be a symlink planted to make soulpad write
// elsewhere.
func TestLockRefusesASymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(target, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, LockFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := LockPad(dir, "run", false); err == nil {
		t.Fatal("a symlinked lock file was followed")
	}
	if b, _ := os.ReadFile(target); string(b) != "keep me" {
		t.Fatal("the symlink's target was changed")
	}
}

func FuzzReadHolder(f *testing.F) {
	f.Add([]byte(`{"command":"run","pid":1,"host":"h","since":"2026-11-27T14:02:00Z"}`))
	f.Add([]byte(``))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "lock")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		h, ok := readHolder(fh)
		if !ok && strings.TrimSpace(string(b)) != "" {
			t.Fatalf("a non-empty record %q read as no holder", b)
		}
		_ = h.String()
	})
}
