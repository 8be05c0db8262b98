package luks

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/sdk"
)

// craft rewrites key slot 0's kdf in the primary header's JSON.
func craft(t *testing.T, path string, set func(kdf map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	size := binary.BigEndian.Uint64(b[8:16])
	area := b[luks2BinaryHeader:size]
	var meta map[string]any
	if err := json.Unmarshal(bytes.TrimRight(area, "\x00"), &meta); err != nil {
		t.Fatal(err)
	}
	set(meta["keyslots"].(map[string]any)["0"].(map[string]any)["kdf"].(map[string]any))
	js, _ := json.Marshal(meta)
	if len(js) > len(area) {
		t.Fatal("crafted JSON does not fit")
	}
	copy(area, append(js, make([]byte, len(area)-len(js))...))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A header that asks argon2 for hours or for more memory than cryptsetup
// allows is refused at once, before any derivation.
func TestCraftedKDFIsRefused(t *testing.T) {
	if _, err := exec.LookPath("cryptsetup"); err != nil {
		t.Skip("cryptsetup missing")
	}
	for _, c := range []struct {
		name string
		set  func(map[string]any)
		want string
	}{
		{"time", func(k map[string]any) { k["time"] = 4000000 }, "argon2 time 4000000"},
		{"memory", func(k map[string]any) { k["memory"] = 16 << 20 }, "argon2 memory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "vault")
			if err := os.WriteFile(path, make([]byte, 16<<20), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "argon2id",
				"--pbkdf-memory", "8192", "--pbkdf-force-iterations", "4", "--key-file", "-", path)
			cmd.Stdin = strings.NewReader("a passphrase for a crafted header")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("cryptsetup: %v %s", err, out)
			}
			if err := checkKDFLimits(path); err != nil {
				t.Fatalf("the honest header is refused: %v", err)
			}
			craft(t, path, c.set)
			start := time.Now()
			_, err := unseal(path, []byte("a passphrase for a crafted header"))
			if !errors.Is(err, sdk.ErrCorrupt) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("unseal of a crafted header: %v", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("refusing took %v", d)
			}
		})
	}
}

func FuzzKDFLimits(f *testing.F) {
	f.Add([]byte(`{"keyslots":{"0":{"kdf":{"type":"argon2id","time":4,"memory":65536,"cpus":2}}}}`))
	f.Add([]byte(`{"keyslots":{"1":{"kdf":{"type":"pbkdf2","iterations":1000}}}}` + "\x00\x00"))
	f.Fuzz(func(t *testing.T, js []byte) {
		err := kdfLimits(js)
		if err != nil && !errors.Is(err, sdk.ErrCorrupt) {
			t.Fatalf("an error that is not ErrCorrupt: %v", err)
		}
		_, _ = luks2HeaderSize(js)
	})
}

// After wipe, neither the plugin's copy of the volume key nor luks.go's
// own holds it.
func TestWipeClearsLuksGosKey(t *testing.T) {
	if _, err := exec.LookPath("cryptsetup"); err != nil {
		t.Skip("cryptsetup missing")
	}
	path := filepath.Join(t.TempDir(), "vault")
	if err := os.WriteFile(path, make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "argon2id",
		"--pbkdf-memory", "8192", "--pbkdf-force-iterations", "4", "--key-file", "-", path)
	cmd.Stdin = strings.NewReader("a passphrase to wipe")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cryptsetup: %v %s", err, out)
	}
	u, err := unseal(path, []byte("a passphrase to wipe"))
	if err != nil {
		t.Fatal(err)
	}
	inner := volumeKeyInPlace(u.vol)
	if len(inner) == 0 || bytes.Equal(inner, make([]byte, len(inner))) {
		t.Fatal("no key to wipe: the test sees nothing")
	}
	u.wipe()
	if !bytes.Equal(inner, make([]byte, len(inner))) || !bytes.Equal(u.key, make([]byte, len(u.key))) {
		t.Fatal("a copy of the volume key survived wipe")
	}
}
