package walkup_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testcli"
	"github.com/soulpad/soulpad/internal/testguest"
)

// bootableISO makes an ISO such as installers are (GRUB on a hybrid
// image, so it boots from a CD and, written onto a disk, from the disk)
// that boots the demo guest with cmdline; extra files go beside it.
func bootableISO(t *testing.T, out, cmdline string, initrds []string, extra map[string]string) {
	t.Helper()
	for _, tool := range []string{"grub-mkrescue", "xorriso"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (make deps installs it)", tool)
		}
	}
	kernel, initrd := testguest.Build(t)
	dir := t.TempDir()
	files := map[string]string{"vmlinuz": kernel, "initrd.img": initrd}
	for k, v := range extra {
		files[k] = v
	}
	for name, src := range files {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "boot", "grub"), 0o755)
	cfg := "set timeout=0\nmenuentry soulpad {\n  linux /vmlinuz " + cmdline + "\n  initrd /initrd.img " + strings.Join(initrds, " ") + "\n}\n"
	os.WriteFile(filepath.Join(dir, "boot", "grub", "grub.cfg"), []byte(cfg), 0o644)
	if b, err := exec.Command("grub-mkrescue", "-o", out, dir).CombinedOutput(); err != nil {
		t.Fatalf("grub-mkrescue: %v %s", err, b)
	}
}

// withoutKernel makes the test pad's machine boot from its disks and
// drives instead of the demo guest's kernel.
func withoutKernel(t *testing.T, e testcli.Env) {
	t.Helper()
	b, err := os.ReadFile(e.Cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := regexp.MustCompile(`(?m)^\s*(kernel|initrd|cmdline)\s*=.*$`).ReplaceAllString(string(b), "")
	if err := os.WriteFile(e.Cfg, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestInstallFromAnISO is the installer's walk: `init --iso` puts an
// installer beside an empty disk; the machine boots it, is suspended and
// resumed with it in the drive, and installs a system onto the disk;
// after `media eject` the disk boots on its own.
func TestInstallFromAnISO(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a guest from an ISO")
	}
	eachVMM(t, installFromISO)
}

func installFromISO(t *testing.T) {
	dir := t.TempDir()
	system := filepath.Join(dir, "system.iso")
	bootableISO(t, system, "console=ttyS0 quiet panic=-1 soulpad.nodisk=1 soulpad.hello=installed-system", nil, nil)
	// The installer carries the system as an extra initramfs.
	stage := filepath.Join(dir, "stage")
	os.MkdirAll(filepath.Join(stage, "install"), 0o755)
	if err := os.Rename(system, filepath.Join(stage, "install", "system.img")); err != nil {
		t.Fatal(err)
	}
	cpio := exec.Command("cpio", "-o", "-H", "newc", "--quiet")
	cpio.Dir, cpio.Stdin = stage, strings.NewReader("install\ninstall/system.img\n")
	payload, err := cpio.Output()
	if err != nil {
		t.Fatalf("cpio: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "system.cpio"), payload, 0o600)
	installer := filepath.Join(dir, "installer.iso")
	bootableISO(t, installer, "console=ttyS0 quiet panic=-1 soulpad.nodisk=1 soulpad.install=14 soulpad.hello=installer",
		[]string{"/system.cpio"}, map[string]string{"system.cpio": filepath.Join(dir, "system.cpio")})

	e := testcli.QEMUEnv(t, "", "crypt-plain")
	withoutKernel(t, e)
	withMachine(t, e, "memory_mib", "256", "disk_size_mib", "64")
	out, errOut, code := e.Run(t, "init", "--iso", installer)
	if code != 0 {
		t.Fatalf("init --iso: exit %d\n%s%s", code, out, errOut)
	}
	if out, _, _ := e.Run(t, "media"); !strings.Contains(out, "holds an installer") {
		t.Fatalf("media after init --iso: %s", out)
	}

	// The installer boots from the CD and is suspended with it in the drive.
	_, buf, done := e.StartRun(t)
	e.WaitCounter(t, 2)
	if c := consoleDump(t, e); !strings.Contains(c, "hello installer") {
		t.Fatalf("the machine did not boot the installer from its CD-ROM drive:\n%s", c)
	}
	suspend(t, e, done, buf)

	// Resumed, it goes on and installs, then powers off.
	_, buf, done = e.StartRun(t)
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		t.Fatalf("the installer did not finish:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "resumed ") || !strings.Contains(buf.String(), "the guest powered off") {
		t.Fatalf("the installer's second run did not resume and end with its power-off:\n%s", buf.String())
	}

	out, errOut, code = e.Run(t, "media", "eject")
	if code != 0 || !strings.Contains(out, "ejected") {
		t.Fatalf("media eject: exit %d %s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(e.Pad, "vault", "machines", "soul", "media.iso")); !os.IsNotExist(err) {
		t.Fatalf("the ejected ISO is still in the vault (%v)", err)
	}
	// The disk boots on its own.
	_, buf, done = e.StartRun(t)
	e.WaitCounter(t, 2)
	if c := consoleDump(t, e); !strings.Contains(c, "hello installed-system") {
		t.Fatalf("after the eject the machine did not boot the installed system from its disk:\n%s", c)
	}
	suspend(t, e, done, buf)
}

// TestBrokenISOIsRefused: what is not an installer image is refused by
// init --iso and media insert, exit 2, nothing changed.
func TestBrokenISOIsRefused(t *testing.T) {
	dir := t.TempDir()
	notISO := filepath.Join(dir, "notes.iso")
	os.WriteFile(notISO, make([]byte, 64<<10), 0o600)
	e := testcli.QEMUEnv(t, "console=ttyS0", "crypt-plain")
	out, errOut, code := e.Run(t, "init", "--iso", notISO)
	if code != 2 || !strings.Contains(errOut, "not an ISO 9660 image") {
		t.Fatalf("init --iso of a file that is no ISO: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(e.Pad); !os.IsNotExist(err) {
		t.Fatalf("a refused init --iso left %s behind", e.Pad)
	}
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s%s", out, errOut)
	}
	before := testcli.TreeHash(t, e.Pad)
	out, errOut, code = e.Run(t, "media", "insert", notISO)
	if code != 2 || !strings.Contains(errOut, "not an ISO 9660 image") || testcli.TreeHash(t, e.Pad) != before {
		t.Fatalf("media insert of a file that is no ISO: exit %d, or the pad changed\n%s%s", code, out, errOut)
	}
	if out, errOut, code := e.Run(t, "disk", "grow", "8M"); code != 2 || !strings.Contains(errOut, "only grows") {
		t.Fatalf("disk grow to less than the disk: exit %d %s%s", code, out, errOut)
	}
	if out, errOut, code := e.Run(t, "disk", "grow", "+16M"); code != 0 || !strings.Contains(out, "16.0 MiB → 32.0 MiB") {
		t.Fatalf("disk grow +16M: exit %d %s%s", code, out, errOut)
	}
}
