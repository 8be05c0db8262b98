// Package testcli drives the soulpad binary as a user would, for the
// command-line and end-to-end tests: a pad with its site config, runs
// started and suspended, the guest's counter read from its console,
// processes killed at chosen moments.
package testcli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/internal/testguest"
	"github.com/soulpad/soulpad/internal/testluks"
	"github.com/soulpad/soulpad/plugins/detect-linux/linux"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/detect"
	"github.com/soulpad/soulpad/sdk/sdktest"
)

type Env struct {
	Bin, Cfg, Pad string
}

func Setup(t testing.TB) Env {
	t.Helper()
	bin := testbin.Build(t, "cmd/soulpad")
	testbin.Build(t, "plugins/crypt-plain")
	testbin.Build(t, "internal/testplugins/vmm-counter")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "site.hcl")
	hcl := fmt.Sprintf(`
pad { path = "pad" }
machine { memory_mib = 64 }
plugins {
  dirs  = [%q]
  crypt = "crypt-plain"
  vmm   = "vmm-counter"
}
plugin "crypt-plain" { allow_no_encryption = true }
`, testbin.Dir())
	if err := os.WriteFile(cfg, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	return Env{Bin: bin, Cfg: cfg, Pad: filepath.Join(dir, "pad")}
}

// Run runs soulpad and returns stdout, stderr and the exit code.
func (e Env) Run(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(e.Bin, args...)
	cmd.Env = append(os.Environ(), "SOULPAD_CONFIG="+e.Cfg)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if x, ok := err.(*exec.ExitError); ok {
		code = x.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	CheckOwed(t, args, out.String(), errb.String(), code)
	return out.String(), errb.String(), code
}

// documentedExits are the exit statuses the README and `soulpad run
// --help` document, the same for every command.
var documentedExits = map[int]bool{0: true, 1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true, 130: true}

// CheckOwed fails t where a soulpad command (args) broke what every
// command owes its user, on every path a test takes through it: an exit
// status from the documented table, and a failure's message said once
// (its final "soulpad: …" line, not also on a stage line or a table).
func CheckOwed(t testing.TB, args []string, stdout, stderr string, code int) {
	t.Helper()
	cmd := strings.Join(args, " ")
	if !documentedExits[code] {
		t.Errorf("soulpad %s: exit status %d is not in the documented table (0-7, 130):\n%s%s", cmd, code, stdout, stderr)
	}
	if code == 0 {
		return
	}
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		msg, ok := strings.CutPrefix(lines[i], "soulpad: ")
		if !ok {
			continue
		}
		if len(msg) >= 24 && strings.Count(stdout+stderr, msg) > 1 {
			t.Errorf("soulpad %s: its message is said more than once (%q):\n%s%s", cmd, msg, stdout, stderr)
		}
		return
	}
}

// StartRun starts `soulpad run` and waits until the machine runs.
func (e Env) StartRun(t testing.TB) (*exec.Cmd, *SyncBuffer, chan error) {
	t.Helper()
	cmd := exec.Command(e.Bin, "run")
	cmd.Env = append(os.Environ(), "SOULPAD_CONFIG="+e.Cfg)
	pr, pw, _ := os.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	buf := &SyncBuffer{}
	running := make(chan struct{})
	copied := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := false
		for sc.Scan() {
			_, _ = buf.Write([]byte(sc.Text() + "\n"))
			if !once && strings.Contains(sc.Text(), "the machine is running") {
				once = true
				close(running)
			}
		}
		close(copied)
	}()
	done := make(chan error, 1)
	ended := make(chan struct{})
	go func() { <-copied; err := cmd.Wait(); close(ended); done <- err }()
	// A test that fails while the machine runs leaves neither soulpad nor
	// its guest behind: SIGTERM (soulpad suspends), then SIGKILL.
	t.Cleanup(func() {
		select {
		case <-ended:
			return
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-ended:
		case <-time.After(2 * time.Minute):
			_ = cmd.Process.Kill()
		}
	})
	select {
	case <-running:
	case err := <-done:
		t.Fatalf("soulpad run ended early: %v\n%s", err, buf.String())
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the machine did not start:\n%s", buf.String())
	}
	return cmd, buf, done
}

func Wait(t testing.TB, done chan error, buf *SyncBuffer) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("soulpad run: %v\n%s", err, buf.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("soulpad run did not end:\n%s", buf.String())
	}
}

