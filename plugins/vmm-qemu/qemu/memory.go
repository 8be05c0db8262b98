package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/soulpad/soulpad/internal/ctxio"
	"github.com/soulpad/soulpad/sdk"
)

// Mapped guest memory. The guest's RAM is a file in the vault, shared
// with QEMU (memory-backend-file, share=on), and the migration stream
// carries only the device state (x-ignore-shared). A suspend fsyncs the
// file, so only the pages the guest changed reach the pad, then moves it
// into the point (QEMU writes no more of it; its cached pages go along,
// so the seal's checksums read memory, not the pad). A resume clones the
// point's RAM into a new running file and the guest starts at once: its
// pages are read as it touches them, and a background reader brings in
// the rest.
//
// Crash safety: the running file moves ahead of the sealed state as soon
// as the guest runs, but each point holds its own file (a clone, or the
// running file of the session that sealed it), which nothing writes.
// Whatever is killed when, the newest sealed point resumes from its own
// file; a running file left by a killed session is garbage, and the next
// launch removes it.

// RAMFile holds a mapped point's guest RAM, beside StateFile (then only
// the device state).
const RAMFile = "memory.ram"

// memoryDir holds the running RAM file, inside the machine directory.
const memoryDir = "memory"

// Memory modes (Config.Memory, Description.Memory).
const (
	memoryAuto   = "auto"
	memoryMapped = "mapped"
	memoryStream = "stream"
)

// canClone says whether files in dir can be cloned (the vault's file
// system has reflink, as crypt-luks's XFS has).
func canClone(dir string) bool {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false
	}
	a, err := os.CreateTemp(dir, ".clone-probe-")
	if err != nil {
		return false
	}
	defer os.Remove(a.Name())
	defer a.Close()
	if _, err := a.Write(make([]byte, 4096)); err != nil {
		return false
	}
	b, err := os.CreateTemp(dir, ".clone-probe-")
	if err != nil {
		return false
	}
	defer os.Remove(b.Name())
	defer b.Close()
	return unix.IoctlFileClone(int(b.Fd()), int(a.Fd())) == nil
}

// cloneFile makes dst (which must not exist) a clone of src, or a copy
// where the file system cannot clone, and fsyncs it.
func cloneFile(ctx context.Context, dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err != nil {
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EXDEV) && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY) {
			os.Remove(dst)
			return fmt.Errorf("clone %s: %w", src, err)
		}
		if _, err := io.Copy(out, ctxio.Reader{Ctx: ctx, R: in}); err != nil {
			os.Remove(dst)
			return fmt.Errorf("copy %s: %w", src, err)
		}
	}
	if err := out.Sync(); err != nil {
		os.Remove(dst)
		return err
	}
	return nil
}

// moveFile moves src to dst (which must not exist), or, where they are
// on different file systems, makes dst a clone or copy of it; src is
// then left for its owner to remove.
func moveFile(ctx context.Context, dst, src string) error {
	err := unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EXDEV), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS):
		return cloneFile(ctx, dst, src)
	}
	return fmt.Errorf("move %s: %w", src, err)
}

// newRAMFile names a new running RAM file in machineDir and removes those
// left by earlier sessions (one session runs a machine: the pad's lock).
func newRAMFile(machineDir string) (string, error) {
	dir := filepath.Join(machineDir, memoryDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	old, _ := filepath.Glob(filepath.Join(dir, "ram-*"))
	for _, f := range old {
		_ = os.Remove(f)
	}
	return filepath.Join(dir, "ram-"+strconv.FormatInt(time.Now().UnixNano(), 36)), nil
}

// prepareRAM makes v's running RAM file: a clone of from (a point's
// RAMFile), or, with from empty, a new sparse file of the machine's
// size. Nothing is left behind on failure.
func prepareRAM(ctx context.Context, v *proc, from string) error {
	path, err := newRAMFile(v.machineDir)
	if err != nil {
		return fmt.Errorf("the guest's RAM file: %w", err)
	}
	size := int64(v.spec.MemoryMiB) << 20
	if from == "" {
		err = sizeRAMFile(path, size)
	} else if err = checkRAMFile(from, size); err == nil {
		err = cloneFile(ctx, path, from)
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("the guest's RAM file: %w", err)
	}
	v.ramFile, v.desc.Memory = path, memoryMapped
	return nil
}

// sizeRAMFile creates path with size bytes (sparse: a cold boot's RAM).
func sizeRAMFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Truncate(size)
}

