package luks_test

import (
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/soulpad/soulpad/sdk/crypt"
)

// childOf returns the pid of this process's child running bin.
func childOf(t *testing.T, bin string) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	me := strconv.Itoa(os.Getpid())
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if exe != bin {
			continue
		}
		st, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		// pid (comm) state ppid ...
		f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:]))
		if len(f) > 1 && f[1] == me {
			return pid
		}
	}
	t.Fatalf("no child process runs %s", bin)
	return 0
}

// scanMemory reads every readable mapping of process pid and counts where
// each needle occurs; it returns the counts and how many bytes it read.
func scanMemory(t *testing.T, pid int, needles map[string][]byte) (map[string]int, int) {
	t.Helper()
	maps, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer maps.Close()
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	found := map[string]int{}
	read := 0
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[1][0] != 'r' || (len(f) > 5 && f[5] == "[vvar]") {
			continue
		}
		var lo, hi uint64
		if _, err := fmt.Sscanf(f[0], "%x-%x", &lo, &hi); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, hi-lo)
		n, _ := mem.ReadAt(buf, int64(lo))
		read += n
		for name, nd := range needles {
			found[name] += bytes.Count(buf[:n], nd)
			if os.Getenv("MEMSCAN_DEBUG") != "" {
				for off := 0; ; {
					i := bytes.Index(buf[off:n], nd)
					if i < 0 {
						break
					}
					a := off + i
					lo2, hi2 := max(0, a-48), min(n, a+64)
					t.Logf("%s at %x in %s: %x", name, lo+uint64(a), sc.Text(), buf[lo2:hi2])
					off = a + 1
				}
			}
		}
	}
	return found, read
}

// keyNeedles are the forms a 64-byte XTS key takes in memory: each
// 16-byte quarter as bytes (the key, AES-NI round keys) and with each
// 32-bit word byte-swapped (crypto/aes's round keys, which start and, for
// decryption, end with the key's words).
func keyNeedles(key []byte) map[string][]byte {
	n := map[string][]byte{}
	for q := 0; q < len(key)/16; q++ {
		part := key[q*16 : (q+1)*16]
		n[fmt.Sprintf("key[%d:%d]", q*16, q*16+16)] = part
		sw := make([]byte, 16)
		for i := 0; i < 16; i += 4 {
			sw[i], sw[i+1], sw[i+2], sw[i+3] = part[i+3], part[i+2], part[i+1], part[i]
		}
		n[fmt.Sprintf("key[%d:%d] as words", q*16, q*16+16)] = sw
	}
	return n
}

// After create, unlock and lock, no copy of the volume key (nor of its
// AES round keys) is left in the plugin process's memory: the plugin
// wipes what it holds and keeps key material where it can wipe it.
func TestNoKeyInPluginMemoryAfterLock(t *testing.T) {
	requireHost(t)
	ctx := context.Background()
	dir := t.TempDir()
	c, _, _, bin := binaryPlugin(t, dir)
	if bi, err := buildinfo.ReadFile(bin); err != nil {
		t.Fatal(err)
	} else if !slices.ContainsFunc(bi.Settings, func(s debug.BuildSetting) bool {
		return s.Key == "GOEXPERIMENT" && strings.Contains(s.Value, "runtimesecret")
	}) {
		t.Fatalf("%s is built without GOEXPERIMENT=runtimesecret (the Makefile sets it)", bin)
	}
	pid := childOf(t, bin)
	vault, plain := createOpen(t, c, dir, 64<<20)
	if err := os.WriteFile(filepath.Join(plain, "f"), bytes.Repeat([]byte("x"), 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	// The key, from cryptsetup, to know what to look for.
	kf := filepath.Join(dir, "volume.key")
	cmd := exec.Command("cryptsetup", "luksDump", "--batch-mode", "--dump-volume-key", "--volume-key-file", kf, "--key-file", "-", vault)
	cmd.Stdin = bytes.NewReader(goodPass)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cryptsetup luksDump --dump-volume-key: %v: %s", err, out)
	}
	key, err := os.ReadFile(kf)
	if err != nil || len(key) != 64 {
		t.Fatalf("volume key: %d bytes, %v", len(key), err)
	}
	needles := keyNeedles(key)
	needles["passphrase"] = goodPass

	// While the vault is open the scan finds the key: it can see it.
	open, _ := scanMemory(t, pid, needles)
	if open["key[0:16]"] == 0 && open["key[0:16] as words"] == 0 {
		t.Fatalf("the key is not found in the plugin's memory while the vault is open (found %v): the scan cannot see it", open)
	}
	if _, err := c.Lock(ctx, crypt.LockRequest{VaultPath: vault}); err != nil {
		t.Fatal(err)
	}
	after, read := scanMemory(t, pid, needles)
	if read < 1<<20 {
		t.Fatalf("read only %d bytes of the plugin's memory", read)
	}
	for name, n := range after {
		if name == "passphrase" {
			// It came over gRPC: the transport's buffers are out of reach.
			t.Logf("%d copies of the passphrase after lock (%d while open)", n, open[name])
			continue
		}
		if n > 0 {
			t.Errorf("%d copies of %s in the plugin's memory after lock (%d while open)", n, name, open[name])
		}
	}
	t.Logf("scanned %d MiB of the plugin's memory; while open: %v", read>>20, open)
}
