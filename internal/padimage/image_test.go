package padimage_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/soulpad/soulpad/internal/testbin"
)

// TestImageAsksThePassphraseOnceAndRecordsTheBootChain builds an image
// as a user at a terminal does (the passphrase typed, twice to confirm,
// on a pseudo-terminal from script(1)), then attaches it as a loop device
// and opens its pad as the bootable pad's host OS would (pad.boot_disk
// set): the vault opens with that passphrase and the boot chain matches
// its record; a byte written to GRUB's partition is then named.
func TestImageAsksThePassphraseOnceAndRecordsTheBootChain(t *testing.T) {
	if testing.Short() || os.Getenv("SOULPAD_IMAGE_TEST") == "" {
		t.Skip("builds an image: make image-test (SOULPAD_IMAGE_TEST=1) runs it")
	}
	for _, tool := range []string{"script", "losetup", "sgdisk", "debugfs", "mksquashfs", "grub-mkimage"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing (make deps installs it)", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: a loop device")
	}
	dir := t.TempDir()
	soulpad := buildImageTools(t, dir)
	cfg := filepath.Join(dir, "site.hcl")
	writeFile(t, cfg, `pad { path = "pad" }
machine { memory_mib = 128 }
plugins {
  crypt  = "crypt-gocryptfs"
  vmm    = "vmm-qemu"
  detect = "detect-linux"
}
plugin "crypt-gocryptfs" { scrypt_logn = 10 }
`)
	img := filepath.Join(dir, "pad.img")
	const pass = "typed once at the terminal, long enough"
	build := exec.Command("script", "-qec", soulpad+" image --out "+img+" --size 1G --config "+cfg, "/dev/null")
	build.Env = cleanEnv()
	build.Stdin = strings.NewReader(pass + "\n" + pass + "\n")
	out, err := build.CombinedOutput()
	t.Logf("soulpad image at a terminal:\n%s", out)
	if err != nil {
		t.Fatalf("soulpad image: %v", err)
	}
	if n := strings.Count(string(out), "Passphrase: "); n != 1 || strings.Count(string(out), "Passphrase again: ") != 1 {
		t.Fatalf("the passphrase was asked %d times, want once (and once to confirm)", n)
	}
	if !strings.Contains(string(out), "the boot partitions recorded in its vault") {
		t.Fatal("the build did not record the boot partitions")
	}

	dumpPad(t, img, filepath.Join(dir, "offline"))
	pw := filepath.Join(dir, "pw")
	writeFile(t, pw, pass+"\n")
	lo, err := exec.Command("losetup", "--find", "--show", "--read-only", img).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	disk := strings.TrimSpace(string(lo))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", disk).Run() })
	points := func() string {
		t.Helper()
		c := exec.Command(soulpad, "points", "--config", cfg, "--passphrase-file", pw)
		c.Env = append(cleanEnv(), "SOULPAD_PAD_PATH="+filepath.Join(dir, "offline", "pad"), "SOULPAD_PAD_BOOT_DISK="+filepath.Base(disk))
		b, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("soulpad points with the typed passphrase: %v\n%s", err, b)
		}
		return string(b)
	}
	if got := points(); strings.Contains(got, "warning") {
		t.Fatalf("the image as built does not match its record:\n%s", got)
	}
	// GRUB's core.img, changed on the (read-write) image.
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xeb, 0xfe}, 2048*512+700); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_ = exec.Command("losetup", "-d", disk).Run()
	if lo, err = exec.Command("losetup", "--find", "--show", "--read-only", img).Output(); err != nil {
		t.Fatalf("losetup: %v", err)
	}
	disk = strings.TrimSpace(string(lo))
	if got := points(); !strings.Contains(got, "BIOS-BOOT changed") {
		t.Fatalf("a changed core.img is not named:\n%s", got)
	}
}

// buildImageTools builds soulpad and the plugins an image carries into
// dir/bin, as make build lays them out; it returns soulpad's path.
func buildImageTools(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "bin")
	root := testbin.Root(t)
	for _, pkg := range []string{"cmd/soulpad", "plugins/crypt-gocryptfs", "plugins/vmm-qemu", "plugins/detect-linux"} {
		out := filepath.Join(bin, filepath.Base(pkg))
		if pkg != "cmd/soulpad" {
			out = filepath.Join(bin, "plugins", filepath.Base(pkg))
		}
		cmd := exec.Command("go", "build", "-o", out, "./"+pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOEXPERIMENT="+testbin.Experiments())
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	return filepath.Join(bin, "soulpad")
}
