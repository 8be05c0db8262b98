package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/soulpad/soulpad/internal/proccpu"
)

// OSPlan measures a real operating system on the pad: the SoulPad
// paper's third category, application response time, beside the walk.
// Its image is a disk (any format `soulpad init --disk` takes) whose
// system boots to a login prompt on the serial console that lets root in
// without a password and prints "soulpad-counter N" there while it runs:
// the Debian system scripts/debian-image.sh builds is one.
type OSPlan struct {
	Plan
	Image string
}

// OSCell is one measurement of the real OS.
type OSCell struct {
	Cell
	ImageMiB  float64 `json:"image_mib"`
	Import    float64 `json:"import_s"` // soulpad init --disk
	ImportCPU float64 `json:"import_cpu_s"`
	Boot      float64 `json:"boot_to_login_s"` // soulpad run to the login prompt
	BootCPU   float64 `json:"boot_to_login_cpu_s"`
	Work      float64 `json:"work_s"` // the workload, in the vault
	WorkCPU   float64 `json:"work_cpu_s"`
	// The same image on this PC's disk, outside any vault, booted by
	// QEMU by hand with the machine's type, CPU and disk settings.
	HandBoot    float64 `json:"by_hand_boot_to_login_s"`
	HandBootCPU float64 `json:"by_hand_boot_to_login_cpu_s"`
	HandWork    float64 `json:"by_hand_work_s"`
	HandWorkCPU float64 `json:"by_hand_work_cpu_s"`
	// WorkRatio is Work / HandWork, run by run (the medians: the median
	// of the runs' ratios).
	WorkRatio float64 `json:"work_ratio"`
}

// Workload is what the bench types at the guest's shell: build a tree
// of files the way unpacking a source tree does (a tar of the system's
// libraries, /usr/share and /usr/bin, about 150 MB in 5000 files, then
// unpacked), read all of it back with the guest's cache dropped, delete
// it; everything synced to the disk. Its markers are printed through
// printf so that the echo of the typed line does not match them.
const Workload = `cd /var/tmp && rm -rf w w.tar && printf 'soulpad-work-%s\n' begin && ` +
	`tar -C /usr -cf w.tar lib/x86_64-linux-gnu share bin && sync && mkdir w && tar -C w -xf w.tar && sync && ` +
	`echo 3 >/proc/sys/vm/drop_caches && find w -type f -exec cat {} + | wc -c && rm -rf w w.tar && sync && ` +
	`printf 'soulpad-work-%s\n' end || printf 'soulpad-work-%s\n' failed`

var (
	// The prompt may share its line with what the guest prints next
	// (the counter): "soulpad-test login: soulpad-counter 7 …".
	loginRE = regexp.MustCompile(`\blogin: `)
	shellRE = regexp.MustCompile(`root@[^\s:]+:[^\n#]*# `)
	beginRE = regexp.MustCompile(`soulpad-work-begin`)
	endRE   = regexp.MustCompile(`soulpad-work-(end|failed)`)
)

// OSEstimate is about how long the plan takes here (TCG): each cell
// imports the image, boots it twice (in the vault and by hand) and runs
// the workload twice, and suspends, resumes and suspends again.
func (p OSPlan) OSEstimate() time.Duration {
	n := len(p.SizesMiB) * len(p.Speeds) * len(p.Crypts) * p.Reps
	return time.Duration(n) * 9 * time.Minute / 2
}

// Run measures every cell, calling done after each.
func (p OSPlan) Run(ctx context.Context, done func(i, n int, c OSCell)) []OSCell {
	var cells []OSCell
	n := len(p.SizesMiB) * len(p.Speeds) * len(p.Crypts) * p.Reps
	for _, size := range p.SizesMiB {
		for _, sp := range p.Speeds {
			for _, crypt := range p.Crypts {
				for rep := 1; rep <= p.Reps; rep++ {
					if ctx.Err() != nil {
						return cells
					}
					c := OSCell{Cell: Cell{MemoryMiB: size, Speed: sp.Name, Crypt: crypt, Rep: rep}}
					if err := p.cell(ctx, &c, sp); err != nil {
						c.Error = err.Error()
					}
					cells = append(cells, c)
					if done != nil {
						done(len(cells), n, c)
					}
				}
			}
		}
	}
	return cells
}

