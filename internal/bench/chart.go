package bench

import (
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// chartBar is one bar of each group in the chart.
type chartBar struct {
	name  string
	color color.RGBA
	of    func(Cell) float64
	paper float64 // the paper's figure (the top of its range), 0: none
}

var chartBars = []chartBar{
	{"resume to running", color.RGBA{31, 119, 180, 255}, func(c Cell) float64 { return c.Resume }, Paper.ResumeUSB2[1]},
	{"resume to the guest's tick", color.RGBA{114, 170, 212, 255}, func(c Cell) float64 { return c.ResumeTick }, 0},
	{"the pad's limit for what the resume read before the tick", color.RGBA{190, 215, 235, 255}, func(c Cell) float64 { return atSpeed(c.ReadTick, c.PadReadMiBs) }, 0},
	{"first suspend", color.RGBA{214, 96, 39, 255}, func(c Cell) float64 { return c.Suspend1 }, Paper.SuspendUSB2[1]},
	{"second suspend", color.RGBA{240, 160, 80, 255}, func(c Cell) float64 { return c.Suspend2 }, 0},
	{"the pad's limit for what the second suspend wrote", color.RGBA{250, 215, 170, 255}, func(c Cell) float64 { return atSpeed(c.Written2, c.PadWriteMiBs) }, 0},
}

// WriteChart charts, for the first crypt plugin measured, each memory
// size and pad: the resume to "running" and to the guest's next tick,
// the first and the second suspend, and beside them the pad's physical
// limit for the bytes the resume read before the tick and the second
// suspend wrote; and the paper's 256 MB VM over USB 2.0 (the top of its
// ranges). The seconds are on a log scale, so that 0.3 s and 141 s both
// read; the legend sits above the bars. The format follows path's
// extension (.svg, .png).
func WriteChart(path string, med []Cell) error {
	if len(med) == 0 {
		return fmt.Errorf("nothing to chart")
	}
	crypt := med[0].Crypt
	var groups []Cell
	var names []string
	for _, c := range med {
		if c.Crypt == crypt {
			groups = append(groups, c)
			names = append(names, fmt.Sprintf("%d MiB, %s", c.MemoryMiB, c.Speed))
		}
	}
	names = append(names, "the paper:\n256 MB, USB 2.0")
	lo, hi := math.Inf(1), 0.0
	values := make([]plotter.Values, len(chartBars))
	for k, b := range chartBars {
		for _, c := range groups {
			values[k] = append(values[k], b.of(c))
		}
		values[k] = append(values[k], b.paper)
		for _, v := range values[k] {
			if v > 0 {
				lo, hi = min(lo, v), max(hi, v)
			}
		}
	}
	if hi == 0 {
		return fmt.Errorf("nothing to chart")
	}
	floor := math.Pow(10, math.Floor(math.Log10(lo/2)))
	p := plot.New()
	p.Title.Text = fmt.Sprintf("SoulPad here (%s) and in the paper: seconds, log scale", crypt)
	p.Y.Label.Text = "seconds"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.NominalX(names...)
	// Bars on a log scale start at the floor, not at 0.
	base := make(plotter.Values, len(names))
	for i := range base {
		base[i] = floor
	}
	baseBars, err := plotter.NewBarChart(base, 1)
	if err != nil {
		return err
	}
	w := vg.Points(8)
	for k, b := range chartBars {
		vals := make(plotter.Values, len(names))
		for i, v := range values[k] {
			vals[i] = max(v-floor, 0)
		}
		bar, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return err
		}
		bar.StackOn(baseBars)
		bar.Color = b.color
		bar.LineStyle.Width = 0
		bar.Offset = w * vg.Length(float64(k)-float64(len(chartBars)-1)/2)
		p.Add(bar)
		p.Legend.Add(b.name, bar)
	}
	// Room above the bars for the legend: two decades.
	p.Y.Min, p.Y.Max = floor, hi*100
	p.X.Min, p.X.Max = -0.7, float64(len(names))-0.3
	p.Legend.Top, p.Legend.Left = true, true
	width := max(480, 120+95*len(names))
	return p.Save(vg.Points(float64(width)), 4.5*vg.Inch, path)
}
