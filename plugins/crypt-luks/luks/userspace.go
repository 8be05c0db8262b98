package luks

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// payload serves the decrypted payload of a LUKS container as one file,
// "volume", on a private FUSE mount. Nothing decrypted is written to disk:
// the kernel's loop driver mounts the ext4 inside from it.
type payload struct {
	f      *os.File // buffered
	df     *os.File // for whole-sector writes: O_DIRECT where it works, else f
	x      *xtsCipher
	offset int64 // payload offset in the container
	size   int64
	ss     int64
	rmw    sync.RWMutex // unaligned writes take it exclusively
	server *fuse.Server
	dir    string
	loop   string // the loop device over the payload, once set up
}

// detachLoop lets go of the loop device.
func (p *payload) detachLoop() {
	if p.loop != "" {
		_ = exec.Command("losetup", "-d", p.loop).Run()
		p.loop = ""
	}
}

// servePayload mounts the payload of u (container file at path) at a new
// directory and returns it; the file is dir/volume.
func servePayload(path string, u *unsealed) (*payload, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	// Whole-sector writes go through a second descriptor with O_DIRECT
	// where the file system allows it: they skip the page cache (and a
	// copy), and cipher text is not cached beside the vault's own page
	// cache. Reads stay buffered for the kernel's read-ahead (direct
	// reads measured no faster); a direct write drops the cached range,
	// so the two stay coherent. 512-byte-sector containers (cryptsetup's
	// default) may be misaligned for O_DIRECT and are written through f.
	df := f
	if u.vol.StorageSectorSize%4096 == 0 && u.vol.StorageOffset%4096 == 0 {
		if d, err := os.OpenFile(path, os.O_RDWR|syscall.O_DIRECT, 0); err == nil {
			df = d
		}
	}
	closeFiles := func() {
		f.Close()
		if df != f {
			df.Close()
		}
	}
	x, err := newXTS(u.key, int(u.vol.StorageSectorSize), u.vol.StorageIvTweak)
	if err != nil {
		closeFiles()
		return nil, err
	}
	served := false
	defer func() {
		if !served {
			x.wipe()
		}
	}()
	size := int64(u.vol.StorageSize)
	if size == 0 {
		st, err := f.Stat()
		if err != nil {
			closeFiles()
			return nil, err
		}
		size = st.Size() - int64(u.vol.StorageOffset)
	}
	dir, err := os.MkdirTemp("", "soulpad-luks-")
	if err != nil {
		closeFiles()
		return nil, err
	}
	p := &payload{f: f, df: df, x: x, offset: int64(u.vol.StorageOffset), size: size, ss: int64(u.vol.StorageSectorSize), dir: dir}
	root := &rootNode{p: p}
	srv, err := fs.Mount(dir, root, &fs.Options{MountOptions: fuse.MountOptions{
		FsName: "soulpad-luks", Name: "soulpad-luks", MaxWrite: 1 << 20, DisableXAttrs: true,
		DirectMount: true,
		// Replies are copied from memory: splicing has nothing to gain
		// and costs a pipe round trip per read.
		DisableSplice: true,
		// With the loop device in direct-I/O mode, async direct I/O lets
		// the kernel keep many requests in flight, served in parallel.
		ExtraCapabilities: fuse.CAP_ASYNC_DIO, MaxBackground: 64,
	}})
	if err != nil {
		closeFiles()
		os.Remove(dir)
		return nil, fmt.Errorf("crypt-luks: FUSE mount: %w", err)
	}
	p.server = srv
	served = true
	return p, nil
}

// File is the payload's path.
func (p *payload) File() string { return p.dir + "/volume" }

