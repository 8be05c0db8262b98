package pad

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/soulpad/soulpad/sdk"
)

// Verify re-reads every file of the point against its manifest. A
// mismatch is an error wrapping sdk.ErrCorrupt that names the file; the
// point is never changed or removed.
func (p Point) Verify() error {
	return p.verify(context.Background(), func(FileSum) bool { return true })
}

// VerifyEager is Verify for the files a resume reads before the machine
// runs: all but the mapped ones, and those the VMM plugin checks as it
// loads them (OnLoad, see OnLoadSums).
func (p Point) VerifyEager() error {
	return p.verify(context.Background(), func(f FileSum) bool { return !f.Mapped && !f.OnLoad })
}

// OnLoadSums are the sums the VMM plugin checks as it loads the files.
func (p Point) OnLoadSums() []FileSum {
	var out []FileSum
	for _, f := range p.Manifest.Files {
		if f.OnLoad {
			out = append(out, f)
		}
	}
	return out
}

// VerifyMapped is Verify for the mapped files, which a resume checks
// beside the running machine; it stops early when ctx ends.
func (p Point) VerifyMapped(ctx context.Context) error {
	return p.verify(ctx, func(f FileSum) bool { return f.Mapped })
}

// HasMapped says whether the point has mapped files.
func (p Point) HasMapped() bool {
	for _, f := range p.Manifest.Files {
		if f.Mapped {
			return true
		}
	}
	return false
}

func (p Point) verify(ctx context.Context, which func(FileSum) bool) error {
	for _, f := range p.Manifest.Files {
		if !which(f) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var got FileSum
		var err error
		if f.SumOfChunks {
			got, err = verifyChunks(ctx, filepath.Join(p.Dir, f.Name), f)
		} else {
			got, err = sumFileCtx(ctx, filepath.Join(p.Dir, f.Name), false)
		}
		if err != nil {
			return p.fileErr(f, err)
		}
		if got.Size != f.Size {
			return fmt.Errorf("suspend point %s: %s is %d bytes, the manifest says %d (truncated?): %w", p.Manifest.ID, f.Name, got.Size, f.Size, sdk.ErrCorrupt)
		}
		if got.SHA256 != f.SHA256 {
			return fmt.Errorf("suspend point %s: %s does not match its checksum: %w", p.Manifest.ID, f.Name, sdk.ErrCorrupt)
		}
	}
	return nil
}
