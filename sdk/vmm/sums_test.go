package vmm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"
)

// serial makes w hash on the writing goroutine, as it does on one CPU;
// parallel makes it hash on 4 goroutines, whatever its chunk size.
func serial(w *SumWriter) *SumWriter {
	w.sem, w.buf, w.part = nil, nil, sha256.New()
	return w
}

func parallel(w *SumWriter) *SumWriter {
	w.hashOn(4)
	return w
}

func TestSumWriter(t *testing.T) {
	for _, mode := range []func(*SumWriter) *SumWriter{serial, parallel} {
		testSumWriter(t, mode)
	}
}

func testSumWriter(t *testing.T, mode func(*SumWriter) *SumWriter) {
	data := bytes.Repeat([]byte("0123456789"), 1000) // 10000 bytes
	var out bytes.Buffer
	w := mode(NewSumWriter("memory.state", &out, 4096))
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
		if step%2 == 0 {
			w = parallel(w)
		}
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

// BenchmarkSumWriter streams 256 MiB through a SumWriter into io.Discard,
// hashing on the writing goroutine (the baseline) and on every CPU, and
// prints the median wall and CPU time of each over 5 rounds and their
// ratio.
//
//	go test -run '^$' -bench SumWriter -benchtime 1x ./sdk/vmm
func BenchmarkSumWriter(b *testing.B) {
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	run := func(mode func(*SumWriter) *SumWriter) (wall, cpu float64) {
		var ru0, ru1 syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
		start := time.Now()
		w := mode(NewSumWriter("memory.state", io.Discard, 0))
		for i := 0; i < 256; i++ {
			w.Write(data)
		}
		w.Sum()
		wall = time.Since(start).Seconds()
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
		tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
		return wall, tv(ru1.Utime) + tv(ru1.Stime) - tv(ru0.Utime) - tv(ru0.Stime)
	}
	med := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	for i := 0; i < b.N; i++ {
		var sw, sc, pw, pc []float64
		for r := 0; r < 5; r++ {
			w, c := run(serial)
			sw, sc = append(sw, w), append(sc, c)
			w, c = run(parallel)
			pw, pc = append(pw, w), append(pc, c)
		}
		b.Logf("256 MiB: one goroutine %.3f s (%.3f CPU-s); up to 4 (%d CPUs) %.3f s (%.3f CPU-s): %.2f× the wall time",
			med(sw), med(sc), runtime.GOMAXPROCS(0), med(pw), med(pc), med(pw)/med(sw))
	}
}
