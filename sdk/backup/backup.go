// Package backup is the contract of backup plugins: they copy the pad, as
// it sits locked (cipher text and sealed suspend points), to another place,
// incrementally, and bring it back.
package backup

import (
	"context"
	"time"

	"github.com/soulpad/soulpad/sdk"
)

// APIVersion is the version of this contract.
const APIVersion = 1

// Capabilities a backup plugin may announce in Info.
const (
	// CapVerify: the plugin implements Verifier.
	CapVerify = "verify"
	// CapPrune: the plugin implements Pruner.
	CapPrune = "prune"
)

// Progress reports long work. BytesTotal may be 0 when unknown.
type Progress struct {
	Phase      string
	BytesDone  uint64
	BytesTotal uint64
	FilesDone  uint64
	FilesTotal uint64
	Current    string
}

// BackupRequest backs up SourceDir (the locked pad).
type BackupRequest struct {
	SourceDir string
	Tags      map[string]string
	// OnProgress, when set, is called with progress as the work goes on. It
	// does not cross the RPC; the adapters carry the progress stream.
	OnProgress func(Progress) `json:"-"`
}

// BackupResponse summarises a finished backup.
type BackupResponse struct {
	SnapshotID   string
	BytesScanned uint64
	// BytesSent is what reached the target (after deduplication).
	BytesSent uint64
	Files     uint64
}

// Snapshot is one backup in the target.
type Snapshot struct {
	ID        string
	Time      time.Time
	SizeBytes uint64
	Tags      map[string]string
}

// ListRequest lists snapshots.
type ListRequest struct{}

// ListResponse lists snapshots, oldest first.
type ListResponse struct{ Snapshots []Snapshot }

// RestoreRequest restores a snapshot into TargetDir, which must be absent
// or empty (sdk.ErrAlreadyExists otherwise).
type RestoreRequest struct {
	SnapshotID string
	TargetDir  string
	OnProgress func(Progress) `json:"-"`
}

// RestoreResponse summarises a restore.
type RestoreResponse struct {
	BytesRestored uint64
	Files         uint64
}

// Backup is the interface every backup plugin implements.
type Backup interface {
	sdk.Plugin
	// Backup makes a new snapshot of SourceDir. An interrupted backup leaves
	// every earlier snapshot restorable, and the next call completes.
	Backup(ctx context.Context, req BackupRequest) (BackupResponse, error)
	// List lists the snapshots in the target.
	List(ctx context.Context, req ListRequest) (ListResponse, error)
	// Restore writes a snapshot into an empty TargetDir and verifies it;
	// sdk.ErrNotFound for an unknown snapshot.
	Restore(ctx context.Context, req RestoreRequest) (RestoreResponse, error)
}

// VerifyRequest checks a snapshot's integrity in the target.
type VerifyRequest struct{ SnapshotID string }

// VerifyResponse reports a verification that passed; a failed one is an
// error wrapping sdk.ErrCorrupt.
type VerifyResponse struct{ Details string }

// Verifier is optional (capability "verify").
type Verifier interface {
	Verify(ctx context.Context, req VerifyRequest) (VerifyResponse, error)
}

// PruneRequest removes all but the newest KeepLast snapshots.
type PruneRequest struct{ KeepLast int }

// PruneResponse lists removed snapshot IDs.
type PruneResponse struct{ Removed []string }

// Pruner is optional (capability "prune").
type Pruner interface {
	Prune(ctx context.Context, req PruneRequest) (PruneResponse, error)
}
