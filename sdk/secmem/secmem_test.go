//go:build linux

package secmem

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

const childEnv = "SECMEM_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		// A child that hardens itself and reports what it sees of itself.
		s := Harden()
		d, _ := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
		fmt.Printf("status=%+v dumpable=%d vmlck=%s\n", s, d, statusField("VmLck"))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func statusField(name string) string {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			return strings.Join(strings.Fields(v), "")
		}
	}
	return ""
}

func child(t *testing.T, cred *syscall.Credential) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if cred != nil {
		// The test binary's directory is private: run a copy another
		// user can reach.
		dir, err := os.MkdirTemp("", "secmem")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		b, err := os.ReadFile(exe)
		if err != nil {
			t.Fatal(err)
		}
		exe = dir + "/secmem.test"
		if err := os.WriteFile(exe, b, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	return string(out)
}

// As root, Harden locks all memory and makes the process undumpable.
func TestHardenAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_IPC_LOCK)")
	}
	out := child(t, nil)
	if !strings.Contains(out, "Undumpable:true Locked:true") || !strings.Contains(out, "dumpable=0") {
		t.Fatalf("want undumpable and locked: %s", out)
	}
	if strings.Contains(out, "vmlck=0kB") {
		t.Fatalf("nothing locked after mlockall: %s", out)
	}
}

// Without CAP_IPC_LOCK and under a finite lock limit Harden leaves memory
// unlocked (the Go heap would hit the limit) and says why; the process is
// still undumpable.
func TestHardenUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a child as nobody")
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil || lim.Cur == unix.RLIM_INFINITY {
		t.Skip("the lock limit is unlimited here")
	}
	out := child(t, &syscall.Credential{Uid: 65534, Gid: 65534})
	if !strings.Contains(out, "Undumpable:true Locked:false") || !strings.Contains(out, "CAP_IPC_LOCK") || !strings.Contains(out, "dumpable=0") {
		t.Fatalf("want undumpable, not locked, with the reason: %s", out)
	}
}

// vmFlags returns the VmFlags of the mapping that starts at addr, or ""
// when there is none.
func vmFlags(t *testing.T, addr uintptr) string {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	want := fmt.Sprintf("%x-", addr)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, want) {
			in = true
			continue
		}
		if v, ok := strings.CutPrefix(l, "VmFlags:"); ok && in {
			return v
		}
	}
	return ""
}

func TestAllocIsLockedUndumpedAndFreed(t *testing.T) {
	b, err := Alloc(64)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 64 || cap(b) != 64 {
		t.Fatalf("len %d cap %d, want 64", len(b), cap(b))
	}
	for i := range b {
		if b[i] != 0 {
			t.Fatal("not zeroed")
		}
		b[i] = byte(i)
	}
	addr := uintptr(unsafePointer(&b[0]))
	flags := vmFlags(t, addr)
	for _, want := range []string{" dd", " wf"} {
		if !strings.Contains(flags, want) {
			t.Errorf("mapping flags %q lack%s", flags, want)
		}
	}
	if os.Geteuid() == 0 && !strings.Contains(flags, " lo") {
		t.Errorf("mapping flags %q: not locked", flags)
	}
	Free(b)
	if f := vmFlags(t, addr); f != "" {
		t.Fatalf("the mapping is still there after Free: %q", f)
	}
	Free(nil) // nothing to do
}

func TestAllocRefusesBadSizes(t *testing.T) {
	for _, n := range []int{0, -1, MaxAlloc + 1} {
		if _, err := Alloc(n); err == nil {
			t.Errorf("Alloc(%d) succeeded", n)
		}
	}
}
