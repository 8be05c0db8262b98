package chunkstage

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/soulpad/soulpad/sdk"
)

var opts = Options{Threshold: 64 << 10, ChunkSize: 16 << 10}

func write(t *testing.T, p string, b []byte) {
	t.Helper()
	os.MkdirAll(filepath.Dir(p), 0o700)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mtimes(t *testing.T, dir string) map[string]time.Time {
	t.Helper()
	m := map[string]time.Time{}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			m[p] = info.ModTime()
		}
		return nil
	})
	return m
}

func TestStageChunksLargeFilesAndRewritesOnlyChangedChunks(t *testing.T) {
	src, stage := t.TempDir(), t.TempDir()
	big := make([]byte, 200<<10+123) // 13 chunks, the last one short
	rand.Read(big)
	write(t, filepath.Join(src, "vault", "disk.img"), big)
	write(t, filepath.Join(src, "pad.json"), []byte(`{"id":"x"}`))
	st, err := Stage(context.Background(), src, stage, opts)
	if err != nil {
		t.Fatal(err)
	}
	if st.BytesScanned != uint64(len(big))+10 || st.Files != 2 {
		t.Fatalf("stats %+v", st)
	}
	cdir := filepath.Join(stage, "vault", "disk.img"+Suffix)
	if ents, _ := os.ReadDir(cdir); len(ents) != 14 {
		t.Fatalf("%d entries in %s; want 13 chunks and a manifest", len(ents), cdir)
	}
	before := mtimes(t, stage)
	time.Sleep(20 * time.Millisecond)
	// One byte in chunk 5 changes.
	big[5*(16<<10)+7] ^= 0xff
	write(t, filepath.Join(src, "vault", "disk.img"), big)
	st, err = Stage(context.Background(), src, stage, opts)
	if err != nil {
		t.Fatal(err)
	}
	after := mtimes(t, stage)
	var changed []string
	for p, m := range after {
		if !m.Equal(before[p]) {
			changed = append(changed, filepath.Base(p))
		}
	}
	if len(changed) != 2 || st.BytesWritten > 16<<10+4096 {
		t.Fatalf("rewritten %v (%d bytes); want chunk-000005 and the manifest only", changed, st.BytesWritten)
	}

	// A restored staging tree reassembles to the original.
	restored := t.TempDir()
	if err := os.CopyFS(restored, os.DirFS(stage)); err != nil {
		t.Fatal(err)
	}
	if err := Assemble(restored); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(restored, "vault", "disk.img"))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("reassembled %d bytes, %v; want the %d written", len(got), err, len(big))
	}
	if _, err := os.Stat(filepath.Join(restored, "vault", "disk.img"+Suffix)); err == nil {
		t.Fatal("the chunk directory is left after reassembly")
	}
}

func TestAssembleRefusesADamagedChunk(t *testing.T) {
	src, stage := t.TempDir(), t.TempDir()
	big := make([]byte, 100<<10)
	rand.Read(big)
	write(t, filepath.Join(src, "disk.img"), big)
	if _, err := Stage(context.Background(), src, stage, opts); err != nil {
		t.Fatal(err)
	}
	c := filepath.Join(stage, "disk.img"+Suffix, "chunk-000002")
	b, _ := os.ReadFile(c)
	b[0] ^= 1
	os.WriteFile(c, b, 0o600)
	if err := Assemble(stage); !errors.Is(err, sdk.ErrCorrupt) {
		t.Fatalf("Assemble with a damaged chunk = %v; want sdk.ErrCorrupt", err)
	}
	if _, err := os.Stat(filepath.Join(stage, "disk.img")); err == nil {
		t.Fatal("a damaged file was assembled")
	}
}

func TestStageFollowsRemovalsAndSizeChanges(t *testing.T) {
	src, stage := t.TempDir(), t.TempDir()
	write(t, filepath.Join(src, "a", "gone.txt"), []byte("x"))
	write(t, filepath.Join(src, "grows"), []byte("small"))
	if _, err := Stage(context.Background(), src, stage, opts); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(src, "a"))
	big := make([]byte, 80<<10)
	write(t, filepath.Join(src, "grows"), big)
	write(t, filepath.Join(stage, ".soulpad-snapshot"), []byte("kept"))
	if _, err := Stage(context.Background(), src, stage, opts); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(stage, "a")); err == nil {
		t.Error("a directory removed from the source stays staged")
	}
	if _, err := os.Stat(filepath.Join(stage, "grows")); err == nil {
		t.Error("a file that became large is staged whole as well as chunked")
	}
	if _, err := os.Stat(filepath.Join(stage, "grows"+Suffix, ManifestName)); err != nil {
		t.Error("a file that became large is not chunked")
	}
	if _, err := os.Stat(filepath.Join(stage, ".soulpad-snapshot")); err != nil {
		t.Error("the plugin's control file was removed")
	}
}