func (p OSPlan) cell(ctx context.Context, c *OSCell, sp Speed) error {
	imgMiB, format, err := imageSize(ctx, p.Image)
	if err != nil {
		return err
	}
	c.ImageMiB = float64(imgMiB)
	// The vault holds the disk, a RAM file and a point's copy of it.
	vault := imgMiB + 3*c.MemoryMiB + 256
	dir, disk, done, err := p.newCellPad(vault + 1024)
	if err != nil {
		return err
	}
	defer done()
	env, cli, err := p.padEnv(ctx, dir, disk, c.Crypt, c.MemoryMiB, vault,
		"SOULPAD_MACHINE_KERNEL=", "SOULPAD_MACHINE_INITRD=", "SOULPAD_MACHINE_CMDLINE=")
	if err != nil {
		return err
	}
	cpu0, t := childrenCPU(), time.Now()
	if _, err := cli("init", "--no-carry-plugins", "--disk", p.Image); err != nil {
		return err
	}
	c.Import, c.ImportCPU = time.Since(t).Seconds(), childrenCPU()-cpu0
	if err := disk.Throttle(sp); err != nil {
		return err
	}

	t = time.Now()
	run, err := p.startRunning(ctx, env, 3*time.Minute)
	if err != nil {
		return err
	}
	defer run.kill()
	con, err := attachConsole(ctx, p.Soulpad, env)
	if err != nil {
		return err
	}
	defer con.close()
	pid := run.cmd.Process.Pid
	if _, err := con.wait(ctx, loginRE, 10*time.Minute); err != nil {
		return fmt.Errorf("in the vault: %w", err)
	}
	c.Boot, c.BootCPU = time.Since(t).Seconds(), proccpu.Tree(pid)
	m := machineOf(pid)
	if c.Work, c.WorkCPU, err = work(ctx, con, func() float64 { return proccpu.Tree(pid) }); err != nil {
		return fmt.Errorf("in the vault: %w", err)
	}
	last, err := con.wait(ctx, counterRE, time.Minute)
	if err != nil {
		return err
	}
	con.close()
	n, _ := strconv.Atoi(last[1])
	if err := p.walk(ctx, &c.Cell, env, cli, disk, run, n); err != nil {
		return err
	}
	if err := p.byHand(ctx, c, dir, format, m); err != nil {
		return err
	}
	c.WorkRatio = ratio(c.Work, c.HandWork)
	return nil
}

