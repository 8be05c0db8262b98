// Package ownerpid marks scratch (a directory, a mount) with the pid of
// the process that owns it, so that a later process can tell scratch
// whose owner was killed before it could clean up.
package ownerpid

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Mark writes this process's pid to path.
func Mark(path string) error {
	return os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())), 0o600)
}

// Orphaned reports whether path names a process that is gone. A missing
// or unreadable mark is not an orphan: the scratch is not known to be
// anyone's.
func Orphaned(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
