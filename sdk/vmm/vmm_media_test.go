package vmm

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMediaStaysInTheMachineDirectory(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "media.iso"), []byte("iso"), 0o600)
	os.Symlink("/etc/passwd", filepath.Join(dir, "link.iso"))
	if p, err := (Spec{Media: "media.iso"}).MediaPath(dir); err != nil || p != filepath.Join(dir, "media.iso") {
		t.Fatalf("%q %v", p, err)
	}
	if p, err := (Spec{}).MediaPath(dir); err != nil || p != "" {
		t.Fatalf("an empty drive: %q %v", p, err)
	}
	for _, bad := range []string{"/dev/sda", "../media.iso", "..", ".", "link.iso", "missing.iso", ".hidden"} {
		if p, err := (Spec{Media: bad}).MediaPath(dir); err == nil {
			t.Errorf("Media %q was taken as %s", bad, p)
		}
	}
}
