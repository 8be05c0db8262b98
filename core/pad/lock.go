package pad

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/soulpad/soulpad/sdk"
)

// LockFile is the pad's lock: one process at a time works on a pad. The
// lock is a flock(2) on this file, so the kernel releases it when its
// holder dies, whatever kills it; the file's content says who holds it.
// flock works on every local file system Linux mounts, FAT and exFAT
// included. A holder that ends cleanly empties the file; a non-empty file
// whose flock is free was left by a holder that died (here: taken over) or
// by a session on another host the pad was unplugged from (taken over
// when the pad is on a USB or other removable disk, which is in one PC
// at a time; otherwise refused until the user breaks it deliberately: the
// other session might still be writing, if the pad is a network share).
const LockFile = "lock"

// Holder is who holds a pad's lock.
type Holder struct {
	// Command is the soulpad command ("run", "backup", …).
	Command string    `json:"command"`
	PID     int       `json:"pid"`
	UID     int       `json:"uid"`
	Host    string    `json:"host"`
	HostID  string    `json:"host_id,omitempty"`
	BootID  string    `json:"boot_id,omitempty"`
	Since   time.Time `json:"since"`
	// Session is the session ID of a `soulpad run`.
	Session string `json:"session,omitempty"`
}

func (h Holder) String() string {
	s := fmt.Sprintf("`soulpad %s` (pid %d", Printable(h.Command), h.PID)
	if h.Session != "" {
		s += ", session " + Printable(h.Session)
	}
	return s + fmt.Sprintf(") on host %s since %s", Printable(h.Host), h.Since.Local().Format("2006-01-02 15:04:05"))
}

// Printable is s, read from a pad or a store (untrusted: a lock file, a
// manifest's host name), with control characters and bytes that are not
// UTF-8 as '?', so that printing it cannot drive a terminal.
func Printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}

// sameHost reports whether h was written on this host (any boot: a holder
// from before a reboot is dead too).
func (h Holder) sameHost(me Holder) bool {
	return h.Host == me.Host && h.HostID == me.HostID
}

// ErrPadLocked: another process holds the pad. errors.Is(err, sdk.ErrBusy)
// also holds.
var ErrPadLocked = errors.New("the pad is in use")

// LockedError says who holds the pad.
type LockedError struct {
	Pad    string
	Holder Holder
	// Live: the holder is a running process on this host. Otherwise the
	// lock was left by a session on another host (the pad was unplugged
	// mid-session, or that host died).
	Live bool
}

func (e *LockedError) Error() string {
	if e.Live {
		return fmt.Sprintf("pad %s is in use by %s; nothing was changed. Wait for it to end, or ask a running session to suspend with `soulpad suspend`",
			e.Pad, e.Holder)
	}
	return fmt.Sprintf("pad %s was in use by %s and that session never released it (the pad was unplugged mid-session, or that host went down); nothing was changed. If that session is gone, run `soulpad break-lock` to take the pad over: its last sealed suspend point will be resumed",
		e.Pad, e.Holder)
}

func (e *LockedError) Is(target error) bool { return target == ErrPadLocked || target == sdk.ErrBusy }

// Lock is a held pad lock.
type Lock struct {
	f    *os.File
	path string
	// Previous is the holder that died without releasing the pad (its
	// process is gone), if any: the caller says so.
	Previous *Holder
	me       Holder
}

// MachineID is this PC's /etc/machine-id ("" when it has none).
func MachineID() string {
	b, err := os.ReadFile("/etc/machine-id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// thisHost describes the calling process.
func thisHost(command string) Holder {
	h := Holder{Command: command, PID: os.Getpid(), UID: os.Getuid(), Since: time.Now().UTC()}
	h.Host, _ = os.Hostname()
	h.HostID = MachineID()
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		h.BootID = strings.TrimSpace(string(b))
	}
	return h
}

func openLockFile(padDir string) (*os.File, error) {
	path := filepath.Join(padDir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("pad %s: lock: %w", padDir, err)
	}
	return f, nil
}

func readHolder(f *os.File) (Holder, bool) {
	var h Holder
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<16))
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return h, false
	}
	if json.Unmarshal(b, &h) != nil {
		// A holder died while writing its record (a power cut): it is
		// gone, whoever it was.
		me := thisHost("?")
		return Holder{Command: "?", Host: me.Host, HostID: me.HostID}, true
	}
	return h, true
}

