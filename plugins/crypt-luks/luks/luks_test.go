package luks_test

import (
	"github.com/soulpad/soulpad/sdk/mountinfo"

	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/internal/testluks"
	"github.com/soulpad/soulpad/plugins/crypt-luks/luks"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/crypt"
	"github.com/soulpad/soulpad/sdk/crypt/crypttest"
	"github.com/soulpad/soulpad/sdk/sdktest"
)

func TestMain(m *testing.M) {
	if os.Getenv(guestRoleEnv) != "" {
		os.Exit(guestMain())
	}
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// requireHost skips (or, in CI, fails) when this host cannot run the
// userspace engine: it needs root for mount, /dev/fuse and cryptsetup.
func requireHost(t testing.TB) {
	t.Helper()
	miss := func(why string) {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s; `make test` installs what is needed and runs as root", why)
		}
		t.Skip(why)
	}
	for _, b := range []string{"cryptsetup", "mkfs.ext4", "losetup", "mount"} {
		if _, err := exec.LookPath(b); err != nil {
			miss(b + " is missing (scripts/deps.sh installs it)")
		}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		miss("no /dev/fuse on this host")
	}
	if os.Geteuid() != 0 {
		miss("mounting a vault needs root")
	}
}

// fast keeps argon2 cheap in tests; the userspace engine is what this
// host can run.
var (
	fast     = []byte(`{"engine": "userspace", "argon2_memory_kib": 8192, "argon2_iterations": 4, "argon2_threads": 1}`)
	goodPass = []byte("correct horse battery staple 42")
)

func TestConformanceInProcess(t *testing.T) {
	requireHost(t)
	crypttest.Run(t, sdktest.InProcess(t, luks.New(sdktest.Logger(t, "crypt-luks"))).(crypt.Crypt), crypttest.Options{Config: fast})
}

func TestConformanceBinary(t *testing.T) {
	requireHost(t)
	crypttest.Run(t, sdktest.Binary(t, testbin.Build(t, "plugins/crypt-luks")).(crypt.Crypt), crypttest.Options{Config: fast})
}

func newPlugin(t testing.TB) crypt.Crypt {
	t.Helper()
	c := sdktest.InProcess(t, luks.New(sdktest.Logger(t, "crypt-luks"))).(crypt.Crypt)
	if _, err := c.Configure(context.Background(), sdk.ConfigureRequest{Config: fast}); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConfigureRefusesBadSettings(t *testing.T) {
	c := sdktest.InProcess(t, luks.New(sdktest.Logger(t, "crypt-luks"))).(crypt.Crypt)
	for _, cfg := range []string{`{"engine": "magic"}`, `{"argon2_memory_kib": 16}`, `{"argon2_threads": 0}`, `{"argon_memory": 1}`} {
		if _, err := c.Configure(context.Background(), sdk.ConfigureRequest{Config: []byte(cfg)}); !errors.Is(err, sdk.ErrInvalidConfig) {
			t.Errorf("Configure(%s) = %v; want sdk.ErrInvalidConfig", cfg, err)
		}
	}
}

func fileHash(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestShortPassphraseAndKeyFile(t *testing.T) {
	requireHost(t)
	ctx := context.Background()
	c := newPlugin(t)
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	_, err := c.Create(ctx, crypt.CreateRequest{VaultPath: vault, Credential: crypt.Credential{Passphrase: []byte("only nineteen chars")}, SizeBytes: 64 << 20})
	if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "20") {
		t.Fatalf("19-character passphrase: %v; want sdk.ErrInvalidArgument naming the minimum", err)
	}
	if _, err := os.Stat(vault); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a refused create left a vault behind")
	}
	if _, err := c.Create(ctx, crypt.CreateRequest{VaultPath: vault, Credential: crypt.Credential{Passphrase: goodPass}, SizeBytes: 16 << 20}); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Fatalf("16 MiB vault: %v; want sdk.ErrInvalidArgument", err)
	}
	key := make([]byte, 4096)
	rand.Read(key)
	if _, err := c.Create(ctx, crypt.CreateRequest{VaultPath: vault, Credential: crypt.Credential{KeyFile: key}, SizeBytes: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o700)
	before := fileHash(t, vault)
	other := append([]byte(nil), key...)
	other[100] ^= 1
	if _, err := c.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: crypt.Credential{KeyFile: other}, MountDir: mnt}); !errors.Is(err, sdk.ErrWrongPassphrase) {
		t.Fatalf("wrong key file: %v; want sdk.ErrWrongPassphrase", err)
	}
	if fileHash(t, vault) != before {
		t.Fatal("a wrong key file changed the container's bytes")
	}
	u, err := c.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: crypt.Credential{KeyFile: key}, MountDir: mnt})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(u.PlaintextDir, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lock(ctx, crypt.LockRequest{VaultPath: vault}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "f")); err == nil {
		t.Fatal("the plaintext is still visible after lock")
	}
	// The key file's slot really is a LUKS key slot: cryptsetup agrees.
	cmd := exec.Command("cryptsetup", "open", "--test-passphrase", "--key-file", "-", vault)
	cmd.Stdin = bytes.NewReader(key)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cryptsetup --test-passphrase with the key file: %v: %s", err, out)
	}
}

