package vmm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/atomicfile"
)

// ResultFile is where a plugin that finished a Suspend leaves its
// response, in StateDir, last (WriteResult): a suspend that was asked for
// is then sealed by the next run even if the caller died before it could
// (soulpad killed mid-suspend). The core removes it before sealing.
const ResultFile = "vmm-result.json"

// maxResult bounds what ReadResult reads: a response names a few files.
const maxResult = 1 << 20

// WriteResult writes r into dir as ResultFile, durably: the files it names
// must be complete and synced before.
func WriteResult(dir string, r SuspendResponse) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, ResultFile), b, 0o600)
}

// ReadResult reads a ResultFile from dir (sdk.ErrNotFound when there is
// none: the suspend did not finish).
func ReadResult(dir string) (SuspendResponse, error) {
	var r SuspendResponse
	f, err := os.Open(filepath.Join(dir, ResultFile))
	if errors.Is(err, os.ErrNotExist) {
		return r, fmt.Errorf("no %s in %s: %w", ResultFile, dir, sdk.ErrNotFound)
	}
	if err != nil {
		return r, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxResult+1))
	if err != nil {
		return r, err
	}
	if len(b) > maxResult {
		return r, fmt.Errorf("%s is over %d bytes: %w", ResultFile, maxResult, sdk.ErrCorrupt)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: %v: %w", ResultFile, err, sdk.ErrCorrupt)
	}
	if len(r.Files) == 0 {
		return r, fmt.Errorf("%s names no files: %w", ResultFile, sdk.ErrCorrupt)
	}
	return r, nil
}
