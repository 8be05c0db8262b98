package bench

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"text/tabwriter"
)

// The SoulPad paper's numbers (Cáceres et al., "Reincarnating PCs with
// Portable SoulPads", MobiSys 2005), for a 256 MB VM and a 16 GB disk.
var Paper = struct {
	// Table 2: latency over USB 2.0, seconds, across its PCs and disks.
	ResumeUSB2, SuspendUSB2 [2]float64
	// Over USB 1.1: more than 16 minutes.
	USB11 float64
	// Tables 3 and 4: the stages, seconds.
	AutoConfig, LoadState, StopVM, SaveMemory float64
	// Table 5: a streamlined boot, and encryption's cost, seconds.
	StreamlinedBoot, EncryptResume, EncryptSuspend float64
}{
	ResumeUSB2: [2]float64{116, 141}, SuspendUSB2: [2]float64{10, 30}, USB11: 16 * 60,
	AutoConfig: 57, LoadState: 57, StopVM: 6, SaveMemory: 16,
	StreamlinedBoot: -12, EncryptResume: 10, EncryptSuspend: 6,
}

// Table prints the medians beside the paper's numbers.
func Table(w io.Writer, med []Cell) {
	fmt.Fprintln(w, "Table 2 — suspend and resume latency (s) by memory and pad; the paper: a 256 MB VM over USB 2.0")
	fmt.Fprintln(w, "(CPU): CPU-seconds of soulpad run, its plugins and QEMU over the step before it")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "memory\tpad\tcrypt\tresume\tto tick\t(CPU)\tsuspend\t(CPU)\t2nd suspend\t(CPU)\tMiB to pad\t2nd MiB\tMiB read\t2nd read\truns\tpaper resume\tpaper suspend\t")
	for _, c := range med {
		pr, ps := "", ""
		if c.Speed == "usb2" && c.MemoryMiB == 256 {
			pr = fmt.Sprintf("%.0f–%.0f", Paper.ResumeUSB2[0], Paper.ResumeUSB2[1])
			ps = fmt.Sprintf("%.0f–%.0f", Paper.SuspendUSB2[0], Paper.SuspendUSB2[1])
		}
		fmt.Fprintf(tw, "%d MiB\t%s\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.0f\t%.0f\t%.0f\t%.0f\t%d\t%s\t%s\t\n", c.MemoryMiB, c.Speed, c.Crypt,
			c.Resume, c.ResumeTick, c.ResumeTickCPU, c.Suspend1, c.Suspend1CPU, c.Suspend2, c.Suspend2CPU, c.Written1, c.Written2, c.Read1, c.Read2, c.Rep, pr, ps)
	}
	tw.Flush()

	if len(med) == 0 {
		return
	}
	// Tables 3–4: the stages of the slowest pad's smallest machine.
	ref := med[0]
	for _, c := range med {
		if c.MemoryMiB == ref.MemoryMiB && c.Speed == "usb2" {
			ref = c
			break
		}
	}
	fmt.Fprintf(w, "\nTables 3–4 — where the time goes (s), %d MiB, %s pad, %s\n", ref.MemoryMiB, ref.Speed, ref.Crypt)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "soulpad\tours\tthe paper\t")
	fmt.Fprintf(tw, "boot + detect (a host OS is already up)\t%.2f\t%.0f (host OS autoconfiguration)\t\n", ref.Stages["boot"]+ref.Stages["detect"], Paper.AutoConfig)
	fmt.Fprintf(tw, "unlock\t%.2f\t—\t\n", ref.Stages["unlock"])
	fmt.Fprintf(tw, "resume\t%.2f\t%.0f (loading VM state)\t\n", ref.Stages["resume"], Paper.LoadState)
	fmt.Fprintf(tw, "suspend (stop, save, seal)\t%.2f\t%.0f (stop %.0f + save memory %.0f)\t\n", ref.Stages["suspend"], Paper.StopVM+Paper.SaveMemory, Paper.StopVM, Paper.SaveMemory)
	fmt.Fprintf(tw, "shutdown\t%.2f\t—\t\n", ref.Stages["shutdown"])
	tw.Flush()

	// Table 5: encryption's cost against crypt-plain at the same size and pad.
	var rows []string
	for _, c := range med {
		if c.Crypt == "crypt-plain" {
			continue
		}
		for _, p := range med {
			if p.Crypt == "crypt-plain" && p.MemoryMiB == c.MemoryMiB && p.Speed == c.Speed {
				rows = append(rows, fmt.Sprintf("%d MiB\t%s\t%s\t%+.2f\t%+.2f\t%+.0f\t%+.0f\t", c.MemoryMiB, c.Speed, c.Crypt,
					c.Resume-p.Resume, c.Suspend1-p.Suspend1, Paper.EncryptResume, Paper.EncryptSuspend))
			}
		}
	}
	if len(rows) > 0 {
		fmt.Fprintln(w, "\nTable 5 — what encryption costs (s) against crypt-plain")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "memory\tpad\tcrypt\tresume\tsuspend\tpaper resume\tpaper suspend\t")
		for _, r := range rows {
			fmt.Fprintln(tw, r)
		}
		tw.Flush()
	}
}

