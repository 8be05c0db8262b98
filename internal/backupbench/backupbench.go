// Package backupbench measures what a backup plugin sends for a small
// change to a large disk image, for the backup plugins' benchmarks.
package backupbench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/soulpad/soulpad/sdk/backup"
)

// Image is the disk image's size; Changed what is rewritten of it.
const (
	Image   = 4 << 30
	Changed = Image / 100
	regions = 8
)

// Incremental backs up a pad-like tree holding a 4 GiB image of random
// bytes (as the cipher text of a vault looks), rewrites 1% of the image in
// 8 regions at random places (as a session's writes cluster in files),
// backs up again, and reports the second backup's bytes sent as a share
// of the image.
func Incremental(b *testing.B, p backup.Backup, name string) {
	b.Helper()
	ctx := context.Background()
	src := filepath.Join(b.TempDir(), "pad")
	img := filepath.Join(src, "vault", "disk.img")
	if err := os.MkdirAll(filepath.Dir(img), 0o700); err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "pad.json"), []byte(`{"id":"bench"}`), 0o600)
	cc := rand.NewChaCha8([32]byte{1})
	rng := rand.New(cc)
	f, err := os.Create(img)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 8<<20)
	for n := 0; n < Image; n += len(buf) {
		cc.Read(buf)
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	f.Close()
	t0 := time.Now()
	first, err := p.Backup(ctx, backup.BackupRequest{SourceDir: src})
	if err != nil {
		b.Fatal(err)
	}
	full := time.Since(t0)
	f, err = os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	region := make([]byte, Changed/regions)
	for i := 0; i < regions; i++ {
		cc.Read(region)
		if _, err := f.WriteAt(region, rng.Int64N(Image-int64(len(region)))); err != nil {
			b.Fatal(err)
		}
	}
	f.Close()
	b.ResetTimer()
	t0 = time.Now()
	second, err := p.Backup(ctx, backup.BackupRequest{SourceDir: src})
	if err != nil {
		b.Fatal(err)
	}
	incr := time.Since(t0)
	b.StopTimer()
	share := float64(second.BytesSent) / Image
	b.ReportMetric(float64(second.BytesSent)/(1<<20), "sent-MiB")
	b.ReportMetric(100*share, "sent-%-of-image")
	b.ReportMetric(float64(Changed)/(1<<20), "changed-MiB")
	fmt.Printf("%s: 4 GiB image, 1%% (%.0f MiB) changed in %d regions: incremental sent %.1f MiB = %.2f%% of the image (%.2fx the change), %.1f s; the full backup sent %.0f MiB in %.1f s\n",
		name, float64(Changed)/(1<<20), regions, float64(second.BytesSent)/(1<<20), 100*share, float64(second.BytesSent)/Changed, incr.Seconds(),
		float64(first.BytesSent)/(1<<20), full.Seconds())
}
