package html

import (
	"bytes"
	"io/fs"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestPagesParse(t *testing.T) {
	p, err := New(English(), German())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := p.Render(&buf, "error.html", &Page{Face: "portal", Title: "common.error.title",
		Data: map[string]string{"Message": "<b>m</b>", "Hint": "h", "Code": "invalid"}}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "<b>m</b>") || !strings.Contains(buf.String(), "&lt;b&gt;m&lt;/b&gt;") {
		t.Error("a message is not escaped")
	}
	if err := p.Render(&buf, "nope.html", &Page{}); err == nil {
		t.Error("an unknown page rendered")
	}
}

// Every text a template names exists, so no page shows a [key].
func TestTextsComplete(t *testing.T) {
	texts := English()
	re := regexp.MustCompile(`\{\{t "([a-z0-9_.]+)"`)
	names, _ := fs.Glob(templateFS, "templates/*.html")
	for _, n := range names {
		b, _ := templateFS.ReadFile(n)
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			if _, ok := texts[m[1]]; !ok {
				t.Errorf("%s: text %q is missing from texts/", n, m[1])
			}
		}
	}
}

func TestChart(t *testing.T) {
	c := &Chart{ID: "c", Title: `Rate <"x">`, Labels: []string{"a", "b", "c", "d"},
		Series: []Series{{Name: "p", Values: []float64{math.NaN(), 50, math.NaN(), 75}, Class: "s1"}}, Max: 100, Unit: " %"}
	svg := string(c.SVG())
	if n := strings.Count(svg, "<polyline"); n != 2 {
		t.Errorf("a line with two gaps drew %d pieces, want 2", n)
	}
	if strings.Count(svg, "<circle") != 2 {
		t.Error("points without data were drawn")
	}
	if strings.Contains(svg, `<"x">`) || strings.Contains(svg, "NaN") {
		t.Errorf("unescaped title or NaN in %s", svg)
	}
	if !strings.Contains(svg, "<td>50 %</td>") || !strings.Contains(svg, "<td>–</td>") {
		t.Error("the data table lacks the values")
	}
	bars := string((&Chart{ID: "b", Title: "B", Labels: []string{"x", "y"}, Bars: true,
		Series: []Series{{Name: "n", Values: []float64{3, 7}, Class: "s2"}}}).SVG())
	if strings.Count(bars, "<rect") != 2 || !strings.Contains(bars, ">10<") {
		t.Errorf("bars: %s", bars)
	}
}

func TestNiceCeil(t *testing.T) {
	for in, want := range map[float64]float64{0: 1, 0.3: 0.5, 1: 1, 7: 10, 12: 20, 430: 500, 1001: 2000} {
		if got := niceCeil(in); math.Abs(got-want) > 1e-9 {
			t.Errorf("niceCeil(%v) = %v, want %v", in, got, want)
		}
	}
}

// The customer's pages are whole in every language: each text their
// templates name exists in German too, and German has nothing English lacks.
func TestGermanComplete(t *testing.T) {
	en, de := English(), German()
	for k := range de {
		if _, ok := en[k]; !ok {
			t.Errorf("German text %q has no English original", k)
		}
	}
	re := regexp.MustCompile(`\{\{t "([a-z0-9_.]+)"|\(printf "([a-z_.]+)%s"`)
	for _, n := range []string{"templates/layout.html", "templates/error.html", "templates/portal.html",
		"templates/portal_erase.html", "templates/portal_request.html", "templates/portal_receipt.html"} {
		b, _ := templateFS.ReadFile(n)
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			if m[1] != "" && !strings.HasPrefix(m[1], "admin.") {
				if _, ok := de[m[1]]; !ok {
					t.Errorf("%s: text %q is not in German", n, m[1])
				}
			}
			if m[2] != "" { // a family of keys, e.g. request.status.
				for k := range en {
					if strings.HasPrefix(k, m[2]) {
						if _, ok := de[k]; !ok {
							t.Errorf("%s: text %q is not in German", n, k)
						}
					}
				}
			}
		}
	}
}

func TestNegotiate(t *testing.T) {
	p, err := New(English(), German())
	if err != nil {
		t.Fatal(err)
	}
	for accept, want := range map[string]string{
		"":                        "en",
		"de":                      "de",
		"de-AT,de;q=0.9,en;q=0.8": "de",
		"fr-FR,fr;q=0.9,de;q=0.8": "de",
		"en-GB,en;q=0.9,de;q=0.8": "en",
		"de;q=0.1,en;q=0.5":       "en",
		"de;q=0, fr":              "en",
		"  DE-ch ; q=0.7 , xx":    "de",
		"*":                       "en",
	} {
		if got := p.Negotiate(accept); got != want {
			t.Errorf("Negotiate(%q) = %s, want %s", accept, got, want)
		}
	}
	if got := p.Date("de", time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC)); got != "3. März 2026" {
		t.Errorf("German date = %q", got)
	}
	if got := p.Date("en", time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC)); got != "3 March 2026" {
		t.Errorf("English date = %q", got)
	}
}
