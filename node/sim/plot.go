package sim

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Size of a plot written by [WritePlot].
const (
	plotWidth  = 7 * vg.Inch
	plotHeight = 4.5 * vg.Inch
)

// PlotFormat returns the image format that [WritePlot] uses for path,
// "svg" or "png" by its extension in any case, or an error for any
// other extension.
func PlotFormat(path string) (string, error) {
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".svg", ".png":
		return ext[1:], nil
	default:
		return "", fmt.Errorf("invalid plot file %q: its name must end in .svg or .png", path)
	}
}

// WritePlot draws the CDF of r.Revocation and r.Plain, time in
// milliseconds against the fraction of nodes reached, and writes it to
// path as SVG or PNG, as [PlotFormat] chooses.
func WritePlot(path string, r *Result) (err error) {
	format, err := PlotFormat(path)
	if err != nil {
		return err
	}
	p, err := newCDFPlot(r)
	if err != nil {
		return err
	}
	w, err := p.WriterTo(plotWidth, plotHeight, format)
	if err != nil {
		return err
	}

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	_, err = w.WriteTo(f)
	return err
}

// newCDFPlot returns a plot with one step line per series of r.
func newCDFPlot(r *Result) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Delivery CDF: %d nodes, degree %d, link latency %v", r.Nodes, r.Degree, r.Latency)
	if len(r.Rounds) > 1 {
		p.Title.Text += fmt.Sprintf(", per-node median of %d rounds", len(r.Rounds))
	}
	p.X.Label.Text = "time from publish (ms)"
	p.Y.Label.Text = "fraction of nodes"
	p.X.Min, p.Y.Min, p.Y.Max = 0, 0, 1
	p.Add(plotter.NewGrid())
	p.Legend.Top = false
	p.Legend.Left = false

	for i, s := range []Series{r.Revocation, r.Plain} {
		line, err := plotter.NewLine(cdfXYs(s))
		if err != nil {
			return nil, fmt.Errorf("plot the %s series: %w", s.Name, err)
		}
		line.StepStyle = plotter.PostStep
		line.Color = plotutil.Color(i)
		line.Dashes = plotutil.Dashes(i)
		line.Width = vg.Points(1.5)
		p.Add(line)
		p.Legend.Add(s.Name, line)
	}
	return p, nil
}

// cdfXYs returns the steps of the CDF of s, from fraction 0 at time 0.
func cdfXYs(s Series) plotter.XYs {
	xys := plotter.XYs{{X: 0, Y: 0}}
	for _, pt := range s.CDF() {
		xys = append(xys, plotter.XY{X: float64(pt.Latency) / float64(time.Millisecond), Y: pt.Fraction})
	}
	return xys
}
