package http_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// browser is a cookie-keeping client of a test server, like a person's browser.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func (s *testServer) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: s.URL, c: &http.Client{Jar: jar}}
}

// page is a fetched page: the status after redirects, the final path, the body.
type page struct {
	Status int
	Path   string
	Body   string
	Header http.Header
}

func (b *browser) do(method, path string, form url.Values, headers map[string]string) *page {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		// What a browser sends with a same-origin form post.
		r.Header.Set("Origin", b.base)
		r.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	res, err := b.c.Do(r)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return &page{Status: res.StatusCode, Path: res.Request.URL.Path, Body: string(out), Header: res.Header}
}

func (b *browser) get(path string) *page { return b.do(http.MethodGet, path, nil, nil) }
func (b *browser) post(path string, form url.Values) *page {
	return b.do(http.MethodPost, path, form, nil)
}

// shopper sends a customer's identify and views, with every optional purpose
// allowed, and returns their profile id.
func (s *testServer) shopper(t *testing.T, user, email string) string {
	t.Helper()
	consent := obj{"consent": obj{"categoryPreferences": obj{"analytics": true, "personalization": true, "marketing": true}}}
	id := obj{"type": "identify", "userId": user, "traits": obj{"email": email, "name": "N " + user}, "context": consent}
	view := obj{"type": "track", "userId": user, "event": "Product Viewed", "properties": obj{"product_id": "p-" + user, "name": "Lamp " + user}, "context": consent}
	prefs := obj{"type": "track", "userId": user, "event": "Segment Consent Preference Updated", "context": consent}
	mustOK(t, s.post(t, "/v1/batch", batchOf(prefs, id, view)))
	r := s.api(t, "GET", "/v1/profiles/lookup?purpose=essential&identifier="+url.QueryEscape("email:"+email), nil)
	if r.Status != 200 {
		t.Fatalf("lookup: %d %s", r.Status, r.Body)
	}
	var p struct {
		ProfileID string `json:"profile_id"`
	}
	json.Unmarshal(r.Body, &p)
	return p.ProfileID
}

