package luks_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/soulpad/soulpad/sdk/crypt"
)

// BenchmarkVaultThroughput writes and reads a file sequentially inside an
// unlocked vault (the userspace engine: XTS in this process, FUSE, loop,
// ext4) and, in the same run, the same file on the raw disk beside it.
// Writes end with fsync; reads start from dropped caches. It prints the
// vault's throughput as a share of the raw disk's, for each pass and for
// all passes together.
func BenchmarkVaultThroughput(b *testing.B) {
	const size = 512 << 20
	requireHost(b)
	ctx := context.Background()
	dir := b.TempDir()
	c := newPlugin(b)
	vault, plain := createOpen(b, c, dir, 4*size) // room to spare, as a real vault has
	defer c.Lock(ctx, crypt.LockRequest{VaultPath: vault})
	buf := make([]byte, 1<<20)
	rand.Read(buf)
	raw := filepath.Join(dir, "raw")
	os.Mkdir(raw, 0o700)
	mbs := func(n int, d time.Duration) float64 { return float64(n) / d.Seconds() / 1e6 }
	var rawW, rawR, vaultW, vaultR time.Duration
	for i := 0; i < b.N; i++ {
		rw, rr := seqWriteRead(b, filepath.Join(raw, "f"), buf, size)
		vw, vr := seqWriteRead(b, filepath.Join(plain, "f"), buf, size)
		rawW, rawR, vaultW, vaultR = rawW+rw, rawR+rr, vaultW+vw, vaultR+vr
		fmt.Printf("crypt-luks userspace engine, %d MiB sequential: write %.0f MB/s vs raw %.0f MB/s (%.0f%%); read %.0f MB/s vs raw %.0f MB/s (%.0f%%)\n",
			size>>20, mbs(size, vw), mbs(size, rw), 100*rw.Seconds()/vw.Seconds(), mbs(size, vr), mbs(size, rr), 100*rr.Seconds()/vr.Seconds())
	}
	// The metrics take all iterations together: this VM's disk speed
	// swings from one pass to the next.
	total := size * b.N
	b.ReportMetric(mbs(total, vaultW), "vault-write-MB/s")
	b.ReportMetric(mbs(total, vaultR), "vault-read-MB/s")
	b.ReportMetric(mbs(total, rawW), "raw-write-MB/s")
	b.ReportMetric(mbs(total, rawR), "raw-read-MB/s")
	b.ReportMetric(rawW.Seconds()/vaultW.Seconds(), "vault/raw-write")
	b.ReportMetric(rawR.Seconds()/vaultR.Seconds(), "vault/raw-read")
	if b.N > 1 {
		fmt.Printf("crypt-luks userspace engine, %d passes of %d MiB: write %.0f%% of raw, read %.0f%% of raw\n",
			b.N, size>>20, 100*rawW.Seconds()/vaultW.Seconds(), 100*rawR.Seconds()/vaultR.Seconds())
	}
}

// seqWriteRead writes size bytes to path in 1 MiB writes and fsyncs, then
// drops the page cache and reads them back; it returns both durations.
func seqWriteRead(b *testing.B, path string, buf []byte, size int) (time.Duration, time.Duration) {
	dropCaches(b)
	start := time.Now()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	for n := 0; n < size; n += len(buf) {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	w := time.Since(start)
	dropCaches(b)
	start = time.Now()
	f, err = os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	for {
		n, err := f.Read(buf)
		if n == 0 || err != nil {
			break
		}
	}
	f.Close()
	r := time.Since(start)
	os.Remove(path)
	return w, r
}

func dropCaches(b *testing.B) {
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		b.Logf("cannot drop caches (%v): reads may come from memory", err)
	}
}
