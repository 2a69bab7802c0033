package bench

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Series is one latency distribution on a plot.
type Series struct {
	Name string
	Hist *hdr.Histogram // nanoseconds
}

// Plot geometry, in SVG user units.
const (
	svgWidth   = 820
	svgHeight  = 480
	svgLeft    = 80
	svgRight   = 24
	svgTop     = 40
	svgBottom  = 56
	svgPlotW   = svgWidth - svgLeft - svgRight
	svgPlotH   = svgHeight - svgTop - svgBottom
	svgMinDec  = 3 // the x axis always reaches 99.9%
	svgMaxDec  = 6 // and never goes past 99.9999%
	svgYTicks  = 5
	svgPalette = "#1f77b4 #d62728 #2ca02c #ff7f0e #9467bd #8c564b #e377c2 #7f7f7f #17becf #bcbd22"
)

// WriteSVG draws latency by percentile for every series on one plot, the way HdrHistogram's plotter
// draws .hgrm files: the x axis is log10(1/(1-percentile)), so 90%, 99%, 99.9%… are evenly spaced and the
// tail gets as much room as the body; the y axis is linear latency. Each series is a <polyline
// class="series"> carrying its name in data-name; the last point of each series is its maximum.
func WriteSVG(w io.Writer, title string, series ...Series) error {
	type point struct{ x, y float64 } // x in decades, y in ns
	lines := make([][]point, len(series))
	decades, yMax := svgMinDec, 0.0
	for i, s := range series {
		if s.Hist == nil || s.Hist.TotalCount() == 0 {
			continue
		}
		// Enough decades to show the rarest percentile this many samples can resolve.
		decades = max(decades, min(svgMaxDec, int(math.Ceil(math.Log10(float64(s.Hist.TotalCount()))))))
		for _, b := range s.Hist.CumulativeDistributionWithTicks(5) {
			x := math.Inf(1)
			if b.Quantile < 100 {
				x = math.Log10(100 / (100 - b.Quantile))
			}
			lines[i] = append(lines[i], point{x, float64(b.ValueAt)})
			yMax = max(yMax, float64(b.ValueAt))
		}
	}
	xMax := float64(decades)
	unit, scale := latencyUnit(yMax)
	step := niceStep(yMax / scale / svgYTicks)
	yTop := math.Max(step, math.Ceil(yMax/scale/step)*step) * scale
	px := func(x float64) float64 { return svgLeft + math.Min(x, xMax)/xMax*svgPlotW }
	py := func(y float64) float64 { return svgTop + svgPlotH - y/yTop*svgPlotH }

	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">
<rect width="100%%" height="100%%" fill="white"/>
<text x="%d" y="22" font-size="15" text-anchor="middle">%s</text>
`, svgWidth, svgHeight, svgWidth, svgHeight, svgWidth/2, xmlText(title))

	// Axes, grid and tick labels.
	fmt.Fprintf(bw, `<g class="axes" stroke="#ccc" stroke-width="1">`+"\n")
	for d := 0; d <= decades; d++ {
		x := px(float64(d))
		fmt.Fprintf(bw, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d"/>`+"\n", x, svgTop, x, svgTop+svgPlotH)
	}
	for v := 0.0; v <= yTop/scale+step/2; v += step {
		y := py(v * scale)
		fmt.Fprintf(bw, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`+"\n", svgLeft, y, svgLeft+svgPlotW, y)
	}
	fmt.Fprintf(bw, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>`+"\n",
		svgLeft, svgTop, svgPlotW, svgPlotH)
	fmt.Fprintln(bw, `</g>`)
	fmt.Fprintln(bw, `<g class="labels" fill="#333">`)
	for d := 0; d <= decades; d++ {
		fmt.Fprintf(bw, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n",
			px(float64(d)), svgTop+svgPlotH+18, percentileLabel(d))
	}
	for v := 0.0; v <= yTop/scale+step/2; v += step {
		fmt.Fprintf(bw, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n",
			svgLeft-6, py(v*scale)+4, trimFloat(v))
	}
	fmt.Fprintf(bw, `<text x="%d" y="%d" text-anchor="middle">Percentile</text>`+"\n",
		svgLeft+svgPlotW/2, svgHeight-12)
	fmt.Fprintf(bw, `<text x="18" y="%d" text-anchor="middle" transform="rotate(-90 18 %d)">Latency (%s)</text>`+"\n",
		svgTop+svgPlotH/2, svgTop+svgPlotH/2, unit)
	fmt.Fprintln(bw, `</g>`)

	// Series and legend.
	colors := strings.Fields(svgPalette)
	for i, s := range series {
		color := colors[i%len(colors)]
		fmt.Fprintf(bw, `<polyline class="series" data-name="%s" fill="none" stroke="%s" stroke-width="1.8" points="`,
			xmlAttr(s.Name), color)
		for j, p := range lines[i] {
			if j > 0 {
				bw.WriteByte(' ')
			}
			fmt.Fprintf(bw, "%.1f,%.1f", px(p.x), py(p.y))
		}
		fmt.Fprintln(bw, `"/>`)
		ly := svgTop + 14 + 18*i
		fmt.Fprintf(bw, `<g class="legend"><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+
			`<text x="%d" y="%d">%s</text></g>`+"\n",
			svgLeft+12, ly, svgLeft+36, ly, color, svgLeft+42, ly+4, xmlText(s.Name))
	}
	fmt.Fprintln(bw, `</svg>`)
	return bw.Flush()
}

// percentileLabel names the x tick d decades in: 0%, 90%, 99%, 99.9%, …
func percentileLabel(d int) string {
	switch d {
	case 0:
		return "0%"
	case 1:
		return "90%"
	}
	nines := strings.Repeat("9", d)
	if d > 2 {
		nines = nines[:2] + "." + nines[2:]
	}
	return nines + "%"
}

// latencyUnit picks the unit for a y axis whose largest value is maxNs.
func latencyUnit(maxNs float64) (string, float64) {
	switch {
	case maxNs >= 1e9:
		return "s", 1e9
	case maxNs >= 1e6:
		return "ms", 1e6
	case maxNs >= 1e3:
		return "µs", 1e3
	default:
		return "ns", 1
	}
}

// niceStep rounds raw up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
}

func xmlText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func xmlAttr(s string) string { return xmlText(s) } // EscapeText also escapes quotes