func (s *testServer) portalLink(t *testing.T, identifier string) string {
	t.Helper()
	r := s.api(t, "POST", "/v1/portal/sessions", obj{"identifier": identifier})
	if r.Status != http.StatusCreated {
		t.Fatalf("portal session: %d %s", r.Status, r.Body)
	}
	var v struct {
		URL       string    `json:"url"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	json.Unmarshal(r.Body, &v)
	if !strings.HasPrefix(v.URL, "/portal/s/") || !v.ExpiresAt.After(s.Clock.Now()) {
		t.Fatalf("portal session = %s", r.Body)
	}
	return v.URL
}

func TestPortalSessionAPI(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	s.shopper(t, "u1", "ann@example.com")
	for _, c := range []struct {
		name   string
		body   any
		key    string
		status int
		code   string
	}{
		{"no identifier", obj{}, adminKey, 400, "invalid"},
		{"bad identifier", obj{"identifier": "nonsense"}, adminKey, 400, "invalid"},
		{"unknown customer", obj{"identifier": "email:nobody@example.com"}, adminKey, 404, "not_found"},
		{"no key", obj{"identifier": "email:ann@example.com"}, "", 401, "unauthorized"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := s.api(t, "POST", "/v1/portal/sessions", c.body, c.key)
			if r.Status != c.status || r.apiError(t).Error.Code != c.code {
				t.Fatalf("got %d %s, want %d %s", r.Status, r.Body, c.status, c.code)
			}
		})
	}
}

func TestPortalChoices(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	ann := s.shopper(t, "u1", "ann@example.com")
	s.shopper(t, "u2", "bob@example.com")
	b := s.browser(t)

	p := b.get(s.portalLink(t, "email:ann@example.com"))
	if p.Status != 200 || p.Path != "/portal" {
		t.Fatalf("opening the link: %d at %s: %s", p.Status, p.Path, p.Body)
	}
	for _, want := range []string{"Marketing", "ann@example.com", "Lamp u1", `aria-checked="true"`} {
		if !strings.Contains(p.Body, want) {
			t.Errorf("portal page lacks %q", want)
		}
	}
	if strings.Contains(p.Body, "bob@example.com") {
		t.Error("the portal shows another customer's email")
	}
	if p.Header.Get("Cache-Control") != "no-store" || !strings.Contains(p.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("headers = %v", p.Header)
	}

	// A cross-site form post changes nothing.
	cross := b.do("POST", "/portal/consent", url.Values{"purpose": {"marketing"}, "allow": {"no"}},
		map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"})
	if cross.Status != http.StatusForbidden {
		t.Fatalf("cross-site post: %d", cross.Status)
	}
	consentOf := func() map[string]struct {
		State   string `json:"state"`
		Allowed bool   `json:"allowed"`
		Method  string `json:"method"`
	} {
		r := s.api(t, "GET", "/v1/profiles/"+ann+"/consent", nil)
		var v struct {
			Purposes map[string]struct {
				State   string `json:"state"`
				Allowed bool   `json:"allowed"`
				Method  string `json:"method"`
			} `json:"purposes"`
		}
		json.Unmarshal(r.Body, &v)
		return v.Purposes
	}
	if !consentOf()["marketing"].Allowed {
		t.Fatal("marketing not allowed before the switch")
	}
	// Bad input: a clear error, nothing changed.
	for _, f := range []url.Values{
		{"purpose": {"nonsense"}, "allow": {"no"}},
		{"purpose": {"essential"}, "allow": {"no"}},
		{"purpose": {"marketing"}, "allow": {"maybe"}},
		{"purpose": {"market\x00ing"}, "allow": {"no"}},
		{"purpose": {"marketing\xff"}, "allow": {"no"}},
	} {
		if r := b.post("/portal/consent", f); r.Status != 400 || !strings.Contains(r.Body, `class="error"`) {
			t.Errorf("post %v: %d", f, r.Status)
		}
	}
	if !consentOf()["marketing"].Allowed {
		t.Fatal("a refused form changed consent")
	}

	// One click withdraws.
	r := b.post("/portal/consent", url.Values{"purpose": {"marketing"}, "allow": {"no"}})
	if r.Status != 200 || !strings.Contains(r.Body, "Your choice was saved") {
		t.Fatalf("switch off: %d %s", r.Status, r.Body)
	}
	got := consentOf()["marketing"]
	if got.Allowed || got.State != "withdrawn" || got.Method != "preference_center" {
		t.Fatalf("after switching off: %+v", got)
	}
	h := s.api(t, "GET", "/v1/profiles/"+ann+"/consent/history", nil)
	if !strings.Contains(string(h.Body), `"method":"preference_center"`) {
		t.Fatalf("history lacks the record: %s", h.Body)
	}
	// ... and one click gives it back; the receipt is listed and readable.
	r = b.post("/portal/consent", url.Values{"purpose": {"marketing"}, "allow": {"yes"}})
	if !consentOf()["marketing"].Allowed {
		t.Fatal("switching on did not take")
	}
	m := regexp.MustCompile(`/portal/receipts/([A-Za-z0-9_-]+)`).FindStringSubmatch(r.Body)
	if m == nil {
		t.Fatalf("no receipt link on %s", r.Body)
	}
	if rc := b.get(m[0]); rc.Status != 200 || !strings.Contains(rc.Body, "marketing") {
		t.Fatalf("receipt: %d", rc.Status)
	}
	// Refuse all: every optional purpose off in one click.
	b.post("/portal/consent", url.Values{"all": {"no"}})
	for id, c := range consentOf() {
		if id != "essential" && c.Allowed {
			t.Errorf("%s still allowed after refusing all", id)
		}
	}

	for _, bad := range []string{"/portal/receipts/%00", "/portal/receipts/rcpt_x", "/portal/requests/%00", "/portal/requests/prq_x/export?format=json"} {
		if r := b.get(bad); r.Status != 404 {
			t.Errorf("GET %s: %d", bad, r.Status)
		}
	}
	// Another customer's browser cannot see this one's receipt.
	other := s.browser(t)
	other.get(s.portalLink(t, "email:bob@example.com"))
	if rc := other.get(m[0]); rc.Status != 404 {
		t.Fatalf("bob reading ann's receipt: %d", rc.Status)
	}
}

func TestPortalLinks(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	s.shopper(t, "u1", "ann@example.com")
	link := s.portalLink(t, "email:ann@example.com")
	b := s.browser(t)
	// No session: refused.
	if p := b.get("/portal"); p.Status != 401 {
		t.Fatalf("no session: %d", p.Status)
	}
	// A tampered link: refused.
	bad := link[:len(link)-3] + "AAA"
	if p := b.get(bad); p.Status != 401 || !strings.Contains(p.Body, "not valid") {
		t.Fatalf("tampered link: %d", p.Status)
	}
	// An expired link: refused.
	s.Clock.Add(16 * time.Minute)
	if p := b.get(link); p.Status != 401 {
		t.Fatalf("expired link: %d", p.Status)
	}
}

func TestPortalDownloadAndErase(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Privacy.Run(ctx)
	ann := s.shopper(t, "u1", "ann@example.com")
	s.shopper(t, "u2", "bob@example.com")
	// A read through the API is told to the customer in plain words.
	s.api(t, "GET", "/v1/profiles/"+ann+"?purpose=marketing", nil)

	b := s.browser(t)
	home := b.get(s.portalLink(t, "email:ann@example.com"))
	if !strings.Contains(home.Body, "used your") {
		t.Errorf("no data-use sentence on the portal: %s", home.Body)
	}
	p := b.post("/portal/download", url.Values{})
	if p.Status != 200 || !strings.HasPrefix(p.Path, "/portal/requests/") {
		t.Fatalf("download: %d at %s", p.Status, p.Path)
	}
	reqPath := p.Path
	for i := 0; i < 100 && !strings.Contains(p.Body, "download-json"); i++ {
		time.Sleep(50 * time.Millisecond)
		p = b.get(reqPath)
	}
	exp := b.get(reqPath + "/export?format=json")
	if exp.Status != 200 || !strings.Contains(exp.Body, "ann@example.com") || strings.Contains(exp.Body, "bob@example.com") ||
		!strings.Contains(exp.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("export: %d %v %.300s", exp.Status, exp.Header, exp.Body)
	}
	if h := b.get(reqPath + "/export?format=html"); h.Status != 200 || !strings.Contains(h.Body, "ann@example.com") {
		t.Fatalf("html export: %d", h.Status)
	}
	// Bob's browser cannot open Ann's request or its export.
	bob := s.browser(t)
	bob.get(s.portalLink(t, "email:bob@example.com"))
	if r := bob.get(reqPath + "/export?format=json"); r.Status != 404 || strings.Contains(r.Body, "ann@example.com") {
		t.Fatalf("bob got ann's export: %d", r.Status)
	}

	// Erasure needs the confirmation; without it nothing happens.
	if r := b.post("/portal/erase", url.Values{}); r.Status != 400 {
		t.Fatalf("unconfirmed erase: %d", r.Status)
	}
	if r := s.api(t, "GET", "/v1/profiles/"+ann+"?purpose=essential", nil); r.Status != 200 {
		t.Fatalf("profile gone after an unconfirmed erase: %d", r.Status)
	}
	p = b.post("/portal/erase", url.Values{"confirm": {"yes"}})
	for i := 0; i < 100 && !strings.Contains(p.Body, `id="erased"`); i++ {
		time.Sleep(50 * time.Millisecond)
		p = b.get(p.Path)
	}
	if !strings.Contains(p.Body, `id="erased"`) || !strings.Contains(p.Body, "erasure-receipt") {
		t.Fatalf("erasure did not complete: %s", p.Body)
	}
	if r := s.api(t, "GET", "/v1/profiles/lookup?purpose=essential&identifier=email:ann@example.com", nil); r.Status != 404 {
		t.Fatalf("ann still found after erasure: %d", r.Status)
	}
	if home := b.get("/portal"); home.Status != 200 || !strings.Contains(home.Body, "We hold no personal data") {
		t.Fatalf("portal after erasure: %d", home.Status)
	}
	// Bob is untouched.
	if r := s.api(t, "GET", "/v1/profiles/lookup?purpose=essential&identifier=email:bob@example.com", nil); r.Status != 200 {
		t.Fatalf("bob gone: %d", r.Status)
	}
}

func TestPortalGPC(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	ann := s.shopper(t, "u1", "ann@example.com")
	b := s.browser(t)
	b.get(s.portalLink(t, "email:ann@example.com"))
	p := b.do("GET", "/portal", nil, map[string]string{"Sec-GPC": "1"})
	if !strings.Contains(p.Body, "Opt-out preference signal honored") {
		t.Fatalf("no GPC notice: %s", p.Body)
	}
	r := s.api(t, "GET", "/v1/profiles/"+ann+"/consent", nil)
	if !strings.Contains(string(r.Body), `"method":"gpc"`) {
		t.Fatalf("GPC not recorded: %s", r.Body)
	}
	gpc := map[string]string{"Sec-GPC": "1", "Origin": s.URL, "Sec-Fetch-Site": "same-origin",
		"Content-Type": "application/x-www-form-urlencoded"}
	history := func() string { return string(s.api(t, "GET", "/v1/profiles/"+ann+"/consent/history", nil).Body) }
	before := history()
	// While the browser sends the signal, its purposes are not switched on.
	if p := b.do("POST", "/portal/consent", url.Values{"purpose": {"marketing"}, "allow": {"yes"}}, gpc); p.Status != 400 ||
		!strings.Contains(p.Body, "Global Privacy Control") {
		t.Fatalf("switching marketing on under GPC: %d", p.Status)
	}
	if history() != before {
		t.Fatal("a refused switch recorded something")
	}
	// Allow all under the signal: what it does not cover goes on (analytics,
	// switched off first), what it covers stays off.
	b.post("/portal/consent", url.Values{"purpose": {"analytics"}, "allow": {"no"}})
	if p := b.do("POST", "/portal/consent", url.Values{"all": {"yes"}}, gpc); p.Status != 200 || p.Path != "/portal" {
		t.Fatalf("allow all under GPC: %d at %s", p.Status, p.Path)
	}
	c := string(s.api(t, "GET", "/v1/profiles/"+ann+"/consent", nil).Body)
	if !strings.Contains(c, `"analytics":{"state":"given","allowed":true`) ||
		!strings.Contains(c, `"marketing":{"state":"withdrawn","allowed":false`) || !strings.Contains(c, `"sharing":{"state":"refused","allowed":false`) {
		t.Fatalf("allow all under GPC: %s", c)
	}
	// Without the signal the customer may switch it back on, and the page
	// no longer disables the switch.
	if p := b.post("/portal/consent", url.Values{"purpose": {"marketing"}, "allow": {"yes"}}); p.Status != 200 ||
		strings.Contains(p.Body, `data-purpose="marketing" disabled`) {
		t.Fatalf("switching marketing on without GPC: %d", p.Status)
	}
}

// A choice that changes nothing records nothing; a choice made here is on
// the audit log as the customer's own, under the notice (catalog) version.
func TestPortalRecordsOnlyChanges(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	ann := s.shopper(t, "u1", "ann@example.com")
	b := s.browser(t)
	b.get(s.portalLink(t, "email:ann@example.com"))
	saved := func(f url.Values) {
		t.Helper()
		if p := b.post("/portal/consent", f); p.Status != 200 || p.Path != "/portal" {
			t.Fatalf("post %v: %d at %s", f, p.Status, p.Path)
		}
	}
	saved(url.Values{"all": {"no"}})
	history := func() string { return string(s.api(t, "GET", "/v1/profiles/"+ann+"/consent/history", nil).Body) }
	once := history()
	saved(url.Values{"all": {"no"}})
	saved(url.Values{"purpose": {"analytics"}, "allow": {"no"}})
	if history() != once {
		t.Fatal("repeating a choice recorded it again")
	}
	if !strings.Contains(once, `"state":"withdrawn"`) || !strings.Contains(once, `"notice_version":"catalog-`) {
		t.Fatalf("history: %s", once)
	}
	r := s.api(t, "GET", "/v1/audit/entries?start=0&end=1000", nil)
	if !strings.Contains(string(r.Body), `"kind":"subject","id":"portal"`) || !strings.Contains(string(r.Body), `"kind":"portal_link"`) {
		t.Fatalf("audit entries lack the portal's actor or the link: %.2000s", r.Body)
	}
}

// A reader whose browser asks for German gets the preference center in
// German, purposes included; the API's messages on an error page stay
// English, the page around them German.
func TestPortalGerman(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	s.shopper(t, "u1", "ann@example.com")
	b := s.browser(t)
	b.get(s.portalLink(t, "email:ann@example.com"))
	de := map[string]string{"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}
	p := b.do("GET", "/portal", nil, de)
	month := strings.Split("Januar,Februar,März,April,Mai,Juni,Juli,August,September,Oktober,November,Dezember", ",")[s.Clock.Now().UTC().Month()-1]
	for _, want := range []string{`<html lang="de">`, "Ihre Datenschutz-Einstellungen", "Personalisierung", "Was wir über Sie wissen",
		month, "An – ausschalten"} {
		if !strings.Contains(p.Body, want) {
			t.Errorf("German portal lacks %q", want)
		}
	}
	if strings.Contains(p.Body, "Your privacy settings") {
		t.Error("the German portal has English headings")
	}
	if e := b.do("GET", "/portal/receipts/rcpt_x", nil, de); e.Status != 404 || !strings.Contains(e.Body, "Das hat nicht geklappt") {
		t.Errorf("German error page: %d", e.Status)
	}
	if en := b.get("/portal"); !strings.Contains(en.Body, "Your privacy settings") {
		t.Error("without Accept-Language the portal is not English")
	}
}
