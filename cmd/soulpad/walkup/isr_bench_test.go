package walkup

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/soulpad/soulpad/core/isr"
	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/internal/testcli"
	"github.com/soulpad/soulpad/internal/tests3"
	"github.com/soulpad/soulpad/internal/vmmbench"
)

// BenchmarkISRCopy measures Internet Suspend/Resume on a real S3 server
// (SeaweedFS on 127.0.0.1) with a crypt-luks pad:
//
//   - copy-out: the bytes a copy-out sends after a session in which the
//     guest re-dirtied 5% of its RAM and wrote 1% of its disk, against
//     the pad's size (goal ≤ 10%), read off the store's own listing;
//
//   - copy-in: `soulpad store pull` into an empty place against a plain
//     parallel download (as many workers as store-s3 uses) of the same
//     objects from the same server into files, alternating, median of
//     SOULPAD_BENCH_REPS (default 3) (goal ≤ 1.2×).
//
//     make bench   (or: go test -run '^$' -bench ISRCopy -benchtime 1x -timeout 60m ./cmd/soulpad/walkup)
//
// SOULPAD_BENCH_SIZES picks the guest's RAM (default "1024").
func BenchmarkISRCopy(b *testing.B) {
	_, reps, sizes := benchSettings(b, 1024)
	for _, mib := range sizes {
		isrCopy(b, mib, reps)
	}
}

func isrCopy(b *testing.B, mib uint64, reps int) {
	srv := tests3.Start(b)
	testbin.Build(b, "plugins/store-s3")
	const diskMiB = 1024
	cmdline := fmt.Sprintf("console=ttyS0 quiet panic=-1 soulpad.dirty_mib=%d soulpad.redirty_at=14 soulpad.redirty_mib=%d soulpad.redirty_disk_mib=%d",
		mib*5/8, mib*5/100, diskMiB/100)
	e := testcli.QEMUEnv(b, cmdline, "crypt-luks")
	f, err := os.OpenFile(e.Cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	fmt.Fprintf(f, "store { name = \"bench\" }\n%s", srv.HCL())
	f.Close()
	b.Setenv("SOULPAD_PLUGINS_STORE", "store-s3")
	b.Setenv("SOULPAD_MACHINE_MEMORY_MIB", strconv.FormatUint(mib, 10))
	b.Setenv("SOULPAD_MACHINE_DISK_SIZE_MIB", strconv.Itoa(diskMiB))
	b.Setenv("SOULPAD_PAD_VAULT_SIZE_MIB", strconv.FormatUint(mib*3+512, 10))
	b.Setenv("SOULPAD_PAD_PATH", e.Pad)
	if out, errOut, code := e.Run(b, "init"); code != 0 {
		b.Fatalf("init: %s %s", out, errOut)
	}
	s3c := s3Client(b, srv)
	load0 := vmmbench.LoadAverage()

	_, buf, done := e.StartRun(b)
	e.WaitCounter(b, 2)
	before := storedBytes(b, s3c, srv.Bucket)
	if _, _, code := e.Run(b, "suspend"); code != 0 {
		b.Fatal("suspend failed")
	}
	testcli.Wait(b, done, buf)
	first := storedBytes(b, s3c, srv.Bucket) - before
	_, buf, done = e.StartRun(b)
	waitConsole(b, e, "redirtied")
	before = storedBytes(b, s3c, srv.Bucket)
	if _, _, code := e.Run(b, "suspend"); code != 0 {
		b.Fatal("suspend failed")
	}
	testcli.Wait(b, done, buf)
	second := storedBytes(b, s3c, srv.Bucket) - before
	padBytes := dirBytes(b, e.Pad)
	if !strings.Contains(buf.String(), "copied out version 2") {
		b.Fatalf("the second session did not copy out version 2:\n%s", buf.String())
	}

	// Copy-in into an empty place against a plain parallel download.
	var pulls, plains []float64
	for r := 0; r < reps; r++ {
		plains = append(plains, plainDownload(b, s3c, srv.Bucket))
		dst := filepath.Join(b.TempDir(), "pad")
		b.Setenv("SOULPAD_PAD_PATH", dst)
		t0 := time.Now()
		if out, errOut, code := e.Run(b, "store", "pull"); code != 0 {
			b.Fatalf("store pull: %s %s", out, errOut)
		}
		pulls = append(pulls, time.Since(t0).Seconds())
	}
	pull, plain := vmmbench.Median(pulls), vmmbench.Median(plains)
	fmt.Printf("\nISR with a %d MiB guest on crypt-luks, store-s3 on SeaweedFS (127.0.0.1; load average %.1f → %.1f%s)\n", mib, load0, vmmbench.LoadAverage(), vmmbench.Noisy(load0))
	fmt.Printf("pad %.0f MiB; first copy-out sent %.0f MiB; after re-dirtying 5%% of RAM (%d MiB) and 1%% of the disk (%d MiB) the copy-out sent %.1f MiB = %.1f%% of the pad (goal ≤ 10%%)\n",
		mb(padBytes), mb(first), mib*5/100, diskMiB/100, mb(second), float64(second)/float64(padBytes)*100)
	fmt.Printf("copy-in of %.0f MiB into an empty place: soulpad store pull %.2f s, plain parallel download %.2f s: %.2fx (goal ≤ 1.2x; median of %d)\n",
		mb(padBytes), pull, plain, pull/plain, reps)
	b.ReportMetric(float64(second)/float64(padBytes)*100, "copyout-%pad")
	b.ReportMetric(pull/plain, "copyin/plain")
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }

func s3Client(b *testing.B, srv tests3.Server) *minio.Client {
	secret, err := os.ReadFile(srv.SecretKeyFile)
	if err != nil {
		b.Fatal(err)
	}
	c, err := minio.New(srv.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(srv.AccessKey, strings.TrimSpace(string(secret)), "")})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// storedBytes is the size of every chunk object on the store.
func storedBytes(b *testing.B, c *minio.Client, bucket string) int64 {
	var n int64
	for obj := range c.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			b.Fatal(obj.Err)
		}
		if strings.Contains(obj.Key, "/chunks/") {
			n += obj.Size
		}
	}
	return n
}

