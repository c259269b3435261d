package http_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	tlhttp "github.com/trustloop/trustloop/http"
	"github.com/trustloop/trustloop/http/html"
)

// consoleAddrs numbers the loopback addresses console browsers connect from.
var consoleAddrs atomic.Int32

// consoleBrowser is a browser signed in to the console with the test
// server's admin key. Each connects from its own loopback address (all of
// 127.0.0.0/8 is the local host): the sign-in limit counts attempts per
// client address for the whole process, and the package's tests sign in
// many times.
func consoleBrowser(t *testing.T, s *testServer) *browser {
	t.Helper()
	n := consoleAddrs.Add(1)
	local := &net.TCPAddr{IP: net.IPv4(127, 0, byte(100+n/250), byte(1+n%250))}
	dialer := &net.Dialer{LocalAddr: local, Timeout: 5 * time.Second}
	jar, _ := cookiejar.New(nil)
	b := &browser{t: t, base: s.URL, c: &http.Client{Jar: jar, Transport: &http.Transport{DialContext: dialer.DialContext}}}
	if p := b.post("/admin/signin", url.Values{"key": {adminKey}}); p.Status != http.StatusOK || p.Path != "/admin" {
		t.Fatalf("sign-in: %d at %s", p.Status, p.Path)
	}
	return b
}

