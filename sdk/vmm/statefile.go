package vmm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/soulpad/soulpad/sdk"
)

// StatePath is the path of a point's state file name in stateDir, once
// it is known to be there and not empty: a missing one fails with
// sdk.ErrNotFound and an empty one with sdk.ErrCorrupt, as Resume's
// contract asks.
func StatePath(stateDir, name string) (string, error) {
	path := filepath.Join(stateDir, name)
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return path, fmt.Errorf("no %s in %s: %w", name, stateDir, sdk.ErrNotFound)
	case err != nil:
		return path, err
	case st.Size() == 0:
		return path, fmt.Errorf("%s is empty: %w", path, sdk.ErrCorrupt)
	}
	return path, nil
}
