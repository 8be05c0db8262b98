package vmm

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/soulpad/soulpad/sdk"
)

// A missing state is not found, an empty one is corrupt, a written one
// is its path.
func TestStatePathTellsMissingFromEmpty(t *testing.T) {
	dir := t.TempDir()
	if _, err := StatePath(dir, "memory.state"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("missing: %v; want ErrNotFound", err)
	}
	p := filepath.Join(dir, "memory.state")
	os.WriteFile(p, nil, 0o600)
	if _, err := StatePath(dir, "memory.state"); !errors.Is(err, sdk.ErrCorrupt) {
		t.Fatalf("empty: %v; want ErrCorrupt", err)
	}
	os.WriteFile(p, []byte("state"), 0o600)
	if got, err := StatePath(dir, "memory.state"); err != nil || got != p {
		t.Fatalf("written: %q, %v; want %q", got, err, p)
	}
}
