package main

import (
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
)

// The charts are inline SVG drawn here, so the report is one file that
// opens anywhere (a phone, an e-mail attachment) with no script, font or
// image to fetch. Every drawn value is an element of class "mark" with
// its value in data-value: the browser test reads them back.

// chartWidth is the drawing's coordinate width; the SVG scales to the
// page (width 100%), so the text sizes are chosen for a phone's width.
const chartWidth = 600

// palette is the series colours, distinguishable in colour-blind vision
// (Okabe–Ito).
func palette(i int) string {
	p := [...]string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00"}
	return p[i%len(p)]
}

// value is a point that may be missing (a ratio with no denominator).
type value struct {
	v  float64
	ok bool
}

// chartSeries is one line or one kind of bar.
type chartSeries struct {
	key, name string
	vals      []value
}

// svgNum formats a coordinate compactly.
func svgNum(x float64) string { return strconv.FormatFloat(math.Round(x*10)/10, 'f', -1, 64) }

// dataNum is a value as the page carries it for machines: full precision.
func dataNum(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }

func esc(s string) string { return template.HTMLEscapeString(s) }

// niceMax rounds a maximum up to 1, 2, 2.5, 5 or 10 times a power of ten,
// with the number of grid steps that puts every line on a round number.
func niceMax(m float64) (top float64, steps int) {
	if m <= 0 || math.IsNaN(m) {
		return 1, 4
	}
	p := math.Pow(10, math.Floor(math.Log10(m)))
	for _, f := range []struct {
		f     float64
		steps int
	}{{1, 4}, {2, 4}, {2.5, 5}, {5, 5}, {10, 5}} {
		if m <= f.f*p*(1+1e-9) {
			return f.f * p, f.steps
		}
	}
	return 10 * p, 5
}

// grid draws the horizontal lines and the y axis's values.
func grid(b *strings.Builder, left, pw, top, ph, maxY float64, steps int, fmtY func(float64) string) {
	for i := 0; i <= steps; i++ {
		y := top + ph - ph*float64(i)/float64(steps)
		fmt.Fprintf(b, `<line class="grid" x1="%s" x2="%s" y1="%s" y2="%s"/>`, svgNum(left), svgNum(left+pw), svgNum(y), svgNum(y))
		fmt.Fprintf(b, `<text class="axis" x="%s" y="%s" text-anchor="end">%s</text>`, svgNum(left-6), svgNum(y+4), esc(fmtY(maxY*float64(i)/float64(steps))))
	}
}

