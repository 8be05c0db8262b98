package tsm_test

import (
	"context"
	"testing"

	"github.com/soulpad/soulpad/internal/backupbench"
	"github.com/soulpad/soulpad/plugins/backup-tsm/tsm"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/backup"
	"github.com/soulpad/soulpad/sdk/sdktest"
)

// BenchmarkIncrementalOnePercent: bytes sent by an incremental backup
// after 1% of a 4 GiB disk image changed (goal ≤ 3%), against the dsmc
// stand-in with the default chunking (4 MiB chunks from 64 MiB):
//
//	go test -run '^$' -bench OnePercent -benchtime 1x ./plugins/backup-tsm/tsm
func BenchmarkIncrementalOnePercent(b *testing.B) {
	p := sdktest.InProcess(b, tsm.New()).(backup.Backup)
	cfg := StandinConfigChunks(b, 4, 64)
	if _, err := p.Configure(context.Background(), sdk.ConfigureRequest{Config: cfg}); err != nil {
		b.Fatal(err)
	}
	backupbench.Incremental(b, p, "backup-tsm (dsmc stand-in)")
}