// close unmounts and closes; the key schedule goes with the cipher.
// The FUSE mount is kept, serving, if it cannot be unmounted: close
// can be tried again.
func (p *payload) close() error {
	p.detachLoop()
	// The loop device lets go of the payload asynchronously.
	var err error
	for i := 0; i < 50; i++ {
		if err = p.server.Unmount(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	p.server.Wait()
	p.f.Sync()
	p.f.Close()
	if p.df != p.f {
		p.df.Close()
	}
	os.Remove(p.dir)
	p.x.wipe()
	p.x = nil
	return nil
}

func (p *payload) readAt(dst []byte, off int64) (int, error) {
	if off >= p.size {
		return 0, nil
	}
	if off+int64(len(dst)) > p.size {
		dst = dst[:p.size-off]
	}
	if off%p.ss == 0 && int64(len(dst))%p.ss == 0 {
		// The loop device's case: read and decrypt in place, chunks in
		// parallel so that the copy from the page cache overlaps the cipher.
		buf, put := getBuf(len(dst))
		defer put()
		err := p.chunks(len(dst), func(a, b int) error {
			if _, err := p.f.ReadAt(buf[a:b], p.offset+off+int64(a)); err != nil {
				return err
			}
			p.x.cryptSerial(dst[a:b], buf[a:b], uint64((off+int64(a))/p.ss), false)
			return nil
		})
		if err != nil {
			return 0, err
		}
		return len(dst), nil
	}
	start := off / p.ss * p.ss
	end := (off + int64(len(dst)) + p.ss - 1) / p.ss * p.ss
	buf, put := getBuf(int(end - start))
	defer put()
	if _, err := p.f.ReadAt(buf, p.offset+start); err != nil {
		return 0, err
	}
	p.x.crypt(buf, buf, uint64(start/p.ss), false)
	n := copy(dst, buf[off-start:])
	clear(buf) // it held plaintext
	return n, nil
}

// chunks splits n bytes (whole sectors) into one run of sectors per CPU
// and calls f on each in parallel; small requests run in one piece.
func (p *payload) chunks(n int, f func(a, b int) error) error {
	ss := int(p.ss)
	sectors := n / ss
	workers := runtime.GOMAXPROCS(0)
	if sectors < 32 || workers < 2 {
		return f(0, n)
	}
	per := (sectors + workers - 1) / workers * ss
	errs := make(chan error, workers)
	for a := 0; a < n; a += per {
		b := min(a+per, n)
		go func() { errs <- f(a, b) }()
	}
	var first error
	for a := 0; a < n; a += per {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (p *payload) writeAt(src []byte, off int64) (int, error) {
	if off+int64(len(src)) > p.size {
		return 0, syscall.ENOSPC
	}
	aligned := off%p.ss == 0 && int64(len(src))%p.ss == 0
	if aligned {
		p.rmw.RLock()
		defer p.rmw.RUnlock()
		// One request, one write: the kernel keeps many requests in
		// flight, which spreads the cipher over the CPUs, and whole
		// requests make fewer, larger disk writes (splitting each over
		// the CPUs measured slower).
		buf, put := getBuf(len(src))
		defer put()
		p.x.cryptSerial(buf, src, uint64(off/p.ss), true)
		if _, err := p.df.WriteAt(buf, p.offset+off); err != nil {
			return 0, err
		}
		return len(src), nil
	}
	p.rmw.Lock()
	defer p.rmw.Unlock()
	start := off / p.ss * p.ss
	end := (off + int64(len(src)) + p.ss - 1) / p.ss * p.ss
	buf, put := getBuf(int(end - start))
	defer put()
	if _, err := p.f.ReadAt(buf, p.offset+start); err != nil {
		return 0, err
	}
	p.x.crypt(buf, buf, uint64(start/p.ss), false)
	copy(buf[off-start:], src)
	p.x.crypt(buf, buf, uint64(start/p.ss), true)
	if _, err := p.f.WriteAt(buf, p.offset+start); err != nil {
		return 0, err
	}
	return len(src), nil
}

// fill writes encrypted zeros over the whole payload, as cryptsetup's
// FAQ advises for a new container: the container then shows nothing of
// which blocks hold data (a sparse file would), and later writes
// overwrite blocks in place, which file systems run in parallel (writes
// that allocate are serialized). progress gets the bytes written so far,
// every 64 MiB and at the end.
func (p *payload) fill(ctx context.Context, progress func(done, total int64)) error {
	const chunk = 1 << 20
	zero := make([]byte, chunk) // writeAt leaves its source alone
	var next, done atomic.Int64
	workers := 2 * runtime.GOMAXPROCS(0) // keep the disk busy while others encrypt
	errs := make(chan error, workers)
	// progress is called from one goroutine at a time, with counts that
	// only grow.
	var mu sync.Mutex
	var reported int64
	report := func(d int64) {
		mu.Lock()
		defer mu.Unlock()
		if d > reported {
			reported = d
			progress(d, p.size)
		}
	}
	for w := 0; w < workers; w++ {
		go func() {
			for {
				if err := ctx.Err(); err != nil {
					errs <- err
					return
				}
				off := next.Add(chunk) - chunk
				if off >= p.size {
					errs <- nil
					return
				}
				n := min(chunk, p.size-off)
				if _, err := p.writeAt(zero[:n], off); err != nil {
					errs <- fmt.Errorf("fill the container at payload offset %d: %w", off, err)
					return
				}
				if d := done.Add(n); progress != nil && (d%(64<<20) < chunk || d == p.size) {
					report(d)
				}
			}
		}()
	}
	var first error
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return first
	}
	return p.df.Sync()
}

// bufPool holds 4096-aligned buffers (as O_DIRECT wants) for cipher text;
// one that held plaintext is cleared before it goes back.
var bufPool = sync.Pool{New: func() any { return alignedBuf(1 << 20) }}

func alignedBuf(n int) *[]byte {
	b := make([]byte, n+4096)
	a := int(4096 - uintptr(unsafe.Pointer(&b[0]))%4096)
	b = b[a%4096 : a%4096+n]
	return &b
}

// getBuf returns an aligned buffer of n bytes and the func that returns it.
func getBuf(n int) ([]byte, func()) {
	if n > 1<<20 {
		return *alignedBuf(n), func() {}
	}
	bp := bufPool.Get().(*[]byte)
	return (*bp)[:n], func() { bufPool.Put(bp) }
}

type rootNode struct {
	fs.Inode
	p *payload
}

var _ fs.NodeOnAdder = (*rootNode)(nil)

func (r *rootNode) OnAdd(ctx context.Context) {
	ch := r.NewPersistentInode(ctx, &volumeNode{p: r.p}, fs.StableAttr{Mode: syscall.S_IFREG, Ino: 2})
	r.AddChild("volume", ch, false)
}

type volumeNode struct {
	fs.Inode
	p *payload
}

var (
	_ fs.NodeOpener    = (*volumeNode)(nil)
	_ fs.NodeReader    = (*volumeNode)(nil)
	_ fs.NodeWriter    = (*volumeNode)(nil)
	_ fs.NodeGetattrer = (*volumeNode)(nil)
	_ fs.NodeSetattrer = (*volumeNode)(nil)
	_ fs.NodeFsyncer   = (*volumeNode)(nil)
	_ fs.NodeFlusher   = (*volumeNode)(nil)
)

func (v *volumeNode) Open(context.Context, uint32) (fs.FileHandle, uint32, syscall.Errno) {
	// Direct I/O: the loop device's requests reach the payload whole,
	// and no decrypted page is cached twice.
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (v *volumeNode) Getattr(_ context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0o600
	out.Size = uint64(v.p.size)
	out.Blksize = uint32(v.p.ss)
	out.Blocks = uint64(v.p.size) / 512
	return 0
}

func (v *volumeNode) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok && int64(sz) != v.p.size {
		return syscall.EPERM // the payload's size is fixed
	}
	return v.Getattr(ctx, fh, out)
}

func (v *volumeNode) Read(_ context.Context, _ fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := v.p.readAt(dest, off)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (v *volumeNode) Write(_ context.Context, _ fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	n, err := v.p.writeAt(data, off)
	if err != nil {
		return 0, fs.ToErrno(err)
	}
	return uint32(n), 0
}

func (v *volumeNode) Fsync(context.Context, fs.FileHandle, uint32) syscall.Errno {
	return fs.ToErrno(v.p.f.Sync())
}

func (v *volumeNode) Flush(context.Context, fs.FileHandle) syscall.Errno { return 0 }