// lineChart draws series over the labels with a point (the mark) per
// known value; a missing value breaks the line. fmtY formats the axis.
func lineChart(id, aria string, labels []string, ss []chartSeries, maxY float64, steps int, fmtY func(float64) string) template.HTML {
	const h, left, right, top, bottom = 240.0, 60.0, 24.0, 12.0, 30.0
	pw, ph := chartWidth-left-right, h-top-bottom
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" data-chart="%s" viewBox="0 0 %d %s" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`,
		esc(id), chartWidth, svgNum(h), esc(aria))
	grid(&b, left, pw, top, ph, maxY, steps, fmtY)
	n := len(labels)
	x := func(i int) float64 {
		if n == 1 {
			return left + pw/2
		}
		return left + pw*float64(i)/float64(n-1)
	}
	step := 1
	if n > 8 {
		step = 2
	}
	for i, l := range labels {
		if (n-1-i)%step == 0 { // always label the last (the report's) week
			fmt.Fprintf(&b, `<text class="axis" x="%s" y="%s" text-anchor="middle">%s</text>`, svgNum(x(i)), svgNum(h-8), esc(l))
		}
	}
	for si, s := range ss {
		color := palette(si)
		var path strings.Builder
		pen := false
		for i, v := range s.vals {
			if !v.ok {
				pen = false
				continue
			}
			y := top + ph - ph*math.Min(v.v/maxY, 1)
			if pen {
				path.WriteString(" L")
			} else {
				path.WriteString(" M")
			}
			path.WriteString(svgNum(x(i)) + " " + svgNum(y))
			pen = true
		}
		if path.Len() > 0 {
			fmt.Fprintf(&b, `<path class="line" d="%s" stroke="%s"/>`, strings.TrimSpace(path.String()), color)
		}
		for i, v := range s.vals {
			if !v.ok {
				continue
			}
			y := top + ph - ph*math.Min(v.v/maxY, 1)
			fmt.Fprintf(&b, `<circle class="mark" data-series="%s" data-key="%s" data-value="%s" cx="%s" cy="%s" r="4" fill="%s"><title>%s %s: %s</title></circle>`,
				esc(s.key), esc(labels[i]), dataNum(v.v), svgNum(x(i)), svgNum(y), color, esc(s.name), esc(labels[i]), esc(fmtY(v.v)))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// columnChart draws one vertical bar per label (the no-show trend); a
// missing value leaves its slot empty.
func columnChart(id, aria string, labels []string, s chartSeries, maxY float64, steps int, fmtY func(float64) string) template.HTML {
	const h, left, right, top, bottom = 240.0, 60.0, 12.0, 12.0, 30.0
	pw, ph := chartWidth-left-right, h-top-bottom
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" data-chart="%s" viewBox="0 0 %d %s" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`,
		esc(id), chartWidth, svgNum(h), esc(aria))
	grid(&b, left, pw, top, ph, maxY, steps, fmtY)
	n := len(labels)
	slot := pw / float64(max(n, 1))
	bw := slot * 0.64
	step := 1
	if n > 8 {
		step = 2
	}
	for i, l := range labels {
		cx := left + slot*(float64(i)+0.5)
		if (n-1-i)%step == 0 {
			fmt.Fprintf(&b, `<text class="axis" x="%s" y="%s" text-anchor="middle">%s</text>`, svgNum(cx), svgNum(h-8), esc(l))
		}
		v := s.vals[i]
		if !v.ok {
			continue
		}
		// A zero is drawn as a thin bar on the axis: "none happened" is
		// data, unlike a missing share, which leaves the slot empty.
		bh := math.Max(ph*math.Min(v.v/maxY, 1), 2)
		fmt.Fprintf(&b, `<rect class="mark" data-series="%s" data-key="%s" data-value="%s" x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s: %s</title></rect>`,
			esc(s.key), esc(l), dataNum(v.v), svgNum(cx-bw/2), svgNum(top+ph-bh), svgNum(bw), svgNum(bh), palette(5), esc(l), esc(fmtY(v.v)))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// barChart draws horizontal bars: a group per label, a bar per series,
// the group's label and values written above its bars so long names and
// numbers fit a phone's width (funnel, channels, intents).
func barChart(id, aria string, labels []string, ss []chartSeries, fmtV func(float64) string) template.HTML {
	const pad, labelH, barH, gap, groupGap = 4.0, 26.0, 14.0, 3.0, 12.0
	pw := chartWidth - 2*pad
	maxV := 0.0
	for _, s := range ss {
		for _, v := range s.vals {
			if v.ok {
				maxV = math.Max(maxV, v.v)
			}
		}
	}
	if maxV == 0 {
		maxV = 1
	}
	groupH := labelH + float64(len(ss))*(barH+gap) - gap
	h := pad*2 + float64(len(labels))*(groupH+groupGap) - groupGap
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart bars" data-chart="%s" viewBox="0 0 %d %s" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`,
		esc(id), chartWidth, svgNum(h), esc(aria))
	for i, l := range labels {
		gy := pad + float64(i)*(groupH+groupGap)
		var vals []string
		for _, s := range ss {
			if v := s.vals[i]; v.ok {
				vals = append(vals, fmtV(v.v))
			}
		}
		fmt.Fprintf(&b, `<text class="label" x="%s" y="%s">%s <tspan class="value">%s</tspan></text>`,
			svgNum(pad), svgNum(gy+labelH-6), esc(trimLabel(l, 40)), esc(strings.Join(vals, " · ")))
		for si, s := range ss {
			v := s.vals[i]
			if !v.ok {
				continue
			}
			y := gy + labelH + float64(si)*(barH+gap)
			w := math.Max(pw*v.v/maxV, 2) // a zero stays visible as a sliver
			fmt.Fprintf(&b, `<rect class="mark" data-series="%s" data-key="%s" data-value="%s" x="%s" y="%s" width="%s" height="%s" rx="2" fill="%s"><title>%s, %s: %s</title></rect>`,
				esc(s.key), esc(l), dataNum(v.v), svgNum(pad), svgNum(y), svgNum(w), svgNum(barH), palette(si), esc(l), esc(s.name), esc(fmtV(v.v)))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// trimLabel shortens a long axis label (the full one is in the table and
// the bar's tooltip).
func trimLabel(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
