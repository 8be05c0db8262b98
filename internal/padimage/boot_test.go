package padimage_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"image"
	imagedraw "image/draw"
	"image/png"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/kvmprobe"
	"github.com/soulpad/soulpad/internal/testguest"
)

// TestBootablePad builds an image with `soulpad image` as a user does and
// boots it several times in QEMU as the walk-up PC (q35, the image and a key
// disk as USB sticks on xHCI, and an internal disk of the PC's own):
//
//  1. BIOS, with the key disk: the machine boots cold, runs, and the PC's
//     power button suspends it; the host OS powers off.
//  2. The pad, read offline with debugfs, holds that sealed point.
//  3. UEFI with Secure Boot (OVMF with Microsoft's keys, so shim, GRUB and
//     the kernel are checked): the point resumes and the counter goes on.
//  4. The pad pulled out of that PC while the machine runs stops it as a
//     power cut would; plugged in again (BIOS) it resumes the newest
//     point, says what was lost, and the power button suspends it.
//  5. BIOS without the key disk: the passphrase prompt comes, three wrong
//     passphrases end the run with status 5, and "off" powers the PC off
//     with the pad unchanged.
//  6. An evil maid: a changed system partition is refused by the
//     initramfs, a changed GRUB menu after unlock.
//
// The PC's own disk is the same byte for byte at the end. It takes a few
// minutes (QEMU under TCG runs the host OS, which runs the machine).
func TestBootablePad(t *testing.T) {
	if testing.Short() || os.Getenv("SOULPAD_IMAGE_TEST") == "" {
		// make test runs it after the rest, alone: a PC under TCG that
		// runs a machine of its own is slow when the machine is busy.
		t.Skip("boots a PC three times: make image-test (SOULPAD_IMAGE_TEST=1) runs it")
	}
	testguest.RequireQEMU(t)
	for _, tool := range []string{"sgdisk", "mkfs.vfat", "mcopy", "grub-mkimage", "mksquashfs", "debugfs", "apt-get"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing (make deps installs it)", tool)
		}
	}
	dir := t.TempDir()
	soulpad := buildImageTools(t, dir)
	kernel, initrd := testguest.Build(t)
	key := filepath.Join(dir, "key")
	if err := os.WriteFile(key, []byte("a key on its own USB stick, 32+ bytes long\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "site.hcl")
	writeFile(t, cfg, fmt.Sprintf(`pad { path = "pad" }
machine {
  # The PC is emulated (TCG): KVM inside it passes the probe on some
  # boots and not others, and runs the machine slower than TCG would.
  accelerator   = "tcg"
  memory_mib    = 128
  disk_size_mib = 16
  kernel        = %q
  initrd        = %q
  cmdline       = "console=ttyS0 quiet panic=-1"
}
plugins {
  crypt  = "crypt-gocryptfs"
  vmm    = "vmm-qemu"
  detect = "detect-linux"
}
plugin "crypt-gocryptfs" { scrypt_logn = 10 }
`, kernel, initrd))
	img := filepath.Join(dir, "pad.img")
	build := exec.Command(soulpad, "image", "--out", img, "--size", "2G", "--config", cfg, "--key-file", key, "--console", "ttyS0")
	build.Env = cleanEnv()
	out, err := build.CombinedOutput()
	t.Logf("soulpad image:\n%s", out)
	if err != nil {
		t.Fatalf("soulpad image: %v", err)
	}

	keyDisk := filepath.Join(dir, "key.img")
	run(t, "mkfs.vfat", "-C", "-n", "SOULPAD-KEY", keyDisk, "8192")
	run(t, "mcopy", "-i", keyDisk, key, "::/soulpad.key")
	// The PC's own disk, never to be touched, and hostile: on NVMe (which
	// sorts before the USB sticks), partitions named as the pad's (but
	// with GUIDs of their own), and a key disk's label on a partition
	// holding another key.
	pcDisk := hostileDisk(t, dir)
	pcSum := fileSum(t, pcDisk)

	// 1. BIOS, key disk: cold boot, run, power button.
	pc := boot(t, dir, "bios", img, keyDisk, pcDisk)
	sys := pc.waitFor(t, regexp.MustCompile(`soulpad-boot: system /dev/(\S+), pad /dev/(\S+)`), 3*time.Minute)
	if strings.HasPrefix(sys[1], "nvme") || strings.HasPrefix(sys[2], "nvme") {
		t.Fatalf("the host OS took the PC's own disk for the pad: %s", sys[0])
	}
	pc.waitFor(t, regexp.MustCompile(`soulpad-host: booted by BIOS`), 3*time.Minute)
	if m := pc.waitFor(t, regexp.MustCompile(`soulpad-host: key disk (\S+)`), 2*time.Minute); strings.Contains(m[1], "nvme") {
		t.Fatalf("the host OS took the key from the PC's own disk: %s", m[0])
	}
	pc.waitFor(t, regexp.MustCompile(`▸ unlock`), 2*time.Minute)
	t.Logf("BIOS boot: power on to the unlock stage in %.1f s (TCG)", time.Since(pc.start).Seconds())
	pc.waitFor(t, regexp.MustCompile(`cold boot`), 5*time.Minute)
	last := pc.waitCounter(t, 3, 5*time.Minute)
	// The PC's screen shows the machine's, full-screen.
	for i := 0; ; i++ {
		ok, why := showsTheGuest(pc.screen(t, dir))
		if ok {
			t.Logf("the PC's screen shows the machine's: %s", why)
			break
		}
		if i == 30 {
			t.Fatalf("the PC's screen does not show the machine's (%s); see %s", why, filepath.Join(dir, "pc-screen.png"))
		}
		time.Sleep(2 * time.Second)
	}
	// The PC's keyboard types into the machine.
	for _, k := range []string{"s", "o", "u", "l", "ret"} {
		pc.qmpRun(t, "send-key", map[string]any{"keys": []map[string]string{{"type": "qcode", "data": k}}})
	}
	pc.waitFor(t, regexp.MustCompile(`soulpad-guest: typed soul`), time.Minute)
	pc.powerButton(t)
	m := pc.waitFor(t, regexp.MustCompile(`sealed (\S+),`), 5*time.Minute)
	point := m[1]
	pc.waitFor(t, regexp.MustCompile(`the pad can be unplugged`), time.Minute)
	pc.waitExit(t, 2*time.Minute)
	if got := pc.lastCounter(); got > last {
		last = got
	}

	// 2. The pad, offline: the sealed point is there.
	pad := filepath.Join(dir, "offline")
	dumpPad(t, img, pad)
	points := exec.Command(soulpad, "points", "--config", cfg)
	points.Env = append(cleanEnv(), "SOULPAD_PAD_PATH="+filepath.Join(pad, "pad"), "SOULPAD_UNLOCK_KEY_FILE="+key)
	pout, err := points.CombinedOutput()
	if err != nil || !bytes.Contains(pout, []byte(point)) {
		t.Fatalf("soulpad points on the pad read offline (want %s): %v\n%s", point, err, pout)
	}
	t.Logf("offline, the pad holds the sealed point %s", point)

	// 3. UEFI with Secure Boot, key disk: resume, the counter goes on.
	if code, vars := ovmf(t, dir); code != "" {
		pc = boot(t, dir, "uefi", img, keyDisk, pcDisk, "-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
		pc.waitFor(t, regexp.MustCompile(`soulpad-host: booted by UEFI, Secure Boot on`), 4*time.Minute)
		pc.waitFor(t, regexp.MustCompile(`▸ unlock`), 2*time.Minute)
		t.Logf("UEFI Secure Boot: power on to the unlock stage in %.1f s (TCG)", time.Since(pc.start).Seconds())
	} else {
		t.Log("OVMF with Microsoft's keys is missing (apt-get install ovmf): UEFI not booted")
		pc = boot(t, dir, "bios-again", img, keyDisk, pcDisk)
	}
	pc.waitFor(t, regexp.MustCompile(`resumed `+regexp.QuoteMeta(point)), 5*time.Minute)
	first := pc.waitCounter(t, 2, 5*time.Minute)
	if first < last {
		t.Fatalf("after the resume the counter is at %d, before the suspend it had reached %d: not resumed", first, last)
	}
	t.Logf("the counter went on: %d before the suspend, %d after the resume", last, first)

	// 4. The pad pulled out of that PC mid-session, then plugged in again
	// (BIOS): the point resumes again.
	point = unplugAndReplug(t, dir, pc, img, keyDisk, pcDisk, point, last)

	// 5. BIOS, no key disk (only the PC's look-alike): the prompt, wrong
	// passphrases, power off.
	pc = boot(t, dir, "nokey", img, "", pcDisk)
	for i := 0; i < 3; i++ {
		pc.waitForCount(t, "Passphrase: ", i+1, 4*time.Minute)
		pc.send(t, "not the key\n")
	}
	pc.waitFor(t, regexp.MustCompile(`soulpad run ended with status 5`), 3*time.Minute)
	if strings.Contains(pc.text(), "a shell") || strings.Contains(pc.text(), "'shell'") {
		t.Fatalf("a failed run offered whoever sits at the PC a shell:\n%s", pc.text())
	}
	pc.send(t, "off\n")
	pc.waitExit(t, 2*time.Minute)
	dumpPad(t, img, filepath.Join(dir, "offline2"))
	points = exec.Command(soulpad, "points", "--config", cfg)
	points.Env = append(cleanEnv(), "SOULPAD_PAD_PATH="+filepath.Join(dir, "offline2", "pad"), "SOULPAD_UNLOCK_KEY_FILE="+key)
	if pout, err = points.CombinedOutput(); err != nil || !bytes.Contains(pout, []byte(point)) {
		t.Fatalf("after the wrong passphrases the pad should still hold %s: %v\n%s", point, err, pout)
	}

	// 6. An evil maid's changes to the boot chain.
	evilMaid(t, dir, img, keyDisk, pcDisk)

	if got := fileSum(t, pcDisk); got != pcSum {
		t.Fatal("the PC's own disk changed")
	}
}

// hostileDisk is a PC's own disk made to fool the pad: a GPT with
// partitions named SOULPAD-SYS and SOULPAD-PAD (GUIDs of their own, the
// owner's ext4 file system in the first) and a FAT partition labelled
// SOULPAD-KEY holding a key that opens nothing.
func hostileDisk(t *testing.T, dir string) string {
	t.Helper()
	disk := filepath.Join(dir, "pc.img")
	run(t, "truncate", "-s", "64M", disk)
	run(t, "sgdisk", "-o", "-n", "1:2048:+24M", "-c", "1:SOULPAD-SYS", "-n", "2:0:+16M", "-c", "2:SOULPAD-PAD",
		"-n", "3:0:+16M", "-c", "3:KEY", disk)
	pcFiles := filepath.Join(dir, "pc-files")
	writeFile(t, filepath.Join(pcFiles, "mine.txt"), "the PC owner's file\n")
	fs := filepath.Join(dir, "pc-fs.img")
	run(t, "mke2fs", "-q", "-F", "-t", "ext4", "-d", pcFiles, fs, "24M")
	run(t, "dd", "if="+fs, "of="+disk, "bs=512", "seek=2048", "conv=notrunc", "status=none")
	keyFS := filepath.Join(dir, "pc-key.img")
	run(t, "mkfs.vfat", "-C", "-n", "SOULPAD-KEY", keyFS, "8192")
	wrong := filepath.Join(dir, "wrong.key")
	writeFile(t, wrong, "a key that opens nothing, on the PC's own disk")
	run(t, "mcopy", "-i", keyFS, wrong, "::/soulpad.key")
	out, err := exec.Command("sgdisk", "-i", "3", disk).Output()
	m := regexp.MustCompile(`First sector: (\d+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("sgdisk -i 3: %v\n%s", err, out)
	}
	run(t, "dd", "if="+keyFS, "of="+disk, "bs=512", "seek="+string(m[1]), "conv=notrunc", "status=none")
	return disk
}

// padStick is the QEMU id of the pad's USB disk (to pull it out).
const padStick = "padstick"

type pc struct {
	unplugged bool // the pad was pulled out: it cannot be unmounted
	start     time.Time
	cmd       *exec.Cmd
	qmp       string
	serial    net.Conn
	mu        sync.Mutex
	log       bytes.Buffer
	done      chan error
}

func boot(t *testing.T, dir, name, img, keyDisk, pcDisk string, extra ...string) *pc {
	t.Helper()
	sock := filepath.Join(dir, name+".serial")
	qmp := filepath.Join(dir, name+".qmp")
	// KVM where it runs guests, else TCG. Under TCG the PC offers no
	// virtualisation to its own guests: TCG's emulated SVM passes the
	// host OS's KVM probe but runs the pad's machine far slower than TCG
	// inside the PC would (a cold boot was seen to hang for minutes).
	accel, cpu := "tcg", "max"
	if ok, _ := kvmprobe.Usable("/dev/kvm"); ok {
		accel, cpu = "kvm", "host"
	}
	args := []string{"-machine", "q35", "-cpu", cpu, "-m", "3072", "-smp", "2", "-accel", accel,
		"-device", "qemu-xhci,id=xhci",
		"-drive", "if=none,id=pad,format=raw,file=" + img, "-device", "usb-storage,bus=xhci.0,drive=pad,bootindex=1,id=" + padStick,
		"-drive", "if=none,id=pc,format=raw,file=" + pcDisk, "-device", "nvme,drive=pc,serial=pc-own-disk",
		"-display", "none", "-monitor", "none", "-no-reboot",
		"-chardev", "socket,id=s0,path=" + sock + ",server=on,wait=on", "-serial", "chardev:s0",
		"-qmp", "unix:" + qmp + ",server=on,wait=off"}
	if keyDisk != "" {
		args = append(args, "-drive", "if=none,id=key,format=raw,file="+keyDisk, "-device", "usb-storage,bus=xhci.0,drive=key")
	}
	args = append(args, extra...)
	p := &pc{start: time.Now(), qmp: qmp, done: make(chan error, 1)}
	p.cmd = exec.Command("qemu-system-x86_64", args...)
	var stderr bytes.Buffer
	p.cmd.Stderr = &stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); <-p.done })
	go func() {
		err := p.cmd.Wait()
		if err != nil && stderr.Len() > 0 {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
		}
		p.done <- err
	}()
	var err error
	for i := 0; i < 100; i++ {
		if p.serial, err = net.Dial("unix", sock); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("serial console: %v (%s)", err, stderr.String())
	}
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer logf.Close()
		buf := make([]byte, 4096)
		for {
			n, err := p.serial.Read(buf)
			if n > 0 {
				p.mu.Lock()
				p.log.Write(buf[:n])
				p.mu.Unlock()
				logf.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s: the PC's serial console (last 6000 bytes):\n%s", name, p.tail(6000))
		}
	})
	return p
}

func (p *pc) text() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *pc) tail(n int) string {
	s := p.text()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

func (p *pc) waitFor(t *testing.T, re *regexp.Regexp, d time.Duration) []string {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if m := re.FindStringSubmatch(p.text()); m != nil {
			return m
		}
		select {
		case err := <-p.done:
			p.done <- err
			if m := re.FindStringSubmatch(p.text()); m != nil {
				return m
			}
			t.Fatalf("the PC powered off (%v) before %q", err, re)
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("no %q on the PC's console in %s", re, d)
	return nil
}

func (p *pc) waitForCount(t *testing.T, s string, n int, d time.Duration) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if strings.Count(p.text(), s) >= n {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%q did not appear %d times on the PC's console in %s", s, n, d)
}

var counterRE = regexp.MustCompile(`soulpad-counter (\d+)`)

// waitCounter waits for n counter lines after the last "the machine is
// running" and returns the first of them.
func (p *pc) waitCounter(t *testing.T, n int, d time.Duration) int {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		s := p.text()
		if i := strings.LastIndex(s, "the machine is running"); i >= 0 {
			if m := counterRE.FindAllStringSubmatch(s[i:], -1); len(m) >= n {
				v, _ := strconv.Atoi(m[0][1])
				return v
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("fewer than %d counter lines from the machine in %s", n, d)
	return 0
}

func (p *pc) lastCounter() int {
	m := counterRE.FindAllStringSubmatch(p.text(), -1)
	if len(m) == 0 {
		return 0
	}
	v, _ := strconv.Atoi(m[len(m)-1][1])
	return v
}

func (p *pc) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(p.serial, s); err != nil {
		t.Fatal(err)
	}
}

// powerButton presses the PC's power button (ACPI, through QMP).
func (p *pc) powerButton(t *testing.T) { t.Helper(); p.qmpRun(t, "system_powerdown", nil) }

// screen is what the PC's screen shows.
func (p *pc) screen(t *testing.T, dir string) *image.RGBA {
	t.Helper()
	path := filepath.Join(dir, "pc-screen.png")
	p.qmpRun(t, "screendump", map[string]string{"filename": path, "format": "png"})
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	rgba := image.NewRGBA(img.Bounds())
	imagedraw.Draw(rgba, rgba.Rect, img, img.Bounds().Min, imagedraw.Src)
	return rgba
}

// showsTheGuest says whether the PC's screen shows the demo guest's
// screen (its banner box, 720×400 text mode) centred, and nothing else:
// every lit pixel inside the banner's place.
func showsTheGuest(img *image.RGBA) (bool, string) {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	off := image.Pt(max(0, (w-720)/2), max(0, (h-400)/2))
	banner := image.Rect(4*9, 2*16, 54*9, 8*16).Add(off).Inset(-4)
	lit, outside := 0, 0
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := img.RGBAAt(x, y)
			if int(c.R)+int(c.G)+int(c.B) < 96 {
				continue
			}
			lit++
			if !image.Pt(x, y).In(banner) {
				outside++
			}
		}
	}
	return lit > 500 && outside == 0, fmt.Sprintf("%dx%d screen: %d lit pixels, %d outside the banner's place %v", w, h, lit, outside, banner)
}

func (p *pc) qmpRun(t *testing.T, command string, args any) {
	t.Helper()
	c, err := net.Dial("unix", p.qmp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"qmp_capabilities", command} {
		msg := map[string]any{"execute": cmd}
		if cmd == command && args != nil {
			msg["arguments"] = args
		}
		b, _ := json.Marshal(msg)
		if _, err := c.Write(append(b, '\n')); err != nil {
			t.Fatal(err)
		}
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(l, `"return"`) {
				break
			}
			if strings.Contains(l, `"error"`) {
				t.Fatalf("%s: %s", cmd, l)
			}
		}
	}
}

func (p *pc) waitExit(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("QEMU: %v", err)
		}
	case <-time.After(d):
		t.Fatalf("the PC did not power off in %s", d)
	}
	if !p.unplugged && !strings.Contains(p.text(), "the pad is unmounted: powering off") {
		t.Fatal("the PC powered off without unmounting the pad")
	}
}

// dumpPad copies the pad partition's files out of the image with debugfs.
func dumpPad(t *testing.T, img, to string) {
	t.Helper()
	first := partSector(t, img, 4, "First")
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	dev := fmt.Sprintf("%s?offset=%d", img, first*512)
	if b, err := exec.Command("debugfs", "-R", "rdump /pad "+to, dev).CombinedOutput(); err != nil {
		t.Fatalf("debugfs rdump: %v\n%s", err, b)
	}
	if _, err := os.Stat(filepath.Join(to, "pad", "pad.json")); err != nil {
		t.Fatalf("the pad read offline has no pad.json: %v", err)
	}
}

func ovmf(t *testing.T, dir string) (code, vars string) {
	code = "/usr/share/OVMF/OVMF_CODE_4M.ms.fd"
	src := "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
	if _, err := os.Stat(code); err != nil {
		return "", ""
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return "", ""
	}
	vars = filepath.Join(dir, "OVMF_VARS.fd")
	if err := os.WriteFile(vars, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return code, vars
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, b)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// cleanEnv is the environment without SOULPAD_* settings of the caller's.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SOULPAD_") {
			env = append(env, kv)
		}
	}
	return env
}
