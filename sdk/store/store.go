// Package store is the plugin contract for remote stores: Internet
// Suspend/Resume keeps versions of a locked pad on an object store that
// many PCs reach. The core cuts the locked pad (vault cipher text, sealed
// points, the journal) into content-addressed chunks and writes one
// manifest per version; a store plugin keeps those objects and a lease,
// and never sees plaintext or a key.
//
// A plugin must:
//   - make Acquire atomic: of two holders racing for a free lease, one
//     wins and the other gets sdk.ErrBusy; the holder of a lease may
//     acquire it again; Break replaces another holder's lease;
//   - make PutVersion create-only: a version that exists is never
//     overwritten (sdk.ErrAlreadyExists), and a version is visible whole
//     or not at all;
//   - check each piece Fetch writes against its sum before writing it
//     (sdk.ErrCorrupt otherwise), and write nothing outside the pieces;
//   - name what is missing with sdk.ErrNotFound.
package store

import (
	"context"
	"regexp"
	"time"

	"github.com/soulpad/soulpad/sdk"
)

// APIVersion is the store kind's protocol version.
const APIVersion = 1

// Lease says who has a pad checked out.
type Lease struct {
	// Holder identifies the pad on the PC that checked it out.
	Holder string `json:"holder"`
	// Host is the PC's name, for people.
	Host     string    `json:"host"`
	Acquired time.Time `json:"acquired"`
	// Expires is when the lease lapses unless its holder renews it (a
	// live session does, now and then); zero: it holds until released or
	// broken. A lapsed lease is another holder's to take.
	Expires time.Time `json:"expires,omitzero"`
}

// Lapsed says whether l has expired at now.
func (l Lease) Lapsed(now time.Time) bool { return !l.Expires.IsZero() && now.After(l.Expires) }

// Version is one version of a pad on the store.
type Version struct {
	Seq           uint64
	Created       time.Time
	ManifestBytes uint64
}

// Piece is a part of a local file stored as the object named by the
// SHA-256 of its bytes.
type Piece struct {
	Sum    string
	Path   string
	Offset int64
	Length int64
}

// Progress reports a transfer.
type Progress struct {
	BytesDone, BytesTotal   uint64
	PiecesDone, PiecesTotal uint64
}

// AcquireRequest checks a pad out. Its holder acquiring again renews the
// lease (Expires as asked); a lease of another holder that has lapsed is
// taken over as with Break (and returned in Replaced).
type AcquireRequest struct {
	Name  string
	Lease Lease
	// Break replaces the lease of another holder (a PC that is gone).
	Break bool
}

// AcquireResponse is the lease now held.
type AcquireResponse struct {
	Lease Lease
	// Replaced is the other holder's lease that Break (or its lapse)
	// ended.
	Replaced *Lease
}

// ReleaseRequest checks a pad in; a lease of another holder stays.
type ReleaseRequest struct{ Name, Holder string }

// ReleaseResponse is empty.
type ReleaseResponse struct{}

// VersionsRequest lists a pad's versions.
type VersionsRequest struct{ Name string }

// VersionsResponse lists them, oldest first.
type VersionsResponse struct{ Versions []Version }

// GetVersionRequest reads a version's manifest.
type GetVersionRequest struct {
	Name string
	Seq  uint64
}

// GetVersionResponse is the manifest, as the core wrote it.
type GetVersionResponse struct{ Manifest []byte }

// PutVersionRequest makes a version, once its chunks are stored.
type PutVersionRequest struct {
	Name     string
	Seq      uint64
	Manifest []byte
	// Holder must hold the lease.
	Holder string
}

// PutVersionResponse is empty.
type PutVersionResponse struct{}

// MissingRequest asks which chunks the store lacks.
type MissingRequest struct {
	Name string
	Sums []string
}

// MissingResponse names them.
type MissingResponse struct{ Sums []string }

// TransferRequest moves pieces: Push uploads them, Fetch writes them into
// their files (which exist) at their offsets.
type TransferRequest struct {
	Name       string
	Pieces     []Piece
	OnProgress func(Progress) `json:"-"`
}

// TransferResponse totals a transfer.
type TransferResponse struct{ Progress }

// ChunksRequest lists a pad's chunks.
type ChunksRequest struct{ Name string }

// ChunksResponse names them.
type ChunksResponse struct{ Sums []string }

// DeleteRequest removes versions and chunks.
type DeleteRequest struct {
	Name     string
	Versions []uint64
	Sums     []string
}

// DeleteResponse is empty.
type DeleteResponse struct{}

// Store is the interface every store plugin implements.
type Store interface {
	sdk.Plugin
	Acquire(context.Context, AcquireRequest) (AcquireResponse, error)
	Release(context.Context, ReleaseRequest) (ReleaseResponse, error)
	Versions(context.Context, VersionsRequest) (VersionsResponse, error)
	GetVersion(context.Context, GetVersionRequest) (GetVersionResponse, error)
	PutVersion(context.Context, PutVersionRequest) (PutVersionResponse, error)
	Missing(context.Context, MissingRequest) (MissingResponse, error)
	Push(context.Context, TransferRequest) (TransferResponse, error)
	Fetch(context.Context, TransferRequest) (TransferResponse, error)
	Chunks(context.Context, ChunksRequest) (ChunksResponse, error)
	Delete(context.Context, DeleteRequest) (DeleteResponse, error)
}

var (
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	sumRE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ValidName says whether name can name a pad on a store: lower-case
// letters, digits, '.', '_' and '-', at most 63, starting with a letter or
// digit (safe in any object key).
func ValidName(name string) bool { return nameRE.MatchString(name) }

// ValidSum says whether s is a hex SHA-256, as chunk names are.
func ValidSum(s string) bool { return sumRE.MatchString(s) }