// noFollow sends one request with the browser's cookies without following a
// redirect.
func (b *browser) noFollow(method, path string, form url.Values) *http.Response {
	b.t.Helper()
	c := &http.Client{Jar: b.c.Jar, Transport: b.c.Transport, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
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
		r.Header.Set("Origin", b.base)
		r.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	res, err := c.Do(r)
	if err != nil {
		b.t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}

// figure returns the chart figure with the id on a page ("" if none).
func figure(body, id string) string {
	i := strings.Index(body, `<figure class="chart" id="`+id+`">`)
	if i < 0 {
		return ""
	}
	j := strings.Index(body[i:], "</figure>")
	if j < 0 {
		return ""
	}
	return body[i : i+j]
}

var cellRE = regexp.MustCompile(`<td>([^<]*)</td>`)

// chartRow returns the cells of a chart's data-table row labelled label.
func chartRow(t *testing.T, fig, label string) []string {
	t.Helper()
	i := strings.Index(fig, `<tr><th scope="row">`+label+`</th>`)
	if i < 0 {
		t.Fatalf("no row %q in the chart's table", label)
	}
	row := fig[i:]
	row = row[:strings.Index(row, "</tr>")]
	var out []string
	for _, m := range cellRE.FindAllStringSubmatch(row, -1) {
		out = append(out, m[1])
	}
	return out
}

// cardNumber returns the big number of a dashboard card.
func cardNumber(t *testing.T, body, id string) string {
	t.Helper()
	m := regexp.MustCompile(`id="` + id + `">\s*<p>[^<]*</p>\s*<p class="big">([^<]*)</p>`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no card %s", id)
	}
	return m[1]
}

// missingText finds a text key a page shows instead of its words.
var missingText = regexp.MustCompile(`\[(dash|cust|admin|common|category|request|identifier|event|use)\.[a-z_.]+\]`)

func TestDashboard(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	ann := s.shopper(t, "u1", "ann@example.com")
	s.shopper(t, "u2", "bob@example.com")
	s.shopper(t, "u3", "cem@example.com")
	// One customer withdraws marketing.
	if r := s.api(t, "PUT", "/v1/profiles/"+ann+"/consent", obj{"purposes": obj{"marketing": false}}); r.Status != 200 {
		t.Fatalf("withdraw: %d %s", r.Status, r.Body)
	}
	// A visitor who allowed nothing browses: dropped at the door (T2).
	mustOK(t, s.post(t, "/v1/batch", batchOf(msg("track", "stranger", ""), msg("track", "stranger", ""))))
	// Two privacy requests: one filed 40 days ago (overdue by now), one today.
	s.Clock.Add(-40 * 24 * time.Hour)
	if r := s.api(t, "POST", "/v1/privacy-requests", obj{"type": "access", "identifier": "email:bob@example.com"}); r.Status != 201 {
		t.Fatalf("request: %d %s", r.Status, r.Body)
	}
	s.Clock.Add(40 * 24 * time.Hour)
	if r := s.api(t, "POST", "/v1/privacy-requests", obj{"type": "portability", "identifier": "email:ann@example.com"}); r.Status != 201 {
		t.Fatalf("request: %d %s", r.Status, r.Body)
	}
	// The pipeline writes its daily counts every 10 s and when it closes.
	s.Pipeline.Close()

	b := consoleBrowser(t, s)
	p := b.get("/admin")
	if p.Status != 200 {
		t.Fatalf("dashboard: %d %s", p.Status, p.Body)
	}
	if m := missingText.FindString(p.Body); m != "" {
		t.Errorf("the dashboard shows a missing text: %s", m)
	}
	if !strings.Contains(p.Body, `aria-current="page">Trust dashboard`) {
		t.Error("the navigation does not mark the dashboard as current")
	}
	for id, caption := range map[string]string{
		"chart-consent":     "Consent rate per purpose, last 30 days (%)",
		"chart-withdrawals": "Withdrawals of consent per day, last 30 days",
		"chart-events":      "Events collected and dropped for lack of consent, per day",
		"chart-requests":    "Privacy requests by status",
		"chart-deadlines":   "Privacy request deadlines",
	} {
		fig := figure(p.Body, id)
		if !strings.Contains(fig, "<figcaption>"+caption+"</figcaption><svg") || !strings.Contains(fig, `role="img"`) ||
			!strings.Contains(fig, `<th scope="col">`) {
			t.Errorf("chart %s: no svg with the caption %q and a data table: %.300s", id, caption, fig)
		}
	}
	today := s.Clock.Now().UTC().Format("2 Jan")
	// Withdrawals: one, today.
	if got := chartRow(t, figure(p.Body, "chart-withdrawals"), today); len(got) != 1 || got[0] != "1" {
		t.Errorf("withdrawals today = %v, want [1]", got)
	}
	if n := cardNumber(t, p.Body, "card-withdrawals"); n != "1" {
		t.Errorf("withdrawals card = %s", n)
	}
	// Consent rates today: three gave marketing, one withdrew it (3 of 4);
	// sharing was never chosen, so it has no rate ("–", no line). Series: analytics, personalization,
	// marketing, sharing (the catalog's optional purposes, in its order).
	if got := chartRow(t, figure(p.Body, "chart-consent"), today); fmt.Sprint(got) != "[100 % 100 % 75 % –]" {
		t.Errorf("consent rates today = %v", got)
	}
	if !strings.Contains(p.Body, "carry the last known rate forward") {
		t.Error("the consent chart does not say how days without choices are drawn")
	}
	if n := cardNumber(t, p.Body, "card-rate-marketing"); n != "75 %" {
		t.Errorf("marketing opt-in card = %s", n)
	}
	// Events: the shoppers' are collected, the stranger's two dropped.
	ev := chartRow(t, figure(p.Body, "chart-events"), today)
	if collected, _ := strconv.Atoi(ev[0]); len(ev) != 2 || collected < 6 || ev[1] != "2" {
		t.Errorf("events today = %v, want ≥ 6 collected and 2 dropped", ev)
	}
	if n := cardNumber(t, p.Body, "card-dropped"); n != "2" {
		t.Errorf("dropped card = %s", n)
	}
	// Requests: two open, one of them overdue.
	if n := cardNumber(t, p.Body, "card-requests"); n != "2" || !strings.Contains(p.Body, `<span class="badge bad">1 overdue</span>`) {
		t.Errorf("requests card = %s", n)
	}
	dl := figure(p.Body, "chart-deadlines")
	for label, want := range map[string]string{"Open, overdue": "1", "Open, due within 7 days": "0", "Open, due later": "1", "Closed": "0"} {
		if got := chartRow(t, dl, label); len(got) != 1 || got[0] != want {
			t.Errorf("deadlines %q = %v, want %s", label, got, want)
		}
	}
	if got := chartRow(t, figure(p.Body, "chart-requests"), "verified"); len(got) != 1 || got[0] != "2" {
		t.Errorf("verified requests = %v", got)
	}
	// The audit log's latest checkpoint, signed.
	if !regexp.MustCompile(`The checkpoint covers \d+ entries`).MatchString(p.Body) ||
		!regexp.MustCompile(`(?s)<pre id="checkpoint-note">go.sum database tree\n\d+\n.*trustloop.audit/ws-`).MatchString(p.Body) {
		t.Errorf("no checkpoint on the dashboard")
	}
	// Nothing of any customer is on it. The signed checkpoint is left out of
	// the search: its hash and signature are base64, in which a short id like
	// "u1" turns up by chance (5 runs in 60 failed on it before).
	page := regexp.MustCompile(`(?s)<pre id="checkpoint-note">.*?</pre>`).ReplaceAllString(p.Body, "")
	for _, pii := range []string{"ann@example.com", "bob@example.com", "u1", ann} {
		if strings.Contains(page, pii) {
			t.Errorf("the dashboard shows %q", pii)
		}
	}

	// Verify now: a real verification of the log, OK.
	v := b.post("/admin/audit/verify", url.Values{})
	if v.Status != 200 || !strings.Contains(v.Body, `id="verify-result" role="status"`) ||
		!strings.Contains(v.Body, "OK: the audit log verifies.") ||
		!regexp.MustCompile(`[1-9]\d* entries checked against the signed tree of [1-9]\d* entries`).MatchString(v.Body) {
		t.Fatalf("verify now: %d %s", v.Status, v.Body)
	}
	// A form post from another site is refused.
	if x := b.do("POST", "/admin/audit/verify", url.Values{}, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}); x.Status != http.StatusForbidden {
		t.Errorf("cross-site verify: %d", x.Status)
	}
}

func TestDashboardSignedOut(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	b := s.browser(t)
	res := b.noFollow("GET", "/admin", nil)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/admin/signin" {
		t.Fatalf("GET /admin signed out: %d → %s", res.StatusCode, res.Header.Get("Location"))
	}
	// A post without a session is refused, not redirected.
	if p := b.post("/admin/audit/verify", url.Values{}); p.Status != http.StatusUnauthorized {
		t.Fatalf("verify signed out: %d", p.Status)
	}
	// A forged cookie is no session.
	u, _ := url.Parse(s.URL + "/admin")
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: "tl_admin", Value: "eyJrIjoiYWRtaW4ifQ.AAAA", Path: "/admin"}})
	if res := b.noFollow("GET", "/admin", nil); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("forged cookie: %d", res.StatusCode)
	}
}

