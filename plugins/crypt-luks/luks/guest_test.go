package luks_test

import (
	"github.com/soulpad/soulpad/internal/kvmprobe"

	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/internal/testguest"
	"github.com/soulpad/soulpad/plugins/crypt-luks/luks"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/crypt"
)

// guestRoleEnv, set by the guest's init, makes this test binary play the
// guest's part (guestMain) instead of running the tests.
const guestRoleEnv = "SOULPAD_LUKS_GUEST_DEVICE"

const guestInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /mnt
for pass in 1 2; do
  for m in /lib/modules/*.ko /lib/modules/dm/*.ko; do insmod "$m" 2>/dev/null; done
done
SOULPAD_LUKS_GUEST_DEVICE=/dev/vda /luks.test
echo "soulpad-luks-guest: exit $?"
poweroff -f
`

// TestKernelEngineInGuest runs the kernel engine for real: this host has
// no device-mapper, so a QEMU guest booting the Debian cloud kernel with
// dm-mod and dm-crypt opens a container made and filled here by the
// userspace engine, checks its files, writes one, and locks; then the
// userspace engine reads what the kernel wrote. Same bytes both ways.
func TestKernelEngineInGuest(t *testing.T) {
	requireHost(t)
	kernel, initrd := testguest.Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()

	// This package's tests, built static, are the guest's program.
	build := exec.CommandContext(ctx, "go", "test", "-c", "-o", filepath.Join(dir, "ir", "luks.test"), "./plugins/crypt-luks/luks")
	build.Dir = testbin.Root(t)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the guest program: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "ir", "init"), []byte(guestInit), 0o755); err != nil {
		t.Fatal(err)
	}
	// The demo guest's initramfs (kernel modules, busybox) with this
	// archive appended: its /init replaces the demo's.
	extra := exec.CommandContext(ctx, "sh", "-c", "cd ir && find . | cpio -o -H newc --quiet")
	extra.Dir = dir
	cpio, err := extra.Output()
	if err != nil {
		t.Fatalf("cpio: %v", err)
	}
	base, err := os.ReadFile(initrd)
	if err != nil {
		t.Fatal(err)
	}
	// The kernel finds an appended archive only at a 4-byte boundary; it
	// skips zero padding.
	if r := len(base) % 512; r != 0 {
		base = append(base, make([]byte, 512-r)...)
	}
	ird := filepath.Join(dir, "initrd.img")
	if err := os.WriteFile(ird, append(base, cpio...), 0o600); err != nil {
		t.Fatal(err)
	}

	// A vault made and filled by the userspace engine.
	c := newPlugin(t)
	vault, plain := createOpen(t, c, dir, 96<<20)
	data := make([]byte, 8<<20+123)
	rand.Read(data)
	sum := sha256.Sum256(data)
	if err := os.WriteFile(filepath.Join(plain, "data.bin"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(plain, "data.sha256"), []byte(hex.EncodeToString(sum[:])), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lock(ctx, crypt.LockRequest{VaultPath: vault}); err != nil {
		t.Fatal(err)
	}

	serial := filepath.Join(dir, "serial.log")
	accel := "tcg"
	if ok, _ := kvmprobe.Usable("/dev/kvm"); ok {
		accel = "kvm"
	}
	qemu := exec.CommandContext(ctx, "qemu-system-x86_64", "-machine", "accel="+accel, "-cpu", "max", "-m", "512", "-smp", "1",
		"-display", "none", "-monitor", "none", "-no-reboot", "-serial", "file:"+serial,
		"-kernel", kernel, "-initrd", ird, "-append", "console=ttyS0 quiet panic=-1 soulpad.poweroff_after=20", // should the demo's init run instead, it stops
		"-drive", "file="+vault+",format=raw,if=virtio,cache=writeback")
	if out, err := qemu.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(serial)
		t.Fatalf("qemu: %v\n%s\nserial:\n%s", err, out, log)
	}
	log, _ := os.ReadFile(serial)
	if !bytes.Contains(log, []byte("soulpad-luks-guest: ok")) {
		t.Fatalf("the guest did not report success; serial console:\n%s", log)
	}
	for _, l := range strings.Split(string(log), "\n") {
		if strings.HasPrefix(l, "soulpad-luks-guest:") {
			t.Log("guest: " + strings.TrimSpace(l))
		}
	}

	// What the kernel engine wrote, read by the userspace engine.
	u, err := c.Unlock(ctx, crypt.UnlockRequest{VaultPath: vault, Credential: crypt.Credential{Passphrase: goodPass}, MountDir: plain})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(u.PlaintextDir, "from-guest.txt"))
	if want := "kernel engine read data.bin as " + hex.EncodeToString(sum[:]); err != nil || strings.TrimSpace(string(got)) != want {
		t.Errorf("from-guest.txt = %q, %v; want %q", got, err, want)
	}
	if _, err := c.Lock(ctx, crypt.LockRequest{VaultPath: vault}); err != nil {
		t.Fatal(err)
	}
}

// guestMain is the guest's part of TestKernelEngineInGuest.
func guestMain() int {
	say := func(format string, a ...any) { fmt.Printf("soulpad-luks-guest: "+format+"\n", a...) }
	if err := guestRun(os.Getenv(guestRoleEnv), say); err != nil {
		say("FAIL: %v", err)
		return 1
	}
	say("ok")
	return 0
}

func guestRun(dev string, say func(string, ...any)) error {
	ctx := context.Background()
	if !luks.KernelAvailable() {
		return errors.New("device-mapper is not available in the guest")
	}
	p := luks.New(nil)
	if _, err := p.Configure(ctx, sdk.ConfigureRequest{Config: []byte(`{"engine": "kernel"}`)}); err != nil {
		return err
	}
	_, err := p.Unlock(ctx, crypt.UnlockRequest{VaultPath: dev, Credential: crypt.Credential{Passphrase: []byte("a wrong passphrase, long enough")}, MountDir: "/mnt"})
	if !errors.Is(err, sdk.ErrWrongPassphrase) {
		return fmt.Errorf("wrong passphrase: %v; want sdk.ErrWrongPassphrase", err)
	}
	start := time.Now()
	u, err := p.Unlock(ctx, crypt.UnlockRequest{VaultPath: dev, Credential: crypt.Credential{Passphrase: goodPass}, MountDir: "/mnt"})
	if err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	say("unlocked with the kernel engine in %v", time.Since(start).Round(time.Millisecond))
	mounts, _ := os.ReadFile("/proc/mounts")
	var mounted string
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[1] == "/mnt" {
			mounted = f[0] + " " + f[2]
		}
	}
	say("mounted: %s", mounted)
	if !strings.Contains(mounted, "dm-") && !strings.Contains(mounted, "/mapper/") {
		return fmt.Errorf("/mnt is %q, not a device-mapper device", mounted)
	}
	data, err := os.ReadFile(filepath.Join(u.PlaintextDir, "data.bin"))
	if err != nil {
		return err
	}
	want, err := os.ReadFile(filepath.Join(u.PlaintextDir, "data.sha256"))
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != string(want) {
		return fmt.Errorf("data.bin reads as %s; the host wrote %s", got, want)
	}
	if err := os.WriteFile(filepath.Join(u.PlaintextDir, "from-guest.txt"), []byte("kernel engine read data.bin as "+string(want)+"\n"), 0o600); err != nil {
		return err
	}
	if _, err := p.Lock(ctx, crypt.LockRequest{VaultPath: dev}); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if _, err := p.Lock(ctx, crypt.LockRequest{VaultPath: dev}); err != nil {
		return fmt.Errorf("second lock: %w", err)
	}
	if left, _ := filepath.Glob("/sys/block/dm-*"); len(left) > 0 {
		return fmt.Errorf("a device-mapper device is left after lock: %v", left)
	}
	return nil
}
