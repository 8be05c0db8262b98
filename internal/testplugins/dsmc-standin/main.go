// Command dsmc-standin is a STAND-IN for IBM Storage Protect's (TSM's)
// backup-archive client, dsmc, for tests only: no TSM server can run
// here. It implements the documented subset backup-tsm uses, over a local
// directory instead of a server:
//
//	dsmc incremental PATH [-subdir=yes] -optfile=FILE
//	dsmc query backup SPEC [-subdir=yes] [-inactive] -optfile=FILE
//	dsmc restore SPEC DEST/ [-subdir=yes] [-pitdate=D -pittime=T] [-replace=no] -optfile=FILE
//
// with -dateformat=3 (yyyy-mm-dd) and -timeformat=1 (hh:mm:ss). The
// option file's TCPSERVERADDRESS is the directory that plays the server
// and NODENAME the node (-virtualnodename overrides it; -servername must
// match SERVERNAME when both are given); with PASSWORDACCESS PROMPT the password is read
// from stdin after the client's prompt, as the real client does. The
// first session of a node registers its password. Output lines and
// return codes (0 ok, 4 files skipped, 8 warnings, 12 errors) follow the
// real client's. Versions are stored before the catalog records them, so
// a killed run leaves earlier versions intact, as a real server would.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

type entry struct {
	Op    string    `json:"op"` // "backup" or "expire"
	Path  string    `json:"path"`
	Ver   string    `json:"ver,omitempty"`
	Size  int64     `json:"size,omitempty"`
	MTime time.Time `json:"mtime,omitempty"`
	Time  time.Time `json:"time"`
}

type server struct {
	dir     string // this node's storage
	catalog []entry
}

var stdout = bufio.NewWriter(os.Stdout)

func die(rc int, format string, a ...any) {
	fmt.Fprintf(stdout, format+"\n", a...)
	stdout.Flush()
	os.Exit(rc)
}

func main() {
	defer stdout.Flush()
	var args []string
	opts := map[string]string{}
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-") {
			k, v, _ := strings.Cut(strings.TrimPrefix(a, "-"), "=")
			opts[strings.ToLower(k)] = v
			continue
		}
		args = append(args, a)
	}
	fmt.Fprintln(stdout, "IBM Storage Protect (STAND-IN for tests: dsmc-standin, not IBM's client)")
	if len(args) == 0 {
		die(12, "ANS1102E Invalid command")
	}
	srv := connect(opts)
	cmd := strings.ToLower(args[0])
	switch {
	case cmd == "incremental" || cmd == "i" || cmd == "incr":
		if len(args) < 2 {
			die(12, "ANS1102E Invalid command: no file specification")
		}
		exit(srv.incremental(args[1], opts["subdir"] == "yes"))
	case (cmd == "query" || cmd == "q") && len(args) > 2 && strings.HasPrefix(strings.ToLower(args[1]), "b"):
		exit(srv.query(args[2], opts["subdir"] == "yes", opts["inactive"] != "" || hasFlag("inactive")))
	case cmd == "restore" || cmd == "rest":
		if len(args) < 3 {
			die(12, "ANS1102E Invalid command: restore needs a source and a destination")
		}
		exit(srv.restore(args[1], args[2], opts))
	}
	die(12, "ANS1102E Invalid command: %s", strings.Join(args, " "))
}

// exit flushes the output and exits with rc.
func exit(rc int) {
	stdout.Flush()
	os.Exit(rc)
}

func hasFlag(name string) bool {
	for _, a := range os.Args {
		if strings.EqualFold(a, "-"+name) {
			return true
		}
	}
	return false
}