// A server that keeps no daily counts shows the rest and says so.
func TestDashboardWithoutCounts(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	s.shopper(t, "u1", "ann@example.com")
	pages, err := html.New(html.English())
	if err != nil {
		t.Fatal(err)
	}
	srv := &tlhttp.Server{Store: s.Store, Profiles: s.Profiles, Consent: s.Consent, Audit: s.Audit, Privacy: s.Privacy,
		Metrics: s.Metrics, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Pages: pages, WebKeys: s.Keyring,
		Operators: s.Store, Now: s.Clock.Now}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	other := &testServer{URL: hs.URL}
	p := consoleBrowser(t, other).get("/admin")
	if p.Status != 200 || !strings.Contains(p.Body, `id="no-counts"`) || figure(p.Body, "chart-consent") != "" ||
		figure(p.Body, "chart-deadlines") == "" || !strings.Contains(p.Body, `id="checkpoint-note"`) {
		t.Fatalf("dashboard without counts: %d %s", p.Status, p.Body)
	}
}

// The daily counts the dashboard charts can come from any writer of the
// store: seeded directly, they show on their days.
func TestDashboardSeededCounts(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	now := s.Clock.Now()
	yesterday := trustloop.UTCDay(now).AddDate(0, 0, -1)
	old := trustloop.UTCDay(now).AddDate(0, 0, -45) // before the window: not charted
	if err := s.Store.AddDailyCounts(context.Background(), []trustloop.DailyCount{
		{WorkspaceID: s.WS.ID, Day: yesterday, Name: trustloop.CountEventsCollected, N: 1200},
		{WorkspaceID: s.WS.ID, Day: yesterday, Name: trustloop.CountEventsDropped, N: 34},
		{WorkspaceID: s.WS.ID, Day: old, Name: trustloop.CountEventsCollected, N: 99999},
	}); err != nil {
		t.Fatal(err)
	}
	p := consoleBrowser(t, s).get("/admin")
	if got := chartRow(t, figure(p.Body, "chart-events"), yesterday.Format("2 Jan")); fmt.Sprint(got) != "[1200 34]" {
		t.Errorf("events yesterday = %v", got)
	}
	if n := cardNumber(t, p.Body, "card-events"); n != "1200" {
		t.Errorf("events card = %s (a day before the window counted?)", n)
	}
}

// The node that took the events shows them at once, before its counts are
// flushed to the store (every 10 s).
func TestDashboardCurrentBeforeFlush(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	// No consent under opt_in: both dropped, nothing flushed yet.
	mustOK(t, s.post(t, "/v1/batch", batchOf(msg("track", "nobody", ""), msg("page", "nobody", ""))))
	b := consoleBrowser(t, s)
	p := b.get("/admin")
	if n := cardNumber(t, p.Body, "card-dropped"); n != "2" {
		t.Fatalf("dropped card = %s before the flush, want 2", n)
	}
}
