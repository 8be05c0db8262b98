package testguest

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A test process killed outright leaves its XFSDir mounted; the next
// XFSDir unmounts and removes it.
func TestXFSDirSweepsAKilledTestsMount(t *testing.T) {
	if os.Getenv("SOULPAD_XFS_HOLDER") != "" {
		mnt := XFSDir(t, 300<<20)
		os.Stdout.WriteString("mounted " + mnt + "\n")
		time.Sleep(time.Minute) // killed before this ends
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("a loop mount needs root")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestXFSDirSweepsAKilledTestsMount$", "-test.v")
	cmd.Env = append(os.Environ(), "SOULPAD_XFS_HOLDER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mnt string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if m, ok := strings.CutPrefix(sc.Text(), "mounted "); ok {
			mnt = m
			break
		}
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if mnt == "" {
		t.Fatal("the holder did not mount its XFS directory")
	}
	if !mounted(mnt) {
		t.Fatalf("%s is not mounted after its test was killed: the check below would see nothing", mnt)
	}
	XFSDir(t, 300<<20)
	if mounted(mnt) {
		t.Fatalf("%s is still mounted after the next XFSDir", mnt)
	}
	if _, err := os.Stat(mnt); !os.IsNotExist(err) {
		t.Fatalf("%s is still there: %v", mnt, err)
	}
}

func mounted(dir string) bool {
	b, _ := os.ReadFile("/proc/mounts")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == dir {
			return true
		}
	}
	return false
}
