package walkup

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/soulpad/soulpad/internal/kvmprobe"
	"github.com/soulpad/soulpad/internal/vmmbench"
	"github.com/soulpad/soulpad/plugins/vmm-qemu/qmp"
)

// bareSpec is a guest for QEMU driven by hand, the baseline of the
// framework's overhead: the same kernel, initrd, command line, RAM and
// memory mode as the pad's machine, in the same vault, with nothing of
// SoulPad around it.
type bareSpec struct {
	dir            string
	mib            uint64
	kernel, initrd string
	cmdline        string
	mapped         bool
	dropCaches     func(paths ...string)
}

// bareCycle is what the hand-driven sequence measured, in seconds.
type bareCycle struct {
	suspend    float64 // stop → migrate to a file → fsync (→ fsync and clone the RAM file) → quit
	resumeCont float64 // (clone the RAM file →) launch → migrate-incoming → cont
	resumeTick float64 // … → the guest's next counter tick
	// memory is the mode the hand-driven QEMU really ran in, from what
	// its migration stream held: "mapped" when it left guest RAM out
	// (a stream much smaller than the RAM the guest filled), else
	// "streamed".
	memory string
}

// runBare boots the guest under QEMU alone, suspends it once it has
// filled its RAM and resumes it from a cold cache, timing each as the
// plugin's sequence does it, minus the plugin.
func runBare(b *testing.B, s bareSpec) bareCycle {
	b.Helper()
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(s.dir)
	disk := filepath.Join(s.dir, "disk.qcow2")
	if out, err := execOut("qemu-img", "create", "-q", "-f", "qcow2", disk, "16M"); err != nil {
		b.Fatalf("qemu-img: %v %s", err, out)
	}
	state := filepath.Join(s.dir, "state")
	ram := filepath.Join(s.dir, "ram")
	sealed := filepath.Join(s.dir, "ram.sealed")
	if s.mapped {
		if err := os.WriteFile(ram, nil, 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.Truncate(ram, int64(s.mib)<<20); err != nil {
			b.Fatal(err)
		}
	}
	q, log := launchBare(b, s, ram, disk, "boot", false)
	vmmbench.WaitLog(b, log, "soulpad-counter 2")

	var c bareCycle
	ctx := context.Background()
	t0 := time.Now()
	must := func(cmd string, args any) {
		b.Helper()
		if err := q.conn.Execute(ctx, cmd, args, nil); err != nil {
			b.Fatalf("%s: %v", cmd, err)
		}
	}
	must("stop", nil)
	must("migrate-set-capabilities", map[string]any{"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": s.mapped}}})
	must("migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40})
	must("migrate", map[string]any{"uri": "exec:cat > " + state})
	for {
		var mi struct {
			Status string `json:"status"`
		}
		if err := q.conn.Execute(ctx, "query-migrate", nil, &mi); err != nil {
			b.Fatal(err)
		}
		if mi.Status == "completed" {
			break
		}
		if mi.Status == "failed" || mi.Status == "cancelled" {
			b.Fatalf("migration %s", mi.Status)
		}
		time.Sleep(5 * time.Millisecond)
	}
	syncPath(b, state)
	c.memory = "streamed"
	if fi, err := os.Stat(state); err == nil && uint64(fi.Size()) < s.mib<<20/4 {
		c.memory = "mapped"
	}
	if s.mapped {
		syncPath(b, ram)
		clone(b, sealed, ram)
	}
	q.quit(b)
	c.suspend = time.Since(t0).Seconds()
	os.Remove(ram)

	s.dropCaches(s.dir)
	t0 = time.Now()
	if s.mapped {
		clone(b, ram, sealed)
	}
	q, log = launchBare(b, s, ram, disk, "resume", true)
	defer q.quit(b)
	must("migrate-set-capabilities", map[string]any{"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": s.mapped}}})
	must("migrate-incoming", map[string]any{"uri": "exec:cat " + state})
	for {
		var st struct {
			Status string `json:"status"`
		}
		if err := q.conn.Execute(ctx, "query-status", nil, &st); err != nil {
			b.Fatal(err)
		}
		if st.Status == "paused" || st.Status == "postmigrate" {
			break
		}
		if st.Status != "inmigrate" && st.Status != "prelaunch" {
			b.Fatalf("the hand-driven resume: QEMU is %q", st.Status)
		}
		time.Sleep(5 * time.Millisecond)
	}
	must("cont", nil)
	c.resumeCont = time.Since(t0).Seconds()
	vmmbench.WaitLog(b, log, "soulpad-counter ")
	c.resumeTick = time.Since(t0).Seconds()
	return c
}

type bareQEMU struct {
	cmd  *exec.Cmd
	conn *qmp.Conn
}

func launchBare(b *testing.B, s bareSpec, ram, disk, name string, incoming bool) (*bareQEMU, string) {
	b.Helper()
	run := b.TempDir()
	log := filepath.Join(run, name+".log")
	sock := filepath.Join(run, "qmp.sock")
	accel := "tcg"
	if ok, _ := kvmprobe.Usable("/dev/kvm"); ok {
		accel = "kvm"
	}
	machine := "q35,accel=" + accel
	args := []string{"-nodefaults", "-no-user-config", "-no-reboot", "-name", "bare",
		"-m", fmt.Sprint(s.mib), "-smp", "1", "-vga", "std", "-display", "none",
		"-qmp", "unix:" + sock + ",server=on,wait=off", "-serial", "file:" + log,
		"-drive", "file=" + disk + ",if=none,id=d0,format=qcow2,cache=writeback", "-device", "virtio-blk-pci,drive=d0",
		"-kernel", s.kernel, "-initrd", s.initrd, "-append", s.cmdline}
	if s.mapped {
		machine += ",memory-backend=pc.ram"
		args = append(args, "-object", fmt.Sprintf("memory-backend-file,id=pc.ram,size=%dM,mem-path=%s,share=on", s.mib, ram))
	}
	args = append(args, "-machine", machine)
	if incoming {
		args = append(args, "-S", "-incoming", "defer")
	}
	cmd := exec.Command("qemu-system-x86_64", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	q := &bareQEMU{cmd: cmd}
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := qmp.Dial(context.Background(), sock)
		if err == nil {
			q.conn = conn
			return q, log
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			b.Fatalf("QEMU by hand: no QMP: %v %s", err, stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (q *bareQEMU) quit(b *testing.B) {
	if q.cmd.ProcessState != nil {
		return
	}
	_ = q.conn.Execute(context.Background(), "quit", nil, nil)
	done := make(chan struct{})
	go func() { q.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		q.cmd.Process.Kill()
		<-done
	}
	q.conn.Close()
}

func syncPath(b *testing.B, path string) {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
}

// clone makes dst share src's blocks (FICLONE), as the plugin does on a
// file system with reflink.
func clone(b *testing.B, dst, src string) {
	b.Helper()
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err != nil {
		b.Fatalf("FICLONE %s: %v", dst, err)
	}
	if err := out.Sync(); err != nil {
		b.Fatal(err)
	}
}

func execOut(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}