func TestDamagedHeaderGetsClearError(t *testing.T) {
	requireHost(t)
	ctx := context.Background()
	c := newPlugin(t)
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	if _, err := c.Create(ctx, crypt.CreateRequest{VaultPath: vault, Credential: crypt.Credential{Passphrase: goodPass}, SizeBytes: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(vault)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]func([]byte) []byte{
		"truncated to 4 KiB": func(b []byte) []byte { return b[:4096] },
		"empty":              func(b []byte) []byte { return nil },
		"truncated to 8 MiB": func(b []byte) []byte { return b[:8<<20] },
		"both headers overwritten": func(b []byte) []byte {
			b = append([]byte(nil), b...)
			copy(b, bytes.Repeat([]byte("garbage!"), 32<<10/8))
			return b
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, "damaged")
			if err := os.WriteFile(p, damage(orig), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := c.Unlock(ctx, crypt.UnlockRequest{VaultPath: p, Credential: crypt.Credential{Passphrase: goodPass}, MountDir: t.TempDir()})
			if err == nil {
				c.Lock(ctx, crypt.LockRequest{VaultPath: p})
				t.Fatal("a damaged container unlocked")
			}
			if !errors.Is(err, sdk.ErrCorrupt) || !strings.Contains(err.Error(), p) {
				t.Fatalf("Unlock = %v; want sdk.ErrCorrupt naming %s", err, p)
			}
			t.Logf("error: %v", err)
		})
	}
}