// connect reads the option file, prompts for the password and opens the
// node's storage.
func connect(opts map[string]string) *server {
	of := opts["optfile"]
	if of == "" {
		die(12, "ANS1036S The option 'OPTFILE' is needed by this stand-in")
	}
	b, err := os.ReadFile(of)
	if err != nil {
		die(12, "ANS1036S Invalid option file %s: %v", of, err)
	}
	conf := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && !strings.HasPrefix(f[0], "*") {
			conf[strings.ToUpper(f[0])] = strings.Join(f[1:], " ")
		}
	}
	addr, node := conf["TCPSERVERADDRESS"], strings.ToUpper(conf["NODENAME"])
	if v := opts["virtualnodename"]; v != "" {
		node = strings.ToUpper(v)
	}
	if s := opts["servername"]; s != "" && conf["SERVERNAME"] != "" && !strings.EqualFold(s, conf["SERVERNAME"]) {
		die(12, "ANS1217E Server name %s not found in the option file", s)
	}
	if addr == "" || node == "" {
		die(12, "ANS1036S The option file needs TCPSERVERADDRESS and NODENAME")
	}
	if st, err := os.Stat(addr); err != nil || !st.IsDir() {
		die(12, "ANS1017E Session rejected: TCP/IP connection failure (server %s unreachable)", addr)
	}
	pw := opts["password"]
	if pw == "" {
		fmt.Fprintf(stdout, "Please enter password for user id \"%s\": ", node)
		stdout.Flush()
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		pw = strings.TrimRight(line, "\r\n")
		fmt.Fprintln(stdout)
	}
	dir := filepath.Join(addr, node)
	os.MkdirAll(filepath.Join(dir, "objects"), 0o700)
	sum := sha256.Sum256([]byte(pw))
	pwf := filepath.Join(dir, "password.sha256")
	if old, err := os.ReadFile(pwf); err == nil {
		if string(old) != hex.EncodeToString(sum[:]) {
			die(12, "ANS1025E Session rejected: Authentication failure")
		}
	} else {
		os.WriteFile(pwf, []byte(hex.EncodeToString(sum[:])), 0o600)
	}
	s := &server{dir: dir}
	if f, err := os.Open(filepath.Join(dir, "catalog.jsonl")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var e entry
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				s.catalog = append(s.catalog, e) // a torn last line is skipped
			}
		}
		f.Close()
	}
	fmt.Fprintf(stdout, "Node Name: %s\nSession established with server STANDIN: Linux/x86_64\n", node)
	return s
}

func (s *server) record(e entry) {
	f, err := os.OpenFile(filepath.Join(s.dir, "catalog.jsonl"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		die(12, "ANS1329S Server out of data storage space: %v", err)
	}
	b, _ := json.Marshal(e)
	f.Write(append(b, '\n'))
	f.Sync()
	f.Close()
	s.catalog = append(s.catalog, e)
}

// state is what each path looked like at time t (zero: now): its newest
// version, or none when expired.
func (s *server) state(t time.Time) map[string]entry {
	m := map[string]entry{}
	for _, e := range s.catalog {
		if !t.IsZero() && e.Time.After(t) {
			continue
		}
		if e.Op == "expire" {
			delete(m, e.Path)
		} else {
			m[e.Path] = e
		}
	}
	return m
}

func under(path, root string, subdir bool) bool {
	if path == root {
		return true
	}
	if !strings.HasPrefix(path, strings.TrimSuffix(root, "/")+"/") {
		return false
	}
	return subdir || !strings.Contains(strings.TrimPrefix(path, strings.TrimSuffix(root, "/")+"/"), "/")
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.2f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d  B", n)
}

func commas(n int64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func (s *server) incremental(spec string, subdir bool) int {
	root, err := filepath.Abs(spec)
	if err != nil {
		die(12, "ANS1071E Invalid domain name entered: %s", spec)
	}
	active := s.state(time.Time{})
	var inspected, backed, expired, failed, bytesIn, sent int64
	seen := map[string]bool{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "ANS1228E Sending of object '%s' failed: %v\n", p, err)
			return nil
		}
		if d.IsDir() {
			if p != root && !subdir {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			failed++
			return nil
		}
		inspected++
		bytesIn += info.Size()
		seen[p] = true
		if a, ok := active[p]; ok && a.Size == info.Size() && a.MTime.Equal(info.ModTime()) {
			return nil
		}
		ver := fmt.Sprintf("%d", time.Now().UnixNano())
		sum := sha256.Sum256([]byte(p))
		obj := filepath.Join(s.dir, "objects", hex.EncodeToString(sum[:8]), ver)
		os.MkdirAll(filepath.Dir(obj), 0o700)
		if err := copyFile(p, obj+".tmp"); err != nil {
			failed++
			fmt.Fprintf(stdout, "ANS1228E Sending of object '%s' failed: %v\n", p, err)
			return nil
		}
		os.Rename(obj+".tmp", obj)
		s.record(entry{Op: "backup", Path: p, Ver: ver, Size: info.Size(), MTime: info.ModTime(), Time: time.Now()})
		backed++
		sent += info.Size()
		fmt.Fprintf(stdout, "Normal File-->  %15s %s [Sent]\n", commas(info.Size()), p)
		return nil
	})
	if err != nil {
		die(12, "ANS1071E %v", err)
	}
	for p, a := range active {
		if under(p, root, subdir) && !seen[p] {
			s.record(entry{Op: "expire", Path: p, Time: time.Now()})
			expired++
			fmt.Fprintf(stdout, "Expiring-->  %15s %s [Sent]\n", commas(a.Size), p)
		}
	}
	fmt.Fprintf(stdout, "Successful incremental backup of '%s'\n\n", root)
	fmt.Fprintf(stdout, "Total number of objects inspected: %12s\n", commas(inspected))
	fmt.Fprintf(stdout, "Total number of objects backed up: %12s\n", commas(backed))
	fmt.Fprintf(stdout, "Total number of objects updated:   %12s\n", "0")
	fmt.Fprintf(stdout, "Total number of objects expired:   %12s\n", commas(expired))
	fmt.Fprintf(stdout, "Total number of objects failed:    %12s\n", commas(failed))
	fmt.Fprintf(stdout, "Total number of bytes inspected:   %12s\n", human(bytesIn))
	fmt.Fprintf(stdout, "Total number of bytes transferred: %12s\n", human(sent))
	if failed > 0 {
		return 4
	}
	return 0
}