// byHand boots the same image from this PC's disk with QEMU alone and
// runs the workload there.
func (p OSPlan) byHand(ctx context.Context, c *OSCell, dir, format string, m handMachine) error {
	img := filepath.Join(dir, "by-hand.qcow2")
	if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-f", format, "-O", "qcow2", p.Image, img).CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img convert: %v: %s", err, out)
	}
	sock := filepath.Join(dir, "by-hand.sock")
	args := []string{"-nodefaults", "-no-user-config", "-no-reboot", "-name", "bench-by-hand",
		"-machine", m.machine, "-m", strconv.FormatInt(c.MemoryMiB, 10), "-smp", m.smp,
		"-rtc", "base=utc", "-vga", "std", "-display", "none",
		"-chardev", "socket,id=ser0,path=" + sock + ",server=on,wait=off", "-serial", "chardev:ser0",
		"-drive", "file=" + img + ",if=none,id=d0,format=qcow2,cache=writeback,discard=unmap",
		"-device", "virtio-blk-pci,drive=d0,bootindex=1",
		"-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0"}
	if m.cpu != "" {
		args = append(args, "-cpu", m.cpu)
	}
	cmd := exec.CommandContext(ctx, m.qemu, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	t := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var conn net.Conn
	for deadline := time.Now().Add(30 * time.Second); ; {
		var err error
		if conn, err = net.Dial("unix", sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("QEMU by hand: no serial console: %v %s", err, stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	con := newSerial(conn, conn, func() { conn.Close() })
	defer con.close()
	pid := cmd.Process.Pid
	if _, err := con.wait(ctx, loginRE, 10*time.Minute); err != nil {
		return fmt.Errorf("QEMU by hand: %w %s", err, stderr.String())
	}
	c.HandBoot, c.HandBootCPU = time.Since(t).Seconds(), proccpu.Seconds(pid, false)
	var err error
	if c.HandWork, c.HandWorkCPU, err = work(ctx, con, func() float64 { return proccpu.Seconds(pid, false) }); err != nil {
		return fmt.Errorf("QEMU by hand: %w", err)
	}
	return nil
}

// work logs in as root on con, drops this PC's page cache, types the
// workload and times it from its first marker to its last: wall seconds,
// and the CPU-seconds cpu counts over that time.
func work(ctx context.Context, con *serial, cpu func() float64) (wall, cpus float64, err error) {
	if err := con.send("root\n"); err != nil {
		return 0, 0, err
	}
	if _, err := con.wait(ctx, shellRE, 2*time.Minute); err != nil {
		return 0, 0, fmt.Errorf("no root shell after the login: %w", err)
	}
	if err := dropHostCaches(); err != nil {
		return 0, 0, err
	}
	if err := con.send(Workload + "\n"); err != nil {
		return 0, 0, err
	}
	if _, err := con.wait(ctx, beginRE, time.Minute); err != nil {
		return 0, 0, err
	}
	t, cpu0 := time.Now(), cpu()
	m, err := con.wait(ctx, endRE, 30*time.Minute)
	if err != nil {
		return 0, 0, err
	}
	wall, cpus = time.Since(t).Seconds(), cpu()-cpu0
	if m[1] != "end" {
		return 0, 0, errors.New("the workload failed in the guest (see its console)")
	}
	return wall, cpus, con.send("exit\n")
}

// dropHostCaches writes back and drops this PC's page cache, so that the
// workload's reads in the vault and by hand both start from the disk.
func dropHostCaches() error {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0)
}

// imageSize is the image's virtual size in MiB and its format.
func imageSize(ctx context.Context, path string) (int64, string, error) {
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "--output", "json", path).Output()
	if err != nil {
		return 0, "", fmt.Errorf("qemu-img info %s: %v", path, err)
	}
	var info struct {
		Size   int64  `json:"virtual-size"`
		Format string `json:"format"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return 0, "", fmt.Errorf("qemu-img info %s: %v", path, err)
	}
	return (info.Size + 1<<20 - 1) >> 20, info.Format, nil
}

func childrenCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// handMachine is how the bench's QEMU by hand is set up: as the machine
// the run started, where that QEMU is found under it.
type handMachine struct{ qemu, machine, cpu, smp string }

// machineOf reads the machine type, CPU and vCPUs off the command line of
// the QEMU that runs under pid (vmm-qemu's); without one, q35 under TCG
// with QEMU's default CPU.
func machineOf(pid int) handMachine {
	m := handMachine{qemu: "qemu-system-x86_64", machine: "q35,accel=tcg", smp: "1"}
	for _, q := range proccpu.Descendants(pid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", q))
		if err != nil {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if !strings.HasPrefix(filepath.Base(argv[0]), "qemu-system") {
			continue
		}
		m.qemu = argv[0]
		for i := 0; i+1 < len(argv); i++ {
			switch argv[i] {
			case "-machine":
				m.machine = regexp.MustCompile(`,memory-backend=[^,]*`).ReplaceAllString(argv[i+1], "")
			case "-cpu":
				m.cpu = argv[i+1]
			case "-smp":
				m.smp = argv[i+1]
			}
		}
		break
	}
	return m
}

// OSMedian is the per-(memory, speed, crypt) median of the cells'
// figures, the walk's and the real OS's own.
func OSMedian(cells []OSCell) []OSCell {
	var walks []Cell
	for _, c := range cells {
		walks = append(walks, c.Cell)
	}
	var out []OSCell
	for _, w := range Median(walks) {
		var g []OSCell
		for _, c := range cells {
			if c.Error == "" && c.MemoryMiB == w.MemoryMiB && c.Speed == w.Speed && c.Crypt == w.Crypt {
				g = append(g, c)
			}
		}
		med := func(f func(OSCell) float64) float64 {
			v := make([]float64, len(g))
			for i, c := range g {
				v[i] = f(c)
			}
			sort.Float64s(v)
			return v[len(v)/2]
		}
		out = append(out, OSCell{Cell: w, ImageMiB: g[0].ImageMiB,
			Import: med(func(c OSCell) float64 { return c.Import }), ImportCPU: med(func(c OSCell) float64 { return c.ImportCPU }),
			Boot: med(func(c OSCell) float64 { return c.Boot }), BootCPU: med(func(c OSCell) float64 { return c.BootCPU }),
			Work: med(func(c OSCell) float64 { return c.Work }), WorkCPU: med(func(c OSCell) float64 { return c.WorkCPU }),
			HandBoot: med(func(c OSCell) float64 { return c.HandBoot }), HandBootCPU: med(func(c OSCell) float64 { return c.HandBootCPU }),
			HandWork: med(func(c OSCell) float64 { return c.HandWork }), HandWorkCPU: med(func(c OSCell) float64 { return c.HandWorkCPU }),
			WorkRatio: med(func(c OSCell) float64 { return c.WorkRatio }),
		})
	}
	return out
}

// WorkGoal is the goal for the workload's time in the vault
// against the same image outside any vault.
func WorkGoal(crypt string) float64 {
	switch crypt {
	case "crypt-plain":
		return 1.1
	case "crypt-luks":
		return 1.3
	}
	return 0
}

// OSTable prints the real OS's medians: the boot, the workload in the
// vault beside the same image outside any vault, and the walk.
func OSTable(w io.Writer, image string, med []OSCell) {
	fmt.Fprintf(w, "A real OS on the pad (%s): boot and application response time, s (CPU-seconds in brackets)\n", image)
	fmt.Fprintln(w, "by hand: the same image on this PC's disk, outside any vault, QEMU alone with the same machine type and CPU")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "memory\tpad\tcrypt\timport\tboot to login\tby hand\twork\tby hand\twork ×\tgoal\truns\t")
	for _, c := range med {
		goal := "—"
		if g := WorkGoal(c.Crypt); g > 0 {
			goal = fmt.Sprintf("≤ %.1f×", g)
		}
		fmt.Fprintf(tw, "%d MiB\t%s\t%s\t%.1f (%.1f)\t%.1f (%.1f)\t%.1f (%.1f)\t%.1f (%.1f)\t%.1f (%.1f)\t%.2f×\t%s\t%d\t\n", c.MemoryMiB, c.Speed, c.Crypt,
			c.Import, c.ImportCPU, c.Boot, c.BootCPU, c.HandBoot, c.HandBootCPU, c.Work, c.WorkCPU, c.HandWork, c.HandWorkCPU, c.WorkRatio, goal, c.Rep)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nThe real OS's walk, s (CPU-seconds in brackets)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "memory\tpad\tcrypt\tsuspend\tMiB to pad\tresume\tto tick\t2nd suspend\t2nd MiB\t")
	for _, c := range med {
		fmt.Fprintf(tw, "%d MiB\t%s\t%s\t%.2f (%.2f)\t%.0f\t%.2f\t%.2f (%.2f)\t%.2f (%.2f)\t%.0f\t\n", c.MemoryMiB, c.Speed, c.Crypt,
			c.Suspend1, c.Suspend1CPU, c.Written1, c.Resume, c.ResumeTick, c.ResumeTickCPU, c.Suspend2, c.Suspend2CPU, c.Written2)
	}
	tw.Flush()
}

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// WriteOSJSON writes every real-OS run and the medians.
func WriteOSJSON(path, image string, cells, med []OSCell) error {
	b, err := json.MarshalIndent(map[string]any{"image": image, "workload": Workload, "runs": cells, "medians": med}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
