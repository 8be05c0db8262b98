package pad

import (
	"os"

	"github.com/soulpad/soulpad/sdk/atomicfile"
)

// WriteFileAtomic writes data to path so that a reader (or a power cut)
// sees either the old file or the whole new one (see atomicfile).
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return atomicfile.WriteFile(path, data, perm)
}

// SyncDir fsyncs a directory so that renames and creations in it are
// durable.
func SyncDir(dir string) error { return atomicfile.SyncDir(dir) }