func dirBytes(b *testing.B, dir string) int64 {
	var n int64
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode().IsRegular() && !strings.Contains(p, "/.store/") && filepath.Base(p) != "lock" {
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// plainDownload fetches the chunk objects of the newest version into
// files of a fresh directory with 8 workers (store-s3's default), and
// returns the seconds.
func plainDownload(b *testing.B, c *minio.Client, bucket string) float64 {
	var newest string
	for obj := range c.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Prefix: "pads/bench/versions/", Recursive: true}) {
		if obj.Key > newest {
			newest = obj.Key
		}
	}
	obj, err := c.GetObject(context.Background(), bucket, newest, minio.GetObjectOptions{})
	if err != nil {
		b.Fatal(err)
	}
	mbytes, err := io.ReadAll(obj)
	obj.Close()
	if err != nil {
		b.Fatal(err)
	}
	man, err := isr.ParseManifest(mbytes)
	if err != nil {
		b.Fatalf("%s: %v", newest, err)
	}
	seen := map[string]bool{}
	var keys []string
	for _, f := range man.Files {
		for _, c := range f.Chunks {
			if !seen[c] {
				seen[c] = true
				keys = append(keys, "pads/bench/chunks/"+c)
			}
		}
	}
	dir := b.TempDir()
	t0 := time.Now()
	var wg sync.WaitGroup
	work := make(chan string)
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range work {
				obj, err := c.GetObject(context.Background(), bucket, k, minio.GetObjectOptions{})
				if err == nil {
					var f *os.File
					if f, err = os.Create(filepath.Join(dir, filepath.Base(k))); err == nil {
						_, err = io.Copy(f, obj)
						f.Close()
					}
					obj.Close()
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	return time.Since(t0).Seconds()
}