// A canary written inside the unlocked vault is found nowhere on the host
// disk after lock: not in the container, not in the plugin's temporary
// directory (TMPDIR points into the test's directory, which is scanned
// whole).
func TestCanaryNotOnHostAfterLock(t *testing.T) {
	requireHost(t)
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	c := newPlugin(t)
	vault, plain := createOpen(t, c, dir, 64<<20)
	nonce := make([]byte, 16)
	rand.Read(nonce)
	canary := []byte("soulpad-canary-" + hex.EncodeToString(nonce))
	if err := os.WriteFile(filepath.Join(plain, "secret.txt"), bytes.Repeat(append(canary, '\n'), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	// Seen through the mount while unlocked: the scan below can find it.
	if b, _ := os.ReadFile(filepath.Join(plain, "secret.txt")); !bytes.Contains(b, canary) {
		t.Fatal("canary not readable in the unlocked vault")
	}
	if _, err := c.Lock(ctx, crypt.LockRequest{VaultPath: vault}); err != nil {
		t.Fatal(err)
	}
	scanned := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		scanned += len(b)
		if bytes.Contains(b, canary) {
			t.Errorf("canary found in %s after lock", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if scanned < 64<<20 {
		t.Fatalf("scanned %d bytes; the container alone has 64 MiB", scanned)
	}
	if entries, _ := os.ReadDir(plain); len(entries) != 0 {
		t.Fatalf("the mount directory still shows %d entries after lock", len(entries))
	}
}

// createOpen creates a vault of size bytes in dir with goodPass, unlocks
// it at dir/mnt and returns the vault's path and the plaintext directory.
func createOpen(t testing.TB, c crypt.Crypt, dir string, size uint64) (string, string) {
	t.Helper()
	ctx := context.Background()
	vault := filepath.Join(dir, "vault")
	if _, err := c.Create(ctx, crypt.CreateRequest{VaultPath: vault, Credential: crypt.Credential{Passphrase: goodPass}, SizeBytes: size}); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o700)
	u, err := c.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: crypt.Credential{Passphrase: goodPass}, MountDir: mnt})
	if err != nil {
		t.Fatal(err)
	}
	return vault, u.PlaintextDir
}

// A new container is written end to end by default: no holes, and its
// payload looks like cipher text, not zeros. With fill = false it starts
// sparse (the file system shows which blocks are used).
func TestCreateFillsTheContainer(t *testing.T) {
	requireHost(t)
	ctx := context.Background()
	const size = 96 << 20
	for _, fill := range []bool{true, false} {
		t.Run(fmt.Sprintf("fill=%v", fill), func(t *testing.T) {
			dir := t.TempDir()
			c := sdktest.InProcess(t, luks.New(sdktest.Logger(t, "crypt-luks"))).(crypt.Crypt)
			cfg := bytes.Replace(fast, []byte(`"engine"`), []byte(fmt.Sprintf(`"fill": %v, "engine"`, fill)), 1)
			if _, err := c.Configure(ctx, sdk.ConfigureRequest{Config: cfg}); err != nil {
				t.Fatal(err)
			}
			vault := filepath.Join(dir, "vault")
			var seen []crypt.Progress // the progress stream, over gRPC
			if _, err := c.Create(ctx, crypt.CreateRequest{VaultPath: vault, Credential: crypt.Credential{Passphrase: goodPass}, SizeBytes: size,
				OnProgress: func(p crypt.Progress) { seen = append(seen, p) }}); err != nil {
				t.Fatal(err)
			}
			t.Logf("progress: %+v", seen)
			if fill {
				// 80 MiB of payload: at 64 MiB and at the end.
				if len(seen) != 2 || seen[1].BytesDone != seen[1].BytesTotal || seen[0].BytesDone >= seen[1].BytesDone || seen[1].BytesTotal != size-16<<20 {
					t.Fatalf("progress %+v: want 64 MiB, then all %d bytes of the payload", seen, size-16<<20)
				}
			} else if len(seen) != 0 {
				t.Fatalf("progress %+v without a fill", seen)
			}
			var st syscall.Stat_t
			if err := syscall.Stat(vault, &st); err != nil {
				t.Fatal(err)
			}
			allocated := st.Blocks * 512
			// The last MiB of the payload: ext4 leaves it unused.
			f, err := os.Open(vault)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			tail := make([]byte, 1<<20)
			if _, err := f.ReadAt(tail, size-1<<20); err != nil {
				t.Fatal(err)
			}
			zero := bytes.Count(tail, []byte{0})
			t.Logf("%d of %d bytes allocated; %d zero bytes in the last MiB", allocated, st.Size, zero)
			if fill {
				if allocated < st.Size {
					t.Fatalf("only %d of %d bytes allocated: the container has holes", allocated, st.Size)
				}
				if zero > 1<<20/128 { // random bytes: about 1/256 are zero
					t.Fatalf("%d zero bytes in the payload's last MiB: not filled with cipher text", zero)
				}
			} else if allocated > st.Size/2 {
				t.Fatalf("%d of %d bytes allocated with fill = false: want a sparse container", allocated, st.Size)
			}
			// Either way the vault opens and holds ext4.
			mnt := filepath.Join(dir, "mnt")
			os.Mkdir(mnt, 0o700)
			if _, err := c.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: crypt.Credential{Passphrase: goodPass}, MountDir: mnt}); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(mnt, "lost+found")); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Lock(ctx, crypt.LockRequest{VaultPath: vault}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Create cancelled while it fills the container, and the plugin let go
// of at once (as soulpad does when Ctrl-C stops init), leaves nothing
// behind: no vault, no half-made file, no FUSE mount, no temp directory.
func TestCreateCancelledLeavesNothing(t *testing.T) {
	requireHost(t)
	dir := t.TempDir()
	c, stop, tmp, _ := binaryPlugin(t, dir)
	pads := filepath.Join(dir, "pad")
	os.Mkdir(pads, 0o700)
	ctx, cancel := context.WithCancel(context.Background())
	vault := filepath.Join(pads, "vault")
	go func() {
		// Cancel once the payload is served: the fill is on.
		for i := 0; i < 3000; i++ {
			if mountinfo.MountedUnder(tmp) {
				time.Sleep(200 * time.Millisecond)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	_, err := c.Create(ctx, crypt.CreateRequest{VaultPath: vault, Credential: crypt.Credential{Passphrase: goodPass}, SizeBytes: 16 << 30})
	if err == nil {
		t.Fatal("Create of 16 GiB finished before it was cancelled")
	}
	t.Logf("cancelled: %v", err)
	start := time.Now()
	stop()
	t.Logf("the plugin ended %v after it was let go of", time.Since(start).Round(time.Millisecond))
	if ents, _ := os.ReadDir(pads); len(ents) != 0 {
		t.Errorf("left behind in the pad directory: %v", ents)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("left behind in the plugin's temp area: %v", ents)
	}
	if mountinfo.MountedUnder(tmp) {
		t.Error("a FUSE mount is still there")
	}
}

// The plugin that ends with its vault open locks it (crypttest): nothing
// is left in its temp area, and cryptsetup alone finds the last file.
func TestPluginEndingLocksOpenVault(t *testing.T) {
	requireHost(t)
	bin := testbin.Build(t, "plugins/crypt-luks") // before TMPDIR moves: it builds there
	tmp := filepath.Join(t.TempDir(), "tmp")
	os.Mkdir(tmp, 0o700)
	t.Setenv("TMPDIR", tmp)
	opt := crypttest.Options{Config: fast, Passphrase: goodPass}
	crypttest.RunEnding(t, bin, opt, func(t *testing.T, vault string) {
		if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
			t.Errorf("left behind in the plugin's temp area: %v", ents)
		}
		got, err := os.ReadFile(filepath.Join(testluks.Decrypt(t, vault, goodPass), "last.txt"))
		if err != nil || !bytes.HasPrefix(got, []byte("written just before the plugin ended")) {
			t.Fatalf("cryptsetup does not find the last file whole: %d bytes, %v", len(got), err)
		}
	})
}

// binaryPlugin starts the plugin binary, configured, with its temp area
// at dir/tmp (returned) so the test can see all it mounts there; stop
// lets go of it as a host does.
func binaryPlugin(t *testing.T, dir string) (c crypt.Crypt, stop func(), tmp, bin string) {
	t.Helper()
	tmp = filepath.Join(dir, "tmp")
	os.Mkdir(tmp, 0o700)
	bin = testbin.Build(t, "plugins/crypt-luks") // before TMPDIR moves: it builds there
	t.Setenv("TMPDIR", tmp)
	impl, stop := sdktest.BinaryStop(t, bin)
	c = impl.(crypt.Crypt)
	if _, err := c.Configure(context.Background(), sdk.ConfigureRequest{Config: fast}); err != nil {
		t.Fatal(err)
	}
	return c, stop, tmp, bin
}

// A crypt-luks killed outright with its vault open leaves a dead FUSE
// mount, with a loop device and ext4 over it. The next unlock clears them
// away and opens the vault again, with what was synced before the kill.
func TestDeadMountsSweptAtNextUnlock(t *testing.T) {
	requireHost(t)
	ctx := context.Background()
	dir := t.TempDir()
	c, _, tmp, bin := binaryPlugin(t, dir)
	vault, plain := createOpen(t, c, dir, 64<<20)
	data := []byte("synced before the plugin was killed\n")
	f, err := os.Create(filepath.Join(plain, "synced.txt"))
	if err != nil {
		t.Fatal(err)
	}
	f.Write(data)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := exec.Command("pkill", "-KILL", "-f", bin).Run(); err != nil {
		t.Fatalf("pkill the plugin: %v", err)
	}
	// The state a killed plugin leaves: a payload mount that answers ENOTCONN.
	var dead string
	for i := 0; i < 100 && dead == ""; i++ {
		ents, _ := os.ReadDir(tmp)
		for _, e := range ents {
			if _, err := os.Stat(filepath.Join(tmp, e.Name())); errors.Is(err, syscall.ENOTCONN) {
				dead = filepath.Join(tmp, e.Name())
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if dead == "" {
		t.Fatal("killing the plugin left no dead payload mount: the test does not set up what it means to")
	}
	if !mountinfo.MountedUnder(plain) {
		t.Fatal("the killed plugin's ext4 mount is gone already: the test does not set up what it means to")
	}

	c2 := newPlugin(t)
	mnt2 := filepath.Join(dir, "mnt2")
	os.Mkdir(mnt2, 0o700)
	if _, err := c2.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: crypt.Credential{Passphrase: goodPass}, MountDir: mnt2}); err != nil {
		t.Fatal(err)
	}
	defer c2.Lock(ctx, crypt.LockRequest{VaultPath: vault})
	if mountinfo.MountedUnder(dead) || mountinfo.MountedUnder(plain) {
		b, _ := os.ReadFile("/proc/self/mountinfo")
		t.Fatalf("the dead mounts are still there:\n%s", b)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("the dead payload's directory is still there: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(mnt2, "synced.txt")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("synced.txt after the kill: %q, %v", got, err)
	}
	if out, _ := exec.Command("losetup", "-a").Output(); strings.Contains(string(out), dead) {
		t.Errorf("a loop device over the dead payload is still there:\n%s", out)
	}
}