var counterRE = regexp.MustCompile(`soulpad-counter (\d+)`)

// Counters returns the counter values the console printed so far.
func (e Env) Counters(t testing.TB) []int {
	t.Helper()
	out, _, code := e.Run(t, "console", "--dump")
	if code != 0 {
		return nil
	}
	var vs []int
	for _, m := range counterRE.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[1])
		vs = append(vs, n)
	}
	return vs
}

// WaitCounter waits until the console shows at least n ticks.
func (e Env) WaitCounter(t testing.TB, n int) []int {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if vs := e.Counters(t); len(vs) >= n {
			return vs
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the guest printed fewer than %d counter ticks in 90 s", n)
	return nil
}

// CryptBlocks configures each crypt plugin for the walk-up tests.
var CryptBlocks = map[string]string{
	"crypt-plain":     `plugin "crypt-plain" { allow_no_encryption = true }`,
	"crypt-gocryptfs": `plugin "crypt-gocryptfs" { scrypt_logn = 12 }`,
	"crypt-luks": `plugin "crypt-luks" {
  argon2_memory_kib = 8192
  argon2_iterations = 4
}`,
}

// QEMUEnv is a pad that runs the demo guest with vmm-qemu and the given
// crypt plugin (its passphrase in a file beside the config).
func QEMUEnv(t testing.TB, cmdline, cryptPlugin string) Env {
	t.Helper()
	kernel, initrd := testguest.Build(t)
	bin := testbin.Build(t, "cmd/soulpad")
	testbin.Build(t, "plugins/"+cryptPlugin)
	testbin.Build(t, "plugins/vmm-qemu")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "site.hcl")
	if err := os.WriteFile(filepath.Join(dir, "passphrase"), []byte("a long walk-up test passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hcl := fmt.Sprintf(`
pad {
  path           = "pad"
  vault_size_mib = 512
}
unlock { passphrase_file = "passphrase" }
machine {
  memory_mib    = 128
  disk_size_mib = 16
  kernel        = %q
  initrd        = %q
  cmdline       = %q
}
plugins {
  dirs  = [%q]
  crypt = %q
  vmm   = "vmm-qemu"
}
%s
`, kernel, initrd, cmdline, testbin.Dir(), cryptPlugin, CryptBlocks[cryptPlugin])
	if err := os.WriteFile(cfg, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	return Env{Bin: bin, Cfg: cfg, Pad: filepath.Join(dir, "pad")}
}

// Session runs one `soulpad run` that is suspended once the console shows
// at least minTicks ticks; it returns the ticks seen.
func (e Env) Session(t testing.TB, minTicks int) ([]int, string) {
	t.Helper()
	_, buf, done := e.StartRun(t)
	vs := e.WaitCounter(t, minTicks)
	out, errOut, code := e.Run(t, "suspend")
	if code != 0 {
		t.Fatalf("suspend: exit %d %s %s", code, out, errOut)
	}
	Wait(t, done, buf)
	if !strings.Contains(buf.String(), "suspended to point") {
		t.Fatalf("run did not end suspended:\n%s", buf.String())
	}
	return vs, buf.String()
}

// Plain gives the vault's plaintext directory while the pad is locked:
// the vault itself for crypt-plain, a read-only look otherwise.
func (e Env) Plain(t testing.TB, cryptPlugin string) (string, func()) {
	t.Helper()
	vault := filepath.Join(e.Pad, "vault")
	switch cryptPlugin {
	case "crypt-plain":
		return vault, func() {}
	case "crypt-gocryptfs":
		mnt := t.TempDir()
		cmd := exec.Command("gocryptfs", "-q", "-ro", vault, mnt)
		cmd.Stdin = strings.NewReader("a long walk-up test passphrase\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("gocryptfs: %v %s", err, out)
		}
		return mnt, func() { exec.Command("fusermount3", "-u", mnt).Run() }
	case "crypt-luks":
		// cryptsetup alone decrypts a copy (no device-mapper needed).
		return testluks.Decrypt(t, vault, []byte("a long walk-up test passphrase")), func() {}
	}
	t.Fatalf("no way to look into %s", cryptPlugin)
	return "", nil
}

// RecordedProfile writes the profile detect-linux reads from one of its
// recorded host trees (plugins/detect-linux/linux/testdata) as JSON, for
// detect-static to report; kvm overrides the recorded KVM.
func RecordedProfile(t testing.TB, host string, kvm bool) string {
	t.Helper()
	d := linux.New(sdktest.Logger(t, "detect-linux"))
	root := filepath.Join(testbin.Root(t), "plugins", "detect-linux", "linux", "testdata", host)
	cfg, _ := json.Marshal(map[string]string{"root": root})
	if _, err := d.Configure(context.Background(), sdk.ConfigureRequest{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	out, err := d.Probe(context.Background(), detect.ProbeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out.Profile.KVM = kvm
	b, _ := json.Marshal(out.Profile)
	path := filepath.Join(t.TempDir(), host+".json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// OnHost makes the next sessions see a recorded host (detect-static with
// its profile) or, with profile "", this host (detect-linux).
func (e Env) OnHost(t testing.TB, profile string) {
	t.Helper()
	if profile == "" {
		t.Setenv("SOULPAD_PLUGINS_DETECT", "detect-linux")
		return
	}
	t.Setenv("SOULPAD_PLUGINS_DETECT", "detect-static")
	f, err := os.OpenFile(e.Cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "plugin \"detect-static\" {\n  profile_file = %q\n}\n", profile)
}

// Descendants lists the processes below pid with their executable's base
// name (a plugin binary, qemu-system-x86_64, gocryptfs).
func Descendants(pid int) map[int]string {
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces: cut at the last ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		parent[p] = pp
	}
	out := map[int]string{}
	for p := range parent {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				exe, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(p), "exe"))
				out[p] = filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
				break
			}
		}
	}
	return out
}

// KillNamed kills with SIGKILL the descendant of pid whose executable is
// name, and reports whether there was one.
func KillNamed(t testing.TB, pid int, name string) bool {
	t.Helper()
	for p, n := range Descendants(pid) {
		if n == name {
			if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
				t.Fatalf("kill %s (%d): %v", name, p, err)
			}
			return true
		}
	}
	return false
}

// StartRunArgs starts `soulpad run ARGS` and returns at once; the output
// is collected in the buffer (lines) and done receives Wait's result.
func (e Env) StartRunArgs(t testing.TB, args ...string) (*exec.Cmd, *SyncBuffer, chan error) {
	t.Helper()
	cmd := exec.Command(e.Bin, append([]string{"run"}, args...)...)
	cmd.Env = append(os.Environ(), "SOULPAD_CONFIG="+e.Cfg)
	buf := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	return cmd, buf, done
}

// WaitFor waits until the output contains s, or fails.
func WaitFor(t testing.TB, buf *SyncBuffer, done chan error, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(buf.String(), s) {
		select {
		case err := <-done:
			done <- err
			if !strings.Contains(buf.String(), s) {
				t.Fatalf("soulpad run ended (%v) before printing %q:\n%s", err, s, buf.String())
			}
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %v:\n%s", s, d, buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Ended waits for the run to end and returns its exit code.
func Ended(t testing.TB, done chan error, buf *SyncBuffer) int {
	t.Helper()
	select {
	case err := <-done:
		if x, ok := err.(*exec.ExitError); ok {
			return x.ExitCode()
		}
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		return 0
	case <-time.After(120 * time.Second):
		t.Fatalf("soulpad run did not end:\n%s", buf.String())
	}
	return -1
}

type PointJSON struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Parent string `json:"parent"`
	Latest bool   `json:"latest"`
	Bytes  int64  `json:"bytes"`
	// Memory: "mapped" or "streamed" (a disk point: "").
	Memory string `json:"memory"`
}

// LatestMemory is how the newest memory point (the one the next run
// resumes) holds guest RAM, as its VMM plugin sealed it: "mapped" or
// "streamed" ("" when there is none).
func LatestMemory(pts []PointJSON) string {
	for _, p := range pts {
		if p.Latest {
			return p.Memory
		}
	}
	return ""
}

func (e Env) Points(t testing.TB) []PointJSON {
	t.Helper()
	out, errOut, code := e.Run(t, "points", "--json")
	if code != 0 {
		t.Fatalf("points: exit %d %s %s", code, out, errOut)
	}
	var pts []PointJSON
	if err := json.Unmarshal([]byte(out), &pts); err != nil {
		t.Fatalf("points --json: %v\n%s", err, out)
	}
	return pts
}

// SyncBuffer is a bytes.Buffer that a command writes while the test reads.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
