package html

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"sort"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

//go:embed texts
var textFS embed.FS

// Static is the style sheet and other static files, served under /static/.
func Static() fs.FS {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err)
	}
	return sub
}

// Texts maps a text's key to its words in one language. Keys are dotted
// ("portal.title"); a text may hold fmt verbs filled by the template.
type Texts map[string]string

// English is the texts every page ships with: texts/en*.json, merged (a key
// in two files is a mistake, and panics).
func English() Texts {
	t := Texts{}
	names, _ := fs.Glob(textFS, "texts/en*.json")
	for _, n := range names {
		b, err := textFS.ReadFile(n)
		if err != nil {
			panic(err)
		}
		var part Texts
		if err := json.Unmarshal(b, &part); err != nil {
			panic("html: " + n + ": " + err.Error())
		}
		for k, v := range part {
			if _, dup := t[k]; dup {
				panic("html: text " + k + " is in two files")
			}
			t[k] = v
		}
	}
	return t
}

// Pages renders the templates.
type Pages struct {
	pages map[string]*template.Template
	texts Texts
}

// New parses every page with the layout and the texts. A page template
// "x.html" defines "title" and "content"; the layout frames it.
func New(texts Texts) (*Pages, error) {
	p := &Pages{pages: map[string]*template.Template{}, texts: texts}
	funcs := template.FuncMap{
		"t":        p.t,
		"date":     formatDate,
		"datetime": formatDateTime,
		"join":     strings.Join,
		"lower":    strings.ToLower,
		"json":     indentJSON,
		"add":      func(a, b int) int { return a + b },
		"percent":  percent,
	}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		base := strings.TrimPrefix(n, "templates/")
		if base == "layout.html" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("html: %s: %w", base, err)
		}
		p.pages[base] = t
	}
	return p, nil
}

// Page is what every page gets: Data is the page's own view model.
type Page struct {
	// Face is "portal" or "admin": it picks the header and navigation.
	Face string
	// Title is the text key of the page title.
	Title string
	// Nav is the current section, for aria-current.
	Nav string
	// Flash is a text shown once at the top (a key), e.g. "Saved".
	Flash string
	// Principal names who is signed in to the console (not a customer).
	Principal string
	// Role limits which console actions are offered.
	Role string
	// Refresh, when > 0, reloads the page after that many seconds (live
	// status without JavaScript).
	Refresh int
	Data    any
}

// Render writes the page name with p into w; on error nothing is written, so
// the caller can still answer with an error page.
func (ps *Pages) Render(w io.Writer, name string, p *Page) error {
	t, ok := ps.pages[name]
	if !ok {
		return fmt.Errorf("html: no page %q", name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", p); err != nil {
		return err
	}
	_, err := buf.WriteTo(w)
	return err
}

// T returns a text (for words built outside templates, e.g. sentences).
func (ps *Pages) T(key string, args ...any) string { return ps.t(key, args...) }

func (ps *Pages) t(key string, args ...any) string {
	s, ok := ps.texts[key]
	if !ok {
		return "[" + key + "]"
	}
	if len(args) > 0 {
		return fmt.Sprintf(s, args...)
	}
	return s
}

// Keys lists the text keys (for tests that every key used exists).
func (t Texts) Keys() []string {
	out := make([]string, 0, len(t))
	for k := range t {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func formatDate(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2 January 2006")
}

func formatDateTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2 January 2006, 15:04 UTC")
}

func indentJSON(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return ""
	}
	return string(b)
}

func percent(part, whole int) string {
	if whole == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f %%", 100*float64(part)/float64(whole))
}
