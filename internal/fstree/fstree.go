// Package fstree has the directory-tree checks the backup code shares.
package fstree

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/soulpad/soulpad/sdk"
)

// CheckRestoreTarget accepts a directory a restore may write into: one
// that does not exist yet or is empty. Anything else is
// sdk.ErrAlreadyExists: a restore never overwrites.
func CheckRestoreTarget(dir string) error {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("restore into %s: %w", dir, err)
	case len(ents) > 0:
		return fmt.Errorf("restore into %s: the directory is not empty; restore into a new one: %w", dir, sdk.ErrAlreadyExists)
	}
	return nil
}

// Count returns the number and total size of the regular files under dir.
func Count(dir string) (files, bytes uint64, err error) {
	err = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			files++
			bytes += uint64(info.Size())
		}
		return err
	})
	return files, bytes, err
}

// Hash hashes every path (relative to root) and regular file under root,
// leaving out the paths skip names (a directory with all below it).
func Hash(root string, skip func(rel string) bool) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if skip != nil && skip(filepath.ToSlash(rel)) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fmt.Fprintln(h, rel)
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}
