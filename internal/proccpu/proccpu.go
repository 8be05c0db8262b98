// Package proccpu reads the CPU time processes have used from /proc.
package proccpu

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// stat is what /proc/pid/stat says of a process's parent and CPU time.
type stat struct {
	ppid            int
	self, waitedFor float64 // seconds
}

func read(pid int) (stat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, false
	}
	i := strings.LastIndexByte(string(b), ')') // the name may hold spaces
	if i < 0 {
		return stat{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return stat{}, false
	}
	var s stat
	var ut, st, cut, cst float64
	fmt.Sscan(f[1], &s.ppid)
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	fmt.Sscan(f[13], &cut)
	fmt.Sscan(f[14], &cst)
	s.self, s.waitedFor = (ut+st)/100, (cut+cst)/100 // USER_HZ
	return s, true
}

// Seconds is the user and system CPU time process pid has used, with
// that of the children it waited for when waited is set (0 once it is
// gone).
func Seconds(pid int, waited bool) float64 {
	s, _ := read(pid)
	if waited {
		return s.self + s.waitedFor
	}
	return s.self
}

// Tree is the CPU time process pid and the live processes under it have
// used, with that of the children they waited for.
func Tree(pid int) float64 {
	var sum float64
	for _, s := range tree(pid) {
		sum += s.self + s.waitedFor
	}
	return sum
}

// Descendants are the live processes under pid (pid not among them).
func Descendants(pid int) []int {
	var ids []int
	for id := range tree(pid) {
		if id != pid {
			ids = append(ids, id)
		}
	}
	sort.Ints(ids)
	return ids
}

// tree is pid and the live processes under it.
func tree(pid int) map[int]stat {
	procs := map[int]stat{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		var id int
		if _, err := fmt.Sscan(filepath.Base(d), &id); err != nil {
			continue
		}
		if s, ok := read(id); ok {
			procs[id] = s
		}
	}
	under := func(id int) bool {
		for n := 0; id > 1 && n < 64; n++ {
			if id == pid {
				return true
			}
			id = procs[id].ppid
		}
		return false
	}
	out := map[int]stat{}
	for id, s := range procs {
		if under(id) {
			out[id] = s
		}
	}
	return out
}