// Median is the per-(memory, speed, crypt) median of the cells' figures.
func Median(cells []Cell) []Cell {
	type key struct {
		m     int64
		s, cr string
	}
	groups := map[key][]Cell{}
	var order []key
	for _, c := range cells {
		if c.Error != "" {
			continue
		}
		k := key{c.MemoryMiB, c.Speed, c.Crypt}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], c)
	}
	var out []Cell
	for _, k := range order {
		g := groups[k]
		med := func(f func(Cell) float64) float64 {
			v := make([]float64, len(g))
			for i, c := range g {
				v[i] = f(c)
			}
			sort.Float64s(v)
			return v[len(v)/2]
		}
		m := Cell{MemoryMiB: k.m, Speed: k.s, Crypt: k.cr, Rep: len(g), Stages: map[string]float64{},
			Suspend1: med(func(c Cell) float64 { return c.Suspend1 }), Resume: med(func(c Cell) float64 { return c.Resume }),
			ResumeTick: med(func(c Cell) float64 { return c.ResumeTick }), Suspend2: med(func(c Cell) float64 { return c.Suspend2 }),
			Written1: med(func(c Cell) float64 { return c.Written1 }), Written2: med(func(c Cell) float64 { return c.Written2 }),
			Read1: med(func(c Cell) float64 { return c.Read1 }), Read2: med(func(c Cell) float64 { return c.Read2 }),
			Suspend1CPU: med(func(c Cell) float64 { return c.Suspend1CPU }), ResumeTickCPU: med(func(c Cell) float64 { return c.ResumeTickCPU }),
			Suspend2CPU: med(func(c Cell) float64 { return c.Suspend2CPU }),
			PadReadMiBs: med(func(c Cell) float64 { return c.PadReadMiBs }), PadWriteMiBs: med(func(c Cell) float64 { return c.PadWriteMiBs }),
			ColdStart: med(func(c Cell) float64 { return c.ColdStart }), ReadTick: med(func(c Cell) float64 { return c.ReadTick }),
			ReadSession: med(func(c Cell) float64 { return c.ReadSession }), Touched: med(func(c Cell) float64 { return c.Touched }),
			Suspend2Ratio: med(func(c Cell) float64 { return c.Suspend2Ratio }), TickRatio: med(func(c Cell) float64 { return c.TickRatio }),
			ReadsRatio: med(func(c Cell) float64 { return c.ReadsRatio })}
		for st := range g[0].Stages {
			m.Stages[st] = med(func(c Cell) float64 { return c.Stages[st] })
		}
		for ph := range g[0].Suspend2Phases {
			if m.Suspend2Phases == nil {
				m.Suspend2Phases = map[string]float64{}
			}
			m.Suspend2Phases[ph] = med(func(c Cell) float64 { return c.Suspend2Phases[ph] })
		}
		out = append(out, m)
	}
	return out
}

// WriteCSV writes every run.
func WriteCSV(path string, cells []Cell) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	stages := []string{"boot", "detect", "unlock", "resume", "run", "suspend", "shutdown"}
	head := []string{"memory_mib", "pad_speed", "crypt", "rep", "resume_to_running_s", "resume_to_tick_s", "suspend_s", "second_suspend_s", "suspend_mib_to_pad", "second_suspend_mib_to_pad", "suspend_mib_from_pad", "second_suspend_mib_from_pad", "resume_to_tick_cpu_s", "suspend_cpu_s", "second_suspend_cpu_s",
		"pad_read_mib_s", "pad_write_mib_s", "cold_start_s", "resume_mib_from_pad_to_tick", "session_mib_from_pad", "memory_touched_mib", "second_suspend_to_limit", "tick_to_limit", "reads_to_touched"}
	for _, s := range stages {
		head = append(head, "stage_"+s+"_s")
	}
	_ = w.Write(append(head, "error"))
	ff := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
	for _, c := range cells {
		row := []string{strconv.FormatInt(c.MemoryMiB, 10), c.Speed, c.Crypt, strconv.Itoa(c.Rep), ff(c.Resume), ff(c.ResumeTick), ff(c.Suspend1), ff(c.Suspend2), ff(c.Written1), ff(c.Written2), ff(c.Read1), ff(c.Read2), ff(c.ResumeTickCPU), ff(c.Suspend1CPU), ff(c.Suspend2CPU),
			ff(c.PadReadMiBs), ff(c.PadWriteMiBs), ff(c.ColdStart), ff(c.ReadTick), ff(c.ReadSession), ff(c.Touched), ff(c.Suspend2Ratio), ff(c.TickRatio), ff(c.ReadsRatio)}
		for _, s := range stages {
			row = append(row, ff(c.Stages[s]))
		}
		_ = w.Write(append(row, c.Error))
	}
	w.Flush()
	return errorsJoin(w.Error(), f.Close())
}

// WriteJSON writes every run and the medians.
func WriteJSON(path string, cells, med []Cell) error {
	b, err := json.MarshalIndent(map[string]any{"runs": cells, "medians": med, "paper": Paper}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func errorsJoin(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
