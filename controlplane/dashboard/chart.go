package dashboard

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"
)

// Charts are inline SVG drawn here: no script, no third-party code, and
// they print and work offline. Colors are presentation attributes, which
// the CSP allows (it forbids inline style).

// Chart sizes in SVG units, about the pixels they are drawn at, so that
// 11-unit axis labels read as 11 px.
const (
	wideW, wideH, halfW, halfH = 1200.0, 240.0, 600.0, 220.0
	padL, padR, padT, padB     = 56.0, 14.0, 12.0, 26.0
)

const (
	colorBlue, colorTeal    = "#2563eb", "#0d9488"
	colorAmber, colorRose   = "#d97706", "#e11d48"
	colorViolet, colorSlate = "#7c3aed", "#64748b"
	colorGreen              = "#16a34a"
	gridColor               = "#e5e7eb"
)

type series struct {
	Name   string
	Color  string
	Values []float64 // NaN: no value in that bucket
	Area   bool
}

type legendItem struct {
	Name, Color string
	Swatch      template.HTML
}

func swatch(color string) template.HTML {
	//nolint:gosec // G203: color is one of the palette constants above.
	return template.HTML(fmt.Sprintf(`<svg class="swatch" width="12" height="12" viewBox="0 0 12 12" aria-hidden="true"><rect width="12" height="12" rx="3" fill="%s"/></svg>`, color))
}

// niceMax rounds v up to 1, 2, 2.5 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if v <= 0 || math.IsNaN(v) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// lineChart draws series over buckets; yMax 0 scales to the data.
func lineChart(label string, w, h float64, buckets []time.Time, ss []series, yFmt func(float64) string, yMax float64) template.HTML {
	chartW, chartH := w, h
	plotW, plotH := chartW-padL-padR, chartH-padT-padB
	n := len(buckets)
	if yMax == 0 {
		for _, s := range ss {
			for _, v := range s.Values {
				if !math.IsNaN(v) && v > yMax {
					yMax = v
				}
			}
		}
		yMax = niceMax(yMax)
	}
	x := func(i int) float64 {
		if n <= 1 {
			return padL + plotW/2
		}
		return padL + float64(i)*plotW/float64(n-1)
	}
	y := func(v float64) float64 { return padT + plotH - v/yMax*plotH }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %g %g" role="img" aria-label="%s" preserveAspectRatio="xMidYMid meet">`, chartW, chartH, template.HTMLEscapeString(label))
	fmt.Fprintf(&b, `<title>%s</title>`, template.HTMLEscapeString(label))
	// Horizontal grid with the y scale.
	for i := 0; i <= 4; i++ {
		v := yMax * float64(i) / 4
		yy := y(v)
		fmt.Fprintf(&b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="%s" stroke-width="1"/>`, padL, yy, chartW-padR, yy, gridColor)
		fmt.Fprintf(&b, `<text x="%g" y="%.1f" text-anchor="end" class="tick">%s</text>`, padL-8, yy+4, template.HTMLEscapeString(yFmt(v)))
	}
	// Time axis: five labels.
	layout := "15:04"
	if n > 0 && buckets[n-1].Sub(buckets[0]) > 36*time.Hour {
		layout = "Jan 2"
	}
	if n > 0 {
		for k := 0; k <= 4; k++ {
			i := k * (n - 1) / 4
			anchor := "middle"
			switch k {
			case 0:
				anchor = "start"
			case 4:
				anchor = "end"
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%g" text-anchor="%s" class="tick">%s</text>`, x(i), chartH-6, anchor, buckets[i].Format(layout))
			if n == 1 {
				break
			}
		}
	}
	for _, s := range ss {
		// Paths break where a value is missing.
		var segs [][]int
		var cur []int
		for i, v := range s.Values {
			if math.IsNaN(v) {
				if len(cur) > 0 {
					segs = append(segs, cur)
				}
				cur = nil
				continue
			}
			cur = append(cur, i)
		}
		if len(cur) > 0 {
			segs = append(segs, cur)
		}
		for _, seg := range segs {
			if len(seg) == 1 {
				i := seg[0]
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`, x(i), y(s.Values[i]), s.Color)
				continue
			}
			var d strings.Builder
			for k, i := range seg {
				cmd := "L"
				if k == 0 {
					cmd = "M"
				}
				fmt.Fprintf(&d, "%s%.1f %.1f", cmd, x(i), y(s.Values[i]))
			}
			if s.Area {
				fmt.Fprintf(&b, `<path d="%sL%.1f %.1fL%.1f %.1fZ" fill="%s" fill-opacity="0.12" stroke="none"/>`, d.String(), x(seg[len(seg)-1]), y(0), x(seg[0]), y(0), s.Color)
			}
			fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round" stroke-linecap="round"/>`, d.String(), s.Color)
		}
	}
	fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#9ca3af" stroke-width="1"/>`, padL, padT+plotH, chartW-padR, padT+plotH)
	b.WriteString(`</svg>`)
	//nolint:gosec // G203: numbers, palette constants and text escaped above.
	return template.HTML(b.String())
}

