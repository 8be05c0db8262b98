package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
)

// The pad's physical limit. Each cell measures its pad as throttled
// (what a USB disk of that generation moves), and the bench sets each
// step beside what that pad needs for the bytes the step moved:
//
//   - the second suspend, after the guest re-dirtied some of its RAM:
//     its time ÷ (the bytes it wrote ÷ the pad's write speed), goal 1.5;
//   - the resume to the guest's next tick, less what a cold boot takes
//     to reach a running machine (QEMU's start and soulpad's stages,
//     nothing to load): ÷ (the bytes read from the pad before the tick ÷
//     the pad's read speed), goal 1.5;
//   - the bytes read from the pad from the resume to the end of the
//     second suspend ÷ the RAM the guest had touched (the first point's
//     mapped memory on the pad), goal 1.1: each byte crosses once.
const (
	GoalSuspend2 = 1.5
	GoalTick     = 1.5
	GoalReads    = 1.1
)

// speedProbeBytes is what a cell writes and reads to measure its pad.
const speedProbeBytes = 48 << 20

// measure times a write (with fsync) and a read of speedProbeBytes on
// the pad's file system, both direct (no page cache), in MiB/s.
func (d *PadDisk) measure() (readMiBs, writeMiBs float64, err error) {
	path := filepath.Join(d.Mount, ".soulpad-bench-speed")
	defer os.Remove(path)
	const block = 4 << 20
	buf, err := unix.Mmap(-1, 0, block, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE) // aligned for O_DIRECT
	if err != nil {
		return 0, 0, err
	}
	defer unix.Munmap(buf)
	for i := range buf {
		buf[i] = byte(i*7 + i>>12) // not zeros: nothing may skip them
	}
	timed := func(flags int, do func(*os.File, []byte, int64) (int, error)) (float64, error) {
		f, err := os.OpenFile(path, flags|unix.O_DIRECT, 0o600)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		t := time.Now()
		for off := int64(0); off < speedProbeBytes; off += block {
			if _, err := do(f, buf, off); err != nil {
				return 0, err
			}
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
		return float64(speedProbeBytes>>20) / time.Since(t).Seconds(), nil
	}
	if writeMiBs, err = timed(os.O_CREATE|os.O_WRONLY|os.O_TRUNC, (*os.File).WriteAt); err != nil {
		return 0, 0, fmt.Errorf("measuring the pad's write speed: %w", err)
	}
	if readMiBs, err = timed(os.O_RDONLY, (*os.File).ReadAt); err != nil {
		return 0, 0, fmt.Errorf("measuring the pad's read speed: %w", err)
	}
	return readMiBs, writeMiBs, nil
}

// ratios sets the cell's ratios to its pad's limits (0 where a figure
// it needs is missing).
func (c *Cell) ratios() {
	c.Suspend2Ratio, c.TickRatio, c.ReadsRatio = 0, 0, 0
	if c.PadWriteMiBs > 0 && c.Written2 > 0 {
		c.Suspend2Ratio = c.Suspend2 / (c.Written2 / c.PadWriteMiBs)
	}
	if c.PadReadMiBs > 0 && c.ReadTick > 0 {
		c.TickRatio = max(c.ResumeTick-c.ColdStart, 0) / (c.ReadTick / c.PadReadMiBs)
	}
	if c.Touched > 0 {
		c.ReadsRatio = c.ReadSession / c.Touched
	}
}

// atSpeed is how long mib takes at mibs MiB/s (0 when the speed is not
// known).
func atSpeed(mib, mibs float64) float64 {
	if mibs <= 0 {
		return 0
	}
	return mib / mibs
}

// GoalTable prints each median's steps beside its pad's limit, and the
// ratios beside their goals.
func GoalTable(w io.Writer, med []Cell) {
	fmt.Fprintln(w, "Against the pad's physical limit (the pad measured in each run; medians; ratios are medians of each run's)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "memory\tpad\tcrypt\tread/write MiB/s\t2nd suspend\tMiB written\tlimit\tratio (≤%.1f)\tto tick\tcold start\tMiB read\tlimit\tratio (≤%.1f)\tMiB read in all\tRAM touched\tratio (≤%.1f)\t\n", GoalSuspend2, GoalTick, GoalReads)
	for _, c := range med {
		lim2, limT := atSpeed(c.Written2, c.PadWriteMiBs), atSpeed(c.ReadTick, c.PadReadMiBs)
		fmt.Fprintf(tw, "%d MiB\t%s\t%s\t%.0f/%.0f\t%.2f\t%.0f\t%.2f\t%s\t%.2f\t%.2f\t%.0f\t%.2f\t%s\t%.0f\t%.0f\t%s\t\n", c.MemoryMiB, c.Speed, c.Crypt,
			c.PadReadMiBs, c.PadWriteMiBs, c.Suspend2, c.Written2, lim2, verdict(c.Suspend2Ratio, GoalSuspend2),
			c.ResumeTick, c.ColdStart, c.ReadTick, limT, verdict(c.TickRatio, GoalTick),
			c.ReadSession, c.Touched, verdict(c.ReadsRatio, GoalReads))
	}
	tw.Flush()
	for _, c := range med {
		if len(c.Suspend2Phases) > 0 {
			fmt.Fprintf(w, "2nd suspend, %d MiB, %s pad, %s: %s\n", c.MemoryMiB, c.Speed, c.Crypt, PhasesText(c.Suspend2Phases))
		}
	}
}

// PhasesText is a suspend's phases, longest first: "writeback 1.20 s,
// state 0.30 s".
func PhasesText(ph map[string]float64) string {
	names := make([]string, 0, len(ph))
	for n := range ph {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return ph[names[i]] > ph[names[j]] })
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.2f s", n, ph[n])
	}
	return b.String()
}

// verdict is a ratio beside its goal: "1.23 ok", "2.10 over", "—".
func verdict(r, goal float64) string {
	switch {
	case r <= 0:
		return "—"
	case r <= goal:
		return fmt.Sprintf("%.2f ok", r)
	}
	return fmt.Sprintf("%.2f over", r)
}

// lastSuspend is what the pad's newest session journal says of its
// suspend: the RAM the sealed point holds on the pad (MiB; 0: not
// said) and the suspend's phases (s).
func lastSuspend(padDir string) (memMiB float64, phases map[string]float64) {
	names, _ := filepath.Glob(filepath.Join(padDir, "journal", "*.jsonl"))
	sort.Strings(names)
	if len(names) == 0 {
		return 0, nil
	}
	f, err := os.Open(names[len(names)-1])
	if err != nil {
		return 0, nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e struct {
			Stage   string `json:"stage"`
			Message string `json:"message"`
			Fields  struct {
				Memory int64 `json:"memory_bytes"`
				Phases []struct {
					Name    string  `json:"name"`
					Seconds float64 `json:"seconds"`
				} `json:"phases"`
			} `json:"fields"`
		}
		switch {
		case json.Unmarshal(sc.Bytes(), &e) != nil:
		case e.Message == "suspend point sealed":
			memMiB = float64(e.Fields.Memory) / (1 << 20)
		case e.Stage == "suspend" && len(e.Fields.Phases) > 0:
			phases = map[string]float64{}
			for _, p := range e.Fields.Phases {
				phases[p.Name] += p.Seconds
			}
		}
	}
	return memMiB, phases
}