// match reports whether path is selected by spec ("DIR/*" or a file).
func match(path, spec string, subdir bool) bool {
	if strings.HasSuffix(spec, "/*") {
		return under(path, strings.TrimSuffix(spec, "*"), subdir) && path != strings.TrimSuffix(spec, "/*")
	}
	return path == spec
}

func (s *server) query(spec string, subdir, inactive bool) int {
	var rows []entry
	active := s.state(time.Time{})
	for _, e := range s.catalog {
		if e.Op != "backup" || !match(e.Path, spec, subdir) {
			continue
		}
		if a, ok := active[e.Path]; (ok && a.Ver == e.Ver) || inactive {
			rows = append(rows, e)
		}
	}
	if len(rows) == 0 {
		fmt.Fprintln(stdout, "ANS1092W No files matching search criteria were found")
		return 8
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Time.Before(rows[j].Time) })
	fmt.Fprintln(stdout, "  Size        Backup Date                Mgmt Class           A/I File")
	fmt.Fprintln(stdout, "  ----        -----------                ----------           --- ----")
	for _, e := range rows {
		ai := "I"
		if a, ok := active[e.Path]; ok && a.Ver == e.Ver {
			ai = "A"
		}
		fmt.Fprintf(stdout, "%12s  B  %s          DEFAULT              %s  %s\n", commas(e.Size), e.Time.Local().Format("2006-01-02 15:04:05"), ai, e.Path)
	}
	return 0
}

func (s *server) restore(spec, dest string, opts map[string]string) int {
	var at time.Time
	if opts["pitdate"] != "" {
		t, err := time.ParseInLocation("2006-01-02 15:04:05", opts["pitdate"]+" "+opts["pittime"], time.Local)
		if err != nil {
			die(12, "ANS1107E Invalid date/time: %s %s", opts["pitdate"], opts["pittime"])
		}
		at = t.Add(time.Second - time.Nanosecond) // the whole second
	}
	base := strings.TrimSuffix(strings.TrimSuffix(spec, "*"), "/")
	var n, skipped, bytes int64
	for p, e := range s.state(at) {
		if !match(p, spec, opts["subdir"] == "yes") {
			continue
		}
		rel := strings.TrimPrefix(p, base+"/")
		dst := filepath.Join(dest, rel)
		if _, err := os.Stat(dst); err == nil && opts["replace"] == "no" {
			fmt.Fprintf(stdout, "ANS1084I File %s exists, skipping\n", dst)
			skipped++
			continue
		}
		os.MkdirAll(filepath.Dir(dst), 0o700)
		sum := sha256.Sum256([]byte(p))
		if err := copyFile(filepath.Join(s.dir, "objects", hex.EncodeToString(sum[:8]), e.Ver), dst); err != nil {
			die(12, "ANS1345E No objects on server match %s: %v", p, err)
		}
		os.Chtimes(dst, e.MTime, e.MTime)
		n++
		bytes += e.Size
		fmt.Fprintf(stdout, "Restoring  %15s %s --> %s [Done]\n", commas(e.Size), p, dst)
	}
	if n == 0 && skipped == 0 {
		fmt.Fprintln(stdout, "ANS1092W No files matching search criteria were found")
		return 8
	}
	fmt.Fprintf(stdout, "\nTotal number of objects restored: %12s\n", commas(n))
	fmt.Fprintf(stdout, "Total number of objects failed:   %12s\n", "0")
	fmt.Fprintf(stdout, "Total number of bytes transferred: %12s\n", human(bytes))
	if skipped > 0 {
		return 4
	}
	return 0
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