// shareBar draws a breakdown row's share of requests.
func shareBar(share float64) template.HTML {
	w := math.Max(0, math.Min(1, share)) * 100
	//nolint:gosec // G203: a number and a palette constant.
	return template.HTML(fmt.Sprintf(`<svg class="bar" viewBox="0 0 100 8" preserveAspectRatio="none" aria-hidden="true"><rect width="100" height="8" rx="2" fill="#eef2f7"/><rect width="%.2f" height="8" rx="2" fill="%s"/></svg>`, w, colorBlue))
}

func charts(u *Usage) []chart {
	n := len(u.Buckets)
	vals := func(f func(s *Summary) float64) []float64 {
		out := make([]float64, n)
		for i := range u.Series {
			out[i] = f(&u.Series[i])
		}
		return out
	}
	nanIfNeg := func(v float64) float64 {
		if v < 0 {
			return math.NaN()
		}
		return v
	}
	per := "per " + stepName(u.Range.Step)
	mk := func(id, title, sub string, ss []series, yFmt func(float64) string, yMax float64) chart {
		w, h := halfW, halfH
		if id == "chart-requests" {
			w, h = wideW, wideH
		}
		c := chart{ID: id, Title: title, Sub: sub, SVG: lineChart(title, w, h, u.Buckets, ss, yFmt, yMax)}
		if len(ss) > 1 {
			for _, s := range ss {
				c.Legend = append(c.Legend, legendItem{Name: s.Name, Color: s.Color, Swatch: swatch(s.Color)})
			}
		}
		return c
	}
	return []chart{
		mk("chart-requests", "Requests", per, []series{
			{Name: "Requests", Color: colorBlue, Area: true, Values: vals(func(s *Summary) float64 { return float64(s.Requests) })},
		}, compact, 0),
		mk("chart-tokens", "Tokens by kind", per, []series{
			{Name: "Input", Color: colorBlue, Values: vals(func(s *Summary) float64 { return float64(s.Input.Sum) })},
			{Name: "Cached input", Color: colorTeal, Values: vals(func(s *Summary) float64 { return float64(s.CachedInput.Sum) })},
			{Name: "Cache writes", Color: colorViolet, Values: vals(func(s *Summary) float64 { return float64(s.CacheWrite.Sum) })},
			{Name: "Output", Color: colorAmber, Values: vals(func(s *Summary) float64 { return float64(s.Output.Sum) })},
		}, compact, 0),
		mk("chart-cost", "Cost and cache savings", "USD "+per, []series{
			{Name: "Cost", Color: colorRose, Area: true, Values: vals(func(s *Summary) float64 { return float64(s.CostNanoUSD) / 1e9 })},
			{Name: "Saved by the cache", Color: colorGreen, Values: vals(func(s *Summary) float64 { return float64(s.SavedNanoUSD) / 1e9 })},
		}, usdAxis, 0),
		mk("chart-hitrate", "Cache hit rate", "hits of cacheable requests, "+per, []series{
			{Name: "Hit rate", Color: colorTeal, Area: true, Values: vals(func(s *Summary) float64 { return nanIfNeg(s.HitRate()) * 100 })},
		}, func(v float64) string { return fmt.Sprintf("%.0f%%", v) }, 100),
		mk("chart-latency", "Latency", "from the latency histogram, "+per, []series{
			{Name: "p50", Color: colorBlue, Values: vals(func(s *Summary) float64 { return nanIfNeg(s.P50()) })},
			{Name: "p95", Color: colorAmber, Values: vals(func(s *Summary) float64 { return nanIfNeg(s.P95()) })},
		}, msAxis, 0),
	}
}

func stepName(d time.Duration) string {
	switch d {
	case time.Minute:
		return "minute"
	case time.Hour:
		return "hour"
	}
	return "day"
}

// compact formats an axis value: 950, 1.2k, 3.4M.
func compact(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e9:
		return trimZero(fmt.Sprintf("%.1f", v/1e9)) + "B"
	case a >= 1e6:
		return trimZero(fmt.Sprintf("%.1f", v/1e6)) + "M"
	case a >= 1e3:
		return trimZero(fmt.Sprintf("%.1f", v/1e3)) + "k"
	case a == math.Trunc(a):
		return fmt.Sprintf("%.0f", v)
	}
	return trimZero(fmt.Sprintf("%.2f", v))
}

func trimZero(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

func usdAxis(v float64) string {
	switch {
	case v == 0:
		return "$0"
	case v >= 1000:
		return "$" + compact(v)
	case v >= 1:
		return "$" + trimZero(fmt.Sprintf("%.2f", v))
	}
	return "$" + trimZero(fmt.Sprintf("%.4f", v))
}

func msAxis(v float64) string {
	if v >= 1000 {
		return trimZero(fmt.Sprintf("%.2f", v/1000)) + " s"
	}
	return fmt.Sprintf("%.0f ms", v)
}
