package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/soulpad/soulpad/sdk/vmm"
	"golang.org/x/sys/unix"
)

type migrateInfo struct {
	Status   string `json:"status"`
	ErrorMsg string `json:"error-desc"`
	RAM      *struct {
		Transferred int64 `json:"transferred"`
	} `json:"ram"`
}

// waitMigration polls until the migration completes or fails.
func waitMigration(ctx context.Context, v *proc) error {
	for {
		var mi migrateInfo
		if err := v.qmp.Execute(ctx, "query-migrate", nil, &mi); err != nil {
			return err
		}
		switch mi.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("migration %s: %s", mi.Status, mi.ErrorMsg)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-v.exited:
			return errors.New("QEMU exited")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// setIgnoreShared keeps shared (file-backed) RAM out of the migration
// stream (on), or puts it in (off), when v's RAM is a file.
func setIgnoreShared(ctx context.Context, v *proc, on bool) error {
	if v.ramFile == "" {
		return nil
	}
	return v.qmp.Execute(ctx, "migrate-set-capabilities", map[string]any{
		"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": on}}}, nil)
}

// waitIncoming waits until the incoming state has loaded (the machine is
// then paused, because of -S) or QEMU gave up.
func waitIncoming(ctx context.Context, v *proc) error {
	for {
		var st struct {
			Status string `json:"status"`
		}
		if err := v.qmp.Execute(ctx, "query-status", nil, &st); err != nil {
			return err
		}
		switch st.Status {
		case "paused", "running", "postmigrate":
			return nil
		case "inmigrate", "prelaunch":
		default:
			return fmt.Errorf("unexpected state %q while loading", st.Status)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-v.exited:
			return errors.New("QEMU exited while loading the state")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// saveState streams the stopped machine's device state (and its RAM,
// unless mapped) into dir/StateFile. The state goes through a pipe: the
// plugin writes it into the file and sums it on the way, so nobody has
// to read it back. The file is not synced yet.
func (p *Plugin) saveState(ctx context.Context, v *proc, dir string, mapped bool) (vmm.FileSum, error) {
	return p.writeState(ctx, v, dir, mapped, true)
}

// saveStateRunning saves the device state of a stopped machine with
// mapped RAM that goes on running after (a checkpoint): QEMU is never
// quit to end the stream.
func (p *Plugin) saveStateRunning(ctx context.Context, v *proc, dir string) (vmm.FileSum, error) {
	return p.writeState(ctx, v, dir, true, false)
}

// writeState is saveState; quit says QEMU may be quit to end a stream it
// does not close.
func (p *Plugin) writeState(ctx context.Context, v *proc, dir string, mapped, quit bool) (vmm.FileSum, error) {
	// The capability is set either way: a resume may have turned it on.
	if err := setIgnoreShared(ctx, v, mapped); err != nil {
		return vmm.FileSum{}, err
	}
	bw := int64(p.cfg.MaxBandwidthMiBps) << 20
	if bw == 0 {
		bw = 1 << 40 // no cap: the disk is the limit
	}
	if err := v.qmp.Execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": bw}, nil); err != nil {
		return vmm.FileSum{}, err
	}
	f, err := os.OpenFile(filepath.Join(dir, StateFile), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return vmm.FileSum{}, err
	}
	defer f.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return vmm.FileSum{}, err
	}
	defer pr.Close() // a copier still waiting on QEMU gives up
	// A larger pipe, and large reads: fewer wake-ups on both sides.
	_, _ = unix.FcntlInt(pw.Fd(), unix.F_SETPIPE_SZ, 1<<20)
	sum := vmm.NewSumWriter(StateFile, f, 0)
	// About the guest's RAM goes through (less when it is mapped).
	total := v.spec.MemoryMiB << 20
	if mapped {
		total = 0
	}
	p.prog.start("suspend", total)
	copied := make(chan error, 1)
	go func() {
		// (struct{io.Reader} hides pr's WriteTo, which would copy in
		// 32 KiB pieces.)
		_, err := io.CopyBuffer(p.prog.counter(sum), struct{ io.Reader }{pr}, make([]byte, 1<<20))
		if err != nil {
			// The state cannot be written (the vault's file system gave
			// up): close the pipe, or QEMU waits on it forever; the
			// migration then fails.
			pr.Close()
		}
		copied <- err
	}()
	if err := migrateOut(ctx, v, pw); err != nil {
		pr.Close()
		<-copied
		return vmm.FileSum{}, err
	}
	// QEMU closes the stream once the migration completes; if it has not
	// (yet), quitting it does.
	select {
	case err = <-copied:
	case <-time.After(5 * time.Second):
		if !quit {
			pr.Close()
			<-copied
			return vmm.FileSum{}, errors.New("QEMU did not end the state's stream")
		}
		v.quit(ctx)
		err = <-copied
	}
	return sum.Sum(), err
}

// migrateOut hands QEMU the pipe's write end and migrates into it until
// the migration completes; pw is closed.
func migrateOut(ctx context.Context, v *proc, pw *os.File) error {
	err := v.qmp.ExecuteWithFD(ctx, "getfd", map[string]any{"fdname": "soulpad-suspend"}, int(pw.Fd()))
	pw.Close() // QEMU has its own copy now: EOF comes when it closes it
	if err != nil {
		return err
	}
	if err := v.qmp.Execute(ctx, "migrate", map[string]any{"uri": "fd:soulpad-suspend"}, nil); err != nil {
		return err
	}
	return waitMigration(ctx, v)
}

// keepRAM makes the running RAM file the point's: the pages the guest
// changed reach the pad, then the file moves into dir (QEMU is stopped
// and writes no more of it; its cached pages go with it, so that sealing
// the point reads them from memory, not from the pad).
func keepRAM(ctx context.Context, v *proc, dir string, timer *vmm.Timer) error {
	if err := syncFile(v.ramFile); err != nil {
		return err
	}
	timer.Mark("sync")
	if err := moveFile(ctx, filepath.Join(dir, RAMFile), v.ramFile); err != nil {
		return err
	}
	timer.Mark("move")
	return nil
}

// loadState feeds the point's state into the paused QEMU and waits until
// it has loaded. With the point's sum of the state, the plugin checks it
// beside QEMU's reads (stateCheck): one read, and the guest does not run
// unless it matched.
func (p *Plugin) loadState(ctx context.Context, v *proc, req vmm.ResumeRequest, mapped bool) error {
	f, err := os.Open(filepath.Join(req.StateDir, StateFile))
	if err != nil {
		return err
	}
	defer f.Close()
	var loaded *stateCheck
	if want, ok := findSum(req.Sums, StateFile); ok {
		p.prog.start("resume", want.Size)
		loaded = checkWhileLoading(f, want, p.prog.counter)
	}
	feed, err := spliceFeed(f)
	if err != nil {
		return err
	}
	defer feed.sent()
	err = v.qmp.ExecuteWithFD(ctx, "getfd", map[string]any{"fdname": "soulpad-resume"}, feed.r)
	feed.sent()
	if err != nil {
		return err
	}
	if mapped {
		// Both ends must agree that RAM is not in the stream.
		if err := setIgnoreShared(ctx, v, true); err != nil {
			return err
		}
	}
	if err := v.qmp.Execute(ctx, "migrate-incoming", map[string]any{"uri": "fd:soulpad-resume"}, nil); err != nil {
		return err
	}
	if err := waitIncoming(ctx, v); err != nil {
		return err
	}
	return loaded.verify(ctx)
}