// checkRAMFile checks that a point's RAM file is there and has the
// machine's memory size.
func checkRAMFile(path string, size int64) error {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("the point has no %s: %w", RAMFile, sdk.ErrCorrupt)
	}
	if err != nil {
		return err
	}
	if st.Size() != size {
		return fmt.Errorf("the point's %s is %d bytes, the machine has %d MiB of RAM (truncated?): %w", RAMFile, st.Size(), size>>20, sdk.ErrCorrupt)
	}
	return nil
}

// syncFile fsyncs path.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// memoryMode is the mode a machine in machineDir runs with.
func (p *Plugin) memoryMode(machineDir string) (string, error) {
	switch p.cfg.Memory {
	case memoryStream:
		return memoryStream, nil
	case memoryMapped:
		if !canClone(filepath.Join(machineDir, memoryDir)) {
			return "", fmt.Errorf("vmm-qemu: memory = \"mapped\" needs a vault whose file system can clone files (crypt-luks with XFS: vaults of 400 MiB or more made with xfsprogs installed); this one cannot: use memory = \"auto\": %w", sdk.ErrIncompatibleHost)
		}
		return memoryMapped, nil
	}
	if canClone(filepath.Join(machineDir, memoryDir)) {
		return memoryMapped, nil
	}
	return memoryStream, nil
}

// memoryArgs are QEMU's arguments for RAM backed by path.
func memoryArgs(path string, mib uint64) []string {
	return []string{"-object", fmt.Sprintf("memory-backend-file,id=pc.ram,size=%dM,mem-path=%s,share=on", mib, qemuOpt(path))}
}

// qemuOpt escapes a value for QEMU's option syntax (a comma is doubled).
func qemuOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// prefetch reads path from start to end in the background, so the pages
// the guest has not touched yet are in the page cache when it does; it
// stops at ctx's end. It returns when done.
//
// The guest comes first: a page it touches that is not in memory yet is
// a major fault of QEMU's (faults counts them), read from the pad while
// the guest waits. A read of the prefetch queued before it makes it
// wait longer, so while the guest faults the prefetch holds back (up to
// prefetchYield before each read, so that it still ends), and it reads
// in small pieces.
func prefetch(ctx context.Context, path string, faults func() uint64) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	buf := make([]byte, prefetchPiece)
	last := faults()
	for off := int64(0); ctx.Err() == nil; off += int64(len(buf)) {
		// Until no fault came for prefetchQuiet: the guest is not
		// waiting for the pad.
		for waited := time.Duration(0); waited < prefetchYield; waited += prefetchQuiet {
			now := faults()
			if now == last {
				break
			}
			last = now
			time.Sleep(prefetchQuiet)
		}
		n, err := f.ReadAt(buf, off)
		if n == 0 || err != nil {
			return
		}
	}
}

// The prefetch's pieces, and how it yields to the guest's faults.
const (
	prefetchPiece = 256 << 10
	prefetchQuiet = 2 * time.Millisecond
	prefetchYield = 200 * time.Millisecond
)

// majorFaults counts process pid's major faults (/proc/pid/stat); 0 once
// it is gone.
func majorFaults(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	return statMajorFaults(b)
}

// statMajorFaults is the majflt field of a /proc/pid/stat line (0 if it
// has none).
func statMajorFaults(b []byte) uint64 {
	i := bytes.LastIndexByte(b, ')') // the name may hold spaces
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 10 {
		return 0
	}
	n, _ := strconv.ParseUint(f[9], 10, 64) // majflt, field 12
	return n
}
