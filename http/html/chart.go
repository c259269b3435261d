package html

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"
)

// Charts are drawn on the server as inline SVG: they render without
// JavaScript and without a chart library, and each carries its numbers as a
// table for screen readers and for copying.

// Series is one line (or one bar group member) of a chart.
type Series struct {
	Name   string
	Values []float64
	// Class picks its colour from the style sheet (s1…s6).
	Class string
}

// Chart is a chart over labelled points (days, statuses).
type Chart struct {
	ID     string
	Title  string
	Labels []string
	Series []Series
	// Max fixes the top of the scale (e.g. 100 for percentages); 0 scales
	// to the data.
	Max float64
	// Unit is appended to values in the table (e.g. " %").
	Unit string
	// Bars draws grouped bars instead of lines.
	Bars bool
}

const (
	chartW, chartH = 640, 220
	padL, padR     = 44, 12
	padT, padB     = 12, 28
)

// SVG renders the chart with a legend and a data table.
func (c *Chart) SVG() template.HTML {
	var b strings.Builder
	max := c.Max
	if max == 0 {
		for _, s := range c.Series {
			for _, v := range s.Values {
				if !math.IsNaN(v) {
					max = math.Max(max, v)
				}
			}
		}
		max = niceCeil(max)
	}
	n := len(c.Labels)
	id := html.EscapeString(c.ID)
	fmt.Fprintf(&b, `<figure class="chart" id="%s"><figcaption>%s</figcaption>`, id, html.EscapeString(c.Title))
	fmt.Fprintf(&b, `<svg viewBox="0 0 %d %d" role="img" aria-labelledby="%s-t" preserveAspectRatio="xMidYMid meet"><title id="%s-t">%s</title>`,
		chartW, chartH, id, id, html.EscapeString(c.Title))
	plotW, plotH := float64(chartW-padL-padR), float64(chartH-padT-padB)
	y := func(v float64) float64 {
		if max == 0 {
			return float64(padT) + plotH
		}
		return float64(padT) + plotH*(1-v/max)
	}
	// Grid and scale.
	for i := 0; i <= 4; i++ {
		v := max * float64(i) / 4
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>`, padL, chartW-padR, y(v), y(v))
		fmt.Fprintf(&b, `<text class="axis" x="%d" y="%.1f" text-anchor="end">%s</text>`, padL-6, y(v)+4, short(v))
	}
	x := func(i int) float64 {
		if n <= 1 {
			return float64(padL) + plotW/2
		}
		return float64(padL) + plotW*float64(i)/float64(n-1)
	}
	step := 1
	if n > 8 {
		step = (n + 7) / 8
	}
	if c.Bars {
		group := plotW / float64(max1(n))
		bw := group * 0.8 / float64(max1(len(c.Series)))
		for i := range n {
			gx := float64(padL) + group*float64(i) + group*0.1
			for j, s := range c.Series {
				v := at(s.Values, i)
				if math.IsNaN(v) {
					v = 0
				}
				fmt.Fprintf(&b, `<rect class="bar %s" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s, %s: %s</title></rect>`,
					html.EscapeString(s.Class), gx+bw*float64(j), y(v), math.Max(bw-1, 1), y(0)-y(v),
					html.EscapeString(s.Name), html.EscapeString(c.Labels[i]), short(v))
			}
			if i%step == 0 {
				fmt.Fprintf(&b, `<text class="axis" x="%.1f" y="%d" text-anchor="middle">%s</text>`, gx+group*0.4, chartH-8, html.EscapeString(c.Labels[i]))
			}
		}
	} else {
		for _, s := range c.Series {
			// A NaN value is "no data": the line breaks there.
			var pts []string
			line := func() {
				if len(pts) > 0 {
					fmt.Fprintf(&b, `<polyline class="line %s" points="%s"/>`, html.EscapeString(s.Class), strings.Join(pts, " "))
				}
				pts = pts[:0]
			}
			for i := range n {
				if v := at(s.Values, i); math.IsNaN(v) {
					line()
				} else {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(v)))
				}
			}
			line()
			for i := range n {
				if v := at(s.Values, i); !math.IsNaN(v) {
					fmt.Fprintf(&b, `<circle class="dot %s" cx="%.1f" cy="%.1f" r="2.5"><title>%s, %s: %s</title></circle>`,
						html.EscapeString(s.Class), x(i), y(v), html.EscapeString(s.Name), html.EscapeString(c.Labels[i]), short(v))
				}
			}
		}
		for i := 0; i < n; i += step {
			fmt.Fprintf(&b, `<text class="axis" x="%.1f" y="%d" text-anchor="middle">%s</text>`, x(i), chartH-8, html.EscapeString(c.Labels[i]))
		}
	}
	b.WriteString(`</svg><ul class="legend">`)
	for _, s := range c.Series {
		fmt.Fprintf(&b, `<li><span class="swatch %s" aria-hidden="true"></span>%s</li>`, html.EscapeString(s.Class), html.EscapeString(s.Name))
	}
	b.WriteString(`</ul><details><summary>Data</summary><table><thead><tr><th scope="col"></th>`)
	for _, s := range c.Series {
		fmt.Fprintf(&b, `<th scope="col">%s</th>`, html.EscapeString(s.Name))
	}
	b.WriteString(`</tr></thead><tbody>`)
	for i, l := range c.Labels {
		fmt.Fprintf(&b, `<tr><th scope="row">%s</th>`, html.EscapeString(l))
		for _, s := range c.Series {
			unit := c.Unit
			if math.IsNaN(at(s.Values, i)) {
				unit = ""
			}
			fmt.Fprintf(&b, `<td>%s%s</td>`, short(at(s.Values, i)), html.EscapeString(unit))
		}
		b.WriteString(`</tr>`)
	}
	b.WriteString(`</tbody></table></details></figure>`)
	return template.HTML(b.String())
}

func at(vs []float64, i int) float64 {
	if i < len(vs) {
		return vs[i]
	}
	return 0
}

func max1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten, so the scale reads well.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func short(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}
