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
	"strconv"
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
func English() Texts { return load("en") }

// German is the preference center's texts in German (texts/de*.json); what it
// lacks (the console) falls back to English.
func German() Texts { return load("de") }

func load(lang string) Texts {
	t := Texts{}
	names, _ := fs.Glob(textFS, "texts/"+lang+"*.json")
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

// Pages renders the templates, in each language it has texts for.
type Pages struct {
	langs map[string]*langSet
	// def is the first language given: the fallback for a missing text and
	// for a reader whose languages none match.
	def string
	// order lists the languages as given.
	order []string
}

type langSet struct {
	pages map[string]*template.Template
	texts Texts
	// months and datePattern spell dates in the language.
	months      []string
	datePattern string
}

// New parses every page with the layout, once per language (each set's
// "lang" text names it; the first is the default). A page template "x.html"
// defines "content"; the layout frames it.
func New(sets ...Texts) (*Pages, error) {
	if len(sets) == 0 {
		return nil, fmt.Errorf("html: no texts")
	}
	ps := &Pages{langs: map[string]*langSet{}}
	for _, texts := range sets {
		lang := texts["lang"]
		if lang == "" || ps.langs[lang] != nil {
			return nil, fmt.Errorf("html: a set of texts without a lang, or twice the same: %q", lang)
		}
		if ps.def == "" {
			ps.def = lang
		}
		ls := &langSet{pages: map[string]*template.Template{}, texts: texts}
		ps.langs[lang] = ls
		ps.order = append(ps.order, lang)
		ls.months = strings.Split(ps.tl(lang, "date.months"), ",")
		ls.datePattern = ps.tl(lang, "date.pattern")
		if len(ls.months) != 12 {
			return nil, fmt.Errorf("html: %s: date.months must name 12 months", lang)
		}
		funcs := template.FuncMap{
			"t":        func(key string, args ...any) string { return ps.tl(lang, key, args...) },
			"date":     ls.date,
			"datetime": ls.dateTime,
			"join":     strings.Join,
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
			ls.pages[base] = t
		}
	}
	return ps, nil
}

// Negotiate picks the language for an Accept-Language header: the first of
// the reader's languages (by q, then order) that there are texts for, by its
// primary tag ("de-AT" reads German); the default when none matches.
func (ps *Pages) Negotiate(accept string) string {
	type pref struct {
		tag string
		q   float64
		i   int
	}
	var prefs []pref
	for i, part := range strings.Split(accept, ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		if tag != "" && q > 0 {
			prefs = append(prefs, pref{strings.ToLower(tag), q, i})
		}
	}
	sort.SliceStable(prefs, func(a, b int) bool { return prefs[a].q > prefs[b].q })
	for _, p := range prefs {
		primary, _, _ := strings.Cut(p.tag, "-")
		if ps.langs[primary] != nil {
			return primary
		}
	}
	return ps.def
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
	// Refresh, when > 0, reloads the page after that many seconds (live
	// status without JavaScript).
	Refresh int
	// Lang is the page's language ("" the default).
	Lang string
	Data any
}

// Render writes the page name with p into w; on error nothing is written, so
// the caller can still answer with an error page.
func (ps *Pages) Render(w io.Writer, name string, p *Page) error {
	ls := ps.langs[p.Lang]
	if ls == nil {
		ls = ps.langs[ps.def]
	}
	t, ok := ls.pages[name]
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

// T returns a text in the default language (for words built outside
// templates); TL in a given one.
func (ps *Pages) T(key string, args ...any) string { return ps.tl(ps.def, key, args...) }

// TL returns a text in language lang, falling back to the default.
func (ps *Pages) TL(lang, key string, args ...any) string { return ps.tl(lang, key, args...) }

// Date spells a day in language lang.
func (ps *Pages) Date(lang string, t time.Time) string {
	ls := ps.langs[lang]
	if ls == nil {
		ls = ps.langs[ps.def]
	}
	return ls.date(t)
}

func (ps *Pages) tl(lang, key string, args ...any) string {
	s, ok := "", false
	if ls := ps.langs[lang]; ls != nil {
		s, ok = ls.texts[key]
	}
	if !ok {
		if s, ok = ps.langs[ps.def].texts[key]; !ok {
			return "[" + key + "]"
		}
	}
	if len(args) > 0 {
		return fmt.Sprintf(s, args...)
	}
	return s
}

func (ls *langSet) date(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	t = t.UTC()
	return fmt.Sprintf(ls.datePattern, t.Day(), ls.months[t.Month()-1], t.Year())
}

func (ls *langSet) dateTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return ls.date(t) + t.UTC().Format(", 15:04 UTC")
}

func percent(part, whole int) string {
	if whole == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f %%", 100*float64(part)/float64(whole))
}
