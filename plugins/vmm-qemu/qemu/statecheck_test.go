package qemu

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// The check a resume runs beside QEMU's reads takes a state as the
// suspend summed it (in chunks of any size, or whole), and refuses one
// with a changed byte, a byte too many or too few.
func TestStateCheckBesideTheLoad(t *testing.T) {
	dir := t.TempDir()
	for _, chunk := range []uint64{0, 4 << 10, minReadChunk, 1 << 20} {
		for _, size := range []int{0, 1, minReadChunk - 1, 3<<20 + 5} {
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(rand.Uint32())
			}
			var want vmm.FileSum
			if chunk == 0 {
				s := sha256.Sum256(data)
				want = vmm.FileSum{Name: StateFile, Size: uint64(size), SHA256: hex.EncodeToString(s[:])}
			} else {
				sw := vmm.NewSumWriter(StateFile, io.Discard, chunk)
				_, _ = sw.Write(data)
				want = sw.Sum()
			}
			check := func(b []byte) error {
				path := filepath.Join(dir, "state")
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Fatal(err)
				}
				f, err := os.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				read := new(atomic.Uint64)
				err = checkWhileLoading(f, want, func(w io.Writer) io.Writer { return countWriter{w, read} }).verify(t.Context())
				if off, _ := f.Seek(0, io.SeekCurrent); off != 0 {
					t.Fatalf("the check moved the file's offset to %d: QEMU reads from there", off)
				}
				if err == nil && read.Load() != uint64(len(b)) {
					t.Fatalf("the check counted %d bytes read of %d", read.Load(), len(b))
				}
				return err
			}
			if err := check(data); err != nil {
				t.Fatalf("chunk %d, %d bytes: the sealed state is refused: %v", chunk, size, err)
			}
			bad := map[string][]byte{"a byte too many": append(append([]byte{}, data...), 0)}
			if size > 0 {
				flipped := append([]byte{}, data...)
				flipped[size/2] ^= 0x40
				bad["a changed byte"] = flipped
				bad["a byte too few"] = data[:size-1]
			}
			for what, b := range bad {
				if err := check(b); !errors.Is(err, sdk.ErrCorrupt) {
					t.Fatalf("chunk %d, %d bytes, %s: %v; want a corrupt state", chunk, size, what, err)
				}
			}
		}
	}
}
