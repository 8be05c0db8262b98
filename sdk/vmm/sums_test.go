package vmm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

func TestSumWriter(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 1000) // 10000 bytes
	var out bytes.Buffer
	w := NewSumWriter("memory.state", &out, 4096)
	for _, n := range []int{1, 4095, 3000, 2904} { // writes across chunk edges
		if _, err := w.Write(data[:n]); err != nil {
			t.Fatal(err)
		}
		data = data[n:]
	}
	got := w.Sum()
	all := out.Bytes()
	if got.Size != 10000 || !got.SumOfChunks || got.Name != "memory.state" {
		t.Fatalf("sum %+v", got)
	}
	root := sha256.New()
	if len(got.ChunkSHA256) != 3 {
		t.Fatalf("%d chunks; want 3 (4096, 4096, 1808)", len(got.ChunkSHA256))
	}
	for i, c := range got.ChunkSHA256 {
		end := min((i+1)*4096, len(all))
		s := sha256.Sum256(all[i*4096 : end])
		if c != hex.EncodeToString(s[:]) {
			t.Fatalf("chunk %d sum differs", i)
		}
		root.Write(s[:])
	}
	if got.SHA256 != hex.EncodeToString(root.Sum(nil)) {
		t.Fatal("the file's sum is not the sum of its chunk sums")
	}
}

func FuzzSumWriter(f *testing.F) {
	f.Add([]byte("hello"), uint16(3), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint16, step uint8) {
		var out bytes.Buffer
		w := NewSumWriter("f", &out, uint64(chunk)+1)
		s := int(step) + 1
		for i := 0; i < len(data); i += s {
			w.Write(data[i:min(i+s, len(data))])
		}
		root := sha256.New()
		for i := 0; i < len(data); i += int(chunk) + 1 {
			c := sha256.Sum256(data[i:min(i+int(chunk)+1, len(data))])
			root.Write(c[:])
		}
		if sum := w.Sum(); sum.SHA256 != hex.EncodeToString(root.Sum(nil)) || sum.Size != uint64(len(data)) {
			t.Fatal("the sum of the chunk sums differs")
		}
	})
}

func TestSupports(t *testing.T) {
	caps := []string{CapEvents, CapDiskFormatPrefix + "qcow2", CapNetworkPrefix + "user"}
	if !Supports(caps, CapDiskFormatPrefix, "qcow2") || Supports(caps, CapDiskFormatPrefix, "vmdk") {
		t.Fatal("disk formats")
	}
	if !Supports([]string{CapEvents}, CapNetworkPrefix, "bridge") {
		t.Fatal("a plugin that announces no network makes no promise either way")
	}
	if got := Announced(caps, CapNetworkPrefix); len(got) != 1 || got[0] != "user" {
		t.Fatalf("announced %v", got)
	}
}