// LockPad takes the pad's lock for command, or fails with a *LockedError
// naming the holder. A lock left by a dead process on this host is taken
// over (Lock.Previous says by whom); one left by another host is refused
// unless breakForeign is set or the pad is on a removable disk (a USB
// disk is in one PC at a time: the other host's session ended when the
// pad was pulled out of it).
func LockPad(padDir, command string, breakForeign bool) (*Lock, error) {
	f, err := openLockFile(padDir)
	if err != nil {
		return nil, err
	}
	me := thisHost(command)
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			h, _ := readHolder(f)
			return nil, &LockedError{Pad: padDir, Holder: h, Live: true}
		}
		return nil, fmt.Errorf("pad %s: lock: %w", padDir, err)
	}
	l := &Lock{f: f, path: f.Name(), me: me}
	if prev, ok := readHolder(f); ok {
		if !prev.sameHost(me) && !breakForeign && !OnRemovableDisk(padDir) {
			f.Close()
			return nil, &LockedError{Pad: padDir, Holder: prev, Live: false}
		}
		l.Previous = &prev
	}
	if err := l.write(me); err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

func (l *Lock) write(h Holder) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("%s: %w", l.path, err)
	}
	if _, err := l.f.WriteAt(append(b, '\n'), 0); err != nil {
		return fmt.Errorf("%s: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("%s: %w", l.path, err)
	}
	return nil
}

// SetSession records the session ID in the holder record.
func (l *Lock) SetSession(id string) error {
	l.me.Session = id
	return l.write(l.me)
}

// Holder is the record this lock wrote.
func (l *Lock) Holder() Holder { return l.me }

// Release empties the record and lets go of the lock. Release on a
// released lock returns nil.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Truncate(0)
	if err == nil {
		err = l.f.Sync()
	}
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	cerr := l.f.Close()
	l.f = nil
	return errors.Join(err, cerr)
}

// LockState is what `soulpad status` shows of a pad's lock.
type LockState struct {
	// Held: a live process holds it now.
	Held bool `json:"held"`
	// Stale: a holder's record is there but nobody holds the lock (its
	// process died, or it ran on another host).
	Stale  bool    `json:"stale,omitempty"`
	Holder *Holder `json:"holder,omitempty"`
	// Foreign: the record was written on another host.
	Foreign bool `json:"foreign,omitempty"`
}

// PeekLock reports the pad's lock without taking it.
func PeekLock(padDir string) (LockState, error) {
	f, err := os.OpenFile(filepath.Join(padDir, LockFile), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return LockState{}, nil
	}
	if err != nil {
		return LockState{}, fmt.Errorf("pad %s: lock: %w", padDir, err)
	}
	defer f.Close()
	var st LockState
	if h, ok := readHolder(f); ok {
		st.Holder = &h
		st.Foreign = !h.sameHost(thisHost(""))
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		st.Held = true
		return st, nil
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	st.Stale = st.Holder != nil
	return st, nil
}

// BreakLock clears a lock record left by a session that is gone, and
// returns that record. A lock a live process holds is not broken.
func BreakLock(padDir string) (*Holder, error) {
	l, err := LockPad(padDir, "break-lock", true)
	if err != nil {
		return nil, err
	}
	prev := l.Previous
	return prev, l.Release()
}

// ClearLock empties the lock record of a pad nobody can be using (one
// just restored from a backup, which was taken under the backup's lock).
func ClearLock(padDir string) error {
	path := filepath.Join(padDir, LockFile)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		return fmt.Errorf("pad %s: lock: %w", padDir, err)
	}
	return nil
}
