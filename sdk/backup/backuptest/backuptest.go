// Package backuptest is the conformance suite for backup plugins.
package backuptest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/backup"
)

// Options tune the suite to a plugin.
type Options struct {
	// Config is the plugin's config block as JSON; it names an empty target.
	Config []byte
}

// Run runs the suite against b: two backups of a changing tree, list,
// restore of each (with its own content), refusal to restore into a
// non-empty directory or an unknown snapshot, and Verify when offered.
func Run(t *testing.T, b backup.Backup, opt Options) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	info, err := b.Info(ctx, sdk.InfoRequest{})
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Kind != sdk.KindBackup || info.Name == "" || !slices.Contains(info.APIVersions, backup.APIVersion) {
		t.Fatalf("Info = %+v; want kind backup, a name, API version %d", info, backup.APIVersion)
	}
	if _, err := b.Configure(ctx, sdk.ConfigureRequest{Config: opt.Config}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	src := t.TempDir()
	write := func(name, content string) {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("pad.json", `{"id":"x"}`)
	write("vault/blob", string(bytes.Repeat([]byte("cipher"), 10000)))
	var progressed bool
	first, err := b.Backup(ctx, backup.BackupRequest{SourceDir: src, Tags: map[string]string{"n": "1"}, OnProgress: func(backup.Progress) { progressed = true }})
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if first.SnapshotID == "" || first.BytesScanned == 0 {
		t.Fatalf("Backup result %+v lacks a snapshot ID or bytes scanned", first)
	}
	if !progressed {
		t.Error("Backup reported no progress")
	}
	write("vault/blob", string(bytes.Repeat([]byte("CIPHER"), 10000)))
	write("journal/new.jsonl", "{}\n")
	second, err := b.Backup(ctx, backup.BackupRequest{SourceDir: src})
	if err != nil {
		t.Fatalf("second Backup: %v", err)
	}
	l, err := b.List(ctx, backup.ListRequest{})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var ids []string
	for _, s := range l.Snapshots {
		ids = append(ids, s.ID)
	}
	if !slices.Contains(ids, first.SnapshotID) || !slices.Contains(ids, second.SnapshotID) {
		t.Fatalf("List = %v; want both %s and %s", ids, first.SnapshotID, second.SnapshotID)
	}

	restore := func(id string) string {
		dst := filepath.Join(t.TempDir(), "restored")
		if _, err := b.Restore(ctx, backup.RestoreRequest{SnapshotID: id, TargetDir: dst}); err != nil {
			t.Fatalf("Restore %s: %v", id, err)
		}
		return dst
	}
	d1 := restore(first.SnapshotID)
	if got, _ := os.ReadFile(filepath.Join(d1, "vault/blob")); !bytes.HasPrefix(got, []byte("ciphercipher")) {
		t.Fatal("restore of the first snapshot does not have the first content")
	}
	if _, err := os.Stat(filepath.Join(d1, "journal/new.jsonl")); err == nil {
		t.Fatal("restore of the first snapshot has a file added later")
	}
	d2 := restore(second.SnapshotID)
	if got, _ := os.ReadFile(filepath.Join(d2, "vault/blob")); !bytes.HasPrefix(got, []byte("CIPHERCIPHER")) {
		t.Fatal("restore of the second snapshot does not have the second content")
	}

	if _, err := b.Restore(ctx, backup.RestoreRequest{SnapshotID: first.SnapshotID, TargetDir: d2}); !errors.Is(err, sdk.ErrAlreadyExists) {
		t.Fatalf("Restore into a non-empty directory = %v; want sdk.ErrAlreadyExists", err)
	}
	if _, err := b.Restore(ctx, backup.RestoreRequest{SnapshotID: "no-such-snapshot", TargetDir: filepath.Join(t.TempDir(), "x")}); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("Restore of an unknown snapshot = %v; want sdk.ErrNotFound", err)
	}
	if info.Has(backup.CapVerify) {
		v, ok := b.(backup.Verifier)
		if !ok {
			t.Fatal("the plugin announces verify but the client has no Verify")
		}
		if _, err := v.Verify(ctx, backup.VerifyRequest{SnapshotID: second.SnapshotID}); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	}

	t.Run("InterruptedBackupKeepsEarlierSnapshots", func(t *testing.T) {
		// Enough data that the backup is still at work when it is cut off.
		big := make([]byte, 256<<20)
		rand.Read(big)
		if err := os.WriteFile(filepath.Join(src, "vault", "big.img"), big, 0o600); err != nil {
			t.Fatal(err)
		}
		// Cut off (the plugin's helper processes killed with it) once the
		// progress names the new file: the backup is under way.
		ictx, cut := context.WithCancel(ctx)
		_, err := b.Backup(ictx, backup.BackupRequest{SourceDir: src, OnProgress: func(p backup.Progress) {
			if strings.Contains(p.Current, "big.img") {
				cut()
			}
		}})
		cut()
		if err == nil {
			t.Fatal("the backup finished although it was cut off while at big.img (does its progress name the file at work?)")
		}
		d := restore(second.SnapshotID)
		if got, _ := os.ReadFile(filepath.Join(d, "vault/blob")); !bytes.HasPrefix(got, []byte("CIPHERCIPHER")) {
			t.Fatal("after an interrupted backup the previous snapshot no longer restores")
		}
		next, err := b.Backup(ctx, backup.BackupRequest{SourceDir: src})
		if err != nil {
			t.Fatalf("the backup after an interrupted one: %v", err)
		}
		got, err := os.ReadFile(filepath.Join(restore(next.SnapshotID), "vault", "big.img"))
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("the backup after an interrupted one does not restore the new data (%d bytes, %v)", len(got), err)
		}
	})
}
