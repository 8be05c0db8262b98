package luks

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/soulpad/soulpad/sdk"
)

// filesystem is the file system for a new container of payload bytes.
func (p *Plugin) filesystem(payload int64) (string, error) {
	_, err := exec.LookPath("mkfs.xfs")
	switch p.cfg.Filesystem {
	case "ext4":
		return "ext4", nil
	case "xfs":
		if err != nil {
			return "", fmt.Errorf("crypt-luks: filesystem \"xfs\" needs mkfs.xfs (install xfsprogs): %w", sdk.ErrIncompatibleHost)
		}
		if payload < 320<<20 {
			return "", fmt.Errorf("crypt-luks: filesystem \"xfs\" needs a vault of at least 336 MiB (XFS needs 300 MiB): %w", sdk.ErrInvalidArgument)
		}
		return "xfs", nil
	}
	if err == nil && payload >= 384<<20 {
		return "xfs", nil
	}
	return "ext4", nil
}

// detectFS names the file system on the device or file at path: xfs or
// ext4 (by their superblocks' magic numbers).
func detectFS(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("crypt-luks: %w", err)
	}
	defer f.Close()
	var sb [1084]byte
	if _, err := f.ReadAt(sb[:], 0); err != nil {
		return "", fmt.Errorf("crypt-luks: read the vault's file system: %w", err)
	}
	return fsOf(sb[:])
}

// mountData are the file system's own mount options, after sep. XFS
// refuses a second file system with the same UUID, and a copied pad (a
// backup restored beside its original, a pad moved to another disk) has
// one: nouuid mounts it anyway.
func mountData(fsType, sep string) string {
	if fsType == "xfs" {
		return sep + "nouuid"
	}
	return ""
}

// fsOf names the file system whose first 1084 bytes are sb.
func fsOf(sb []byte) (string, error) {
	switch {
	case len(sb) >= 4 && string(sb[:4]) == "XFSB":
		return "xfs", nil
	case len(sb) >= 1082 && sb[1080] == 0x53 && sb[1081] == 0xef:
		return "ext4", nil
	}
	return "", fmt.Errorf("crypt-luks: the vault holds neither XFS nor ext4 (a wrong key would read as noise, but the key was checked): %w", sdk.ErrCorrupt)
}
