// Package mountinfo reads /proc/self/mountinfo: where things are mounted,
// with what file system type, from what source.
package mountinfo

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Mount is one line of mountinfo.
type Mount struct {
	// Point is where it is mounted.
	Point string
	// FSType is the file system type ("ext4", "fuse.gocryptfs").
	FSType string
	// Source is the mounted device or, for FUSE, what the daemon named.
	Source string
}

// Mounts lists this process's mounts; nil if mountinfo is unreadable.
func Mounts() []Mount {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	return Parse(string(b))
}

// Parse parses mountinfo text; malformed lines are skipped.
func Parse(text string) []Mount {
	var ms []Mount
	for _, l := range strings.Split(text, "\n") {
		left, right, ok := strings.Cut(l, " - ")
		lf, rf := strings.Fields(left), strings.Fields(right)
		if !ok || len(lf) < 5 || len(rf) < 2 {
			continue
		}
		ms = append(ms, Mount{Point: Unescape(lf[4]), FSType: rf[0], Source: Unescape(rf[1])})
	}
	return ms
}

// IsMountPoint reports whether dir is a mount point.
func IsMountPoint(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for _, m := range Mounts() {
		if m.Point == abs {
			return true
		}
	}
	return false
}

// MountedUnder reports whether anything is mounted at or below dir.
func MountedUnder(dir string) bool {
	for _, m := range Mounts() {
		if m.Point == dir || strings.HasPrefix(m.Point, dir+"/") {
			return true
		}
	}
	return false
}

// Unescape undoes mountinfo's octal escapes (\040 for a space).
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
