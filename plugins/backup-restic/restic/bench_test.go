package restic_test

import (
	"context"
	"testing"

	"github.com/soulpad/soulpad/internal/backupbench"
	"github.com/soulpad/soulpad/plugins/backup-restic/restic"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/backup"
	"github.com/soulpad/soulpad/sdk/sdktest"
)

// BenchmarkIncrementalOnePercent: bytes sent by an incremental backup
// after 1% of a 4 GiB disk image changed (goal ≤ 3%):
//
//	go test -run '^$' -bench OnePercent -benchtime 1x ./plugins/backup-restic/restic
func BenchmarkIncrementalOnePercent(b *testing.B) {
	requireRestic(b)
	p := sdktest.InProcess(b, restic.New()).(backup.Backup)
	if _, err := p.Configure(context.Background(), sdk.ConfigureRequest{Config: config(b)}); err != nil {
		b.Fatal(err)
	}
	backupbench.Incremental(b, p, "backup-restic")
}
