package http_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/trustloop/trustloop"
	tlhttp "github.com/trustloop/trustloop/http"
	tlhtml "github.com/trustloop/trustloop/http/html"
	"github.com/trustloop/trustloop/projection"
	"github.com/trustloop/trustloop/recommend"
)

type dataUse struct {
	Actor      trustloop.AuditActor `json:"actor"`
	Purpose    string               `json:"purpose"`
	Categories []string             `json:"categories"`
	Action     string               `json:"action"`
}

// consoleUses lists the console's recorded reads of a profile's data.
func consoleUses(t *testing.T, s *testServer, id string) []dataUse {
	t.Helper()
	r := s.api(t, "GET", "/v1/profiles/"+id+"/data-uses", nil)
	if r.Status != 200 {
		t.Fatalf("data uses: %d %s", r.Status, r.Body)
	}
	var v struct {
		Data []dataUse `json:"data"`
	}
	json.Unmarshal(r.Body, &v)
	var out []dataUse
	for _, u := range v.Data {
		if u.Action == "GET /admin/customers/{id}" {
			out = append(out, u)
		}
	}
	return out
}

func search(b *browser, identifier, purpose string) *page {
	return b.post("/admin/customers", url.Values{"identifier": {identifier}, "purpose": {purpose}})
}

func TestCustomerSearch(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	ann := s.shopper(t, "u1", "ann@example.com")
	s.shopper(t, "u2", "bob@example.com")
	b := consoleBrowser(t, s)

	// The form offers the key's purposes only: not sharing.
	f := b.get("/admin/customers")
	if f.Status != 200 || !strings.Contains(f.Body, `<option value="marketing">`) || strings.Contains(f.Body, `value="sharing"`) ||
		!strings.Contains(f.Body, `<label for="identifier">`) {
		t.Fatalf("search form: %d %s", f.Status, f.Body)
	}
	if m := missingText.FindString(f.Body); m != "" {
		t.Errorf("the search page shows a missing text: %s", m)
	}

	// By email: the search posts, and the customer's page is addressed by
	// profile id and purpose only (no email in a URL).
	res := b.noFollow("POST", "/admin/customers", url.Values{"identifier": {"ann@example.com"}, "purpose": {"marketing"}})
	if loc := res.Header.Get("Location"); res.StatusCode != http.StatusSeeOther || loc != "/admin/customers/"+ann+"?purpose=marketing" {
		t.Fatalf("search: %d → %s", res.StatusCode, loc)
	}
	before := len(consoleUses(t, s, ann))
	p := search(b, "ann@example.com", "marketing")
	if p.Status != 200 || p.Path != "/admin/customers/"+ann {
		t.Fatalf("customer page: %d at %s", p.Status, p.Path)
	}
	if m := missingText.FindString(p.Body); m != "" {
		t.Errorf("the customer page shows a missing text: %s", m)
	}
	for _, want := range []string{
		`id="read-purpose"`, "Read for purpose: Marketing (marketing). This read was recorded",
		"ann@example.com", "Product Viewed: Lamp u1", // identifiers and the timeline marketing may see
		`<tr id="consent-marketing">`, "rcpt_", // consent state with receipts
		`id="history"`, `id="use-list"`, "a member of our staff used your", // history and uses
	} {
		if !strings.Contains(p.Body, want) {
			t.Errorf("the customer page lacks %q", want)
		}
	}
	if strings.Contains(p.Body, "bob@example.com") || strings.Contains(p.Body, "Lamp u2") {
		t.Error("the customer page shows another customer's data")
	}
	// Device and preferences data are withheld from marketing, with the reason.
	if !strings.Contains(p.Body, "purpose marketing may not use device data") {
		t.Error("no withheld category with its reason")
	}
	// The read was recorded, as the key's, under the console's route.
	uses := consoleUses(t, s, ann)
	if len(uses) != before+1 {
		t.Fatalf("console uses: %d before, %d after", before, len(uses))
	}
	u := uses[0]
	if u.Actor.Kind != trustloop.ActorAPIKey || u.Actor.ID != "key:"+keyID(t, s) || u.Purpose != "marketing" ||
		!containsAll(u.Categories, "identity", "contact", "behavior") {
		t.Errorf("recorded use = %+v", u)
	}

	// A bare user id and a typed identifier (normalized) find her too.
	for _, q := range []string{"u1", "email:ANN@Example.com ", "user_id:u1"} {
		if p := search(b, q, "essential"); p.Status != 200 || p.Path != "/admin/customers/"+ann {
			t.Errorf("search %q: %d at %s", q, p.Status, p.Path)
		}
	}
	// Read for essential: behaviour is withheld, no timeline.
	if p := b.get("/admin/customers/" + ann + "?purpose=essential"); !strings.Contains(p.Body, "purpose essential may not use behavior data") ||
		strings.Contains(p.Body, "Lamp u1") {
		t.Errorf("essential read shows behaviour: %s", p.Body)
	}

	// Unknown customer: the form again, 404, the input kept.
	nf := search(b, "nobody@example.com", "marketing")
	if nf.Status != http.StatusNotFound || !strings.Contains(nf.Body, "No customer has this identifier.") ||
		!strings.Contains(nf.Body, `value="nobody@example.com"`) || !strings.Contains(nf.Body, `role="alert"`) {
		t.Errorf("unknown customer: %d %s", nf.Status, nf.Body)
	}
	// Bad identifiers and missing input: 400 with the reason.
	for _, c := range []struct{ identifier, purpose string }{{"fax:12345", "marketing"}, {"", "marketing"}, {"ann@example.com", ""}, {"ann@example.com", "nonsense"}} {
		if p := search(b, c.identifier, c.purpose); p.Status != http.StatusBadRequest || !strings.Contains(p.Body, `id="search-error"`) {
			t.Errorf("search %q for %q: %d", c.identifier, c.purpose, p.Status)
		}
	}
	// A purpose the key may not read for: refused, and nothing recorded.
	n := len(consoleUses(t, s, ann))
	if p := search(b, "ann@example.com", "sharing"); p.Status != http.StatusForbidden || !strings.Contains(p.Body, `data-code="forbidden"`) {
		t.Errorf("search for sharing: %d", p.Status)
	}
	if p := b.get("/admin/customers/" + ann + "?purpose=sharing"); p.Status != http.StatusForbidden || strings.Contains(p.Body, "ann@example.com") {
		t.Errorf("read for sharing: %d", p.Status)
	}
	if got := len(consoleUses(t, s, ann)); got != n {
		t.Errorf("a refused read was recorded: %d → %d uses", n, got)
	}
	// A page needs its purpose; an unknown customer is not found.
	if p := b.get("/admin/customers/" + ann); p.Status != http.StatusBadRequest {
		t.Errorf("no purpose: %d", p.Status)
	}
	if p := b.get("/admin/customers/123456789?purpose=marketing"); p.Status != http.StatusNotFound {
		t.Errorf("unknown profile: %d", p.Status)
	}
	if p := b.get("/admin/customers/not-an-id?purpose=marketing"); p.Status != http.StatusBadRequest {
		t.Errorf("malformed profile id: %d", p.Status)
	}
	// Signed out: to the sign-in page.
	if res := s.browser(t).noFollow("GET", "/admin/customers/"+ann+"?purpose=marketing", nil); res.StatusCode != http.StatusSeeOther {
		t.Errorf("signed out: %d", res.StatusCode)
	}
}

// keyID is the test admin key's id.
func keyID(t *testing.T, s *testServer) string {
	t.Helper()
	keys, err := s.Store.ListAPIKeys(context.Background(), s.WS.ID)
	if err != nil || len(keys) == 0 {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Name == "admin" {
			return strconv.FormatInt(k.ID, 10)
		}
	}
	t.Fatal("no admin key")
	return ""
}

func containsAll(have []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

// A customer who withdrew a purpose shows nothing for it, and the read of
// nothing is not a use (T1, T4).
func TestCustomerWithdrawnPurpose(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	bob := s.shopper(t, "u2", "bob@example.com")
	if r := s.api(t, "PUT", "/v1/profiles/"+bob+"/consent", obj{"purposes": obj{"marketing": false}}); r.Status != 200 {
		t.Fatalf("withdraw: %d", r.Status)
	}
	b := consoleBrowser(t, s)
	p := b.get("/admin/customers/" + bob + "?purpose=marketing")
	if p.Status != 200 || !strings.Contains(p.Body, `id="not-allowed"`) || !strings.Contains(p.Body, "Nothing personal could be shown") ||
		strings.Contains(p.Body, "bob@example.com") || strings.Contains(p.Body, "Lamp u2") {
		t.Fatalf("withdrawn purpose: %d %s", p.Status, p.Body)
	}
	if uses := consoleUses(t, s, bob); len(uses) != 0 {
		t.Errorf("a read that showed nothing was recorded: %+v", uses)
	}
	// The history shows the withdrawal.
	if !regexp.MustCompile(`<td>marketing</td><td>withdrawn</td><td>api</td>`).MatchString(p.Body) {
		t.Error("the consent history lacks the withdrawal")
	}
}

func TestCustomerActions(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	ann := s.shopper(t, "u1", "ann@example.com")
	b := consoleBrowser(t, s)
	requests := func() int {
		r := s.api(t, "GET", "/v1/privacy-requests", nil)
		var v struct {
			Data []struct {
				VerifiedBy string `json:"verified_by"`
			} `json:"data"`
		}
		json.Unmarshal(r.Body, &v)
		return len(v.Data)
	}
	path := "/admin/customers/" + ann

	// A form post from another site changes nothing.
	x := b.do("POST", path+"/requests", url.Values{"type": {"access"}, "purpose": {"marketing"}},
		map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"})
	if x.Status != http.StatusForbidden || requests() != 0 {
		t.Fatalf("cross-site post: %d, %d requests", x.Status, requests())
	}
	// Bad input: a clear error, nothing filed.
	for _, f := range []url.Values{
		{"type": {"erasure"}, "purpose": {"marketing"}},       // not confirmed
		{"type": {"rectification"}, "purpose": {"marketing"}}, // needs the values: the API's
		{"type": {"nonsense"}, "purpose": {"marketing"}},
		{"type": {"access"}},
	} {
		if p := b.post(path+"/requests", f); p.Status != http.StatusBadRequest || !strings.Contains(p.Body, `class="error"`) {
			t.Errorf("post %v: %d", f, p.Status)
		}
	}
	if n := requests(); n != 0 {
		t.Fatalf("refused posts filed %d requests", n)
	}
	// File an access request: verified by the key, shown on the page.
	p := b.post(path+"/requests", url.Values{"type": {"access"}, "purpose": {"marketing"}})
	if p.Status != 200 || p.Path != path || !strings.Contains(p.Body, `id="filed"`) || !strings.Contains(p.Body, `id="request-list"`) {
		t.Fatalf("file a request: %d at %s: %s", p.Status, p.Path, p.Body)
	}
	r := s.api(t, "GET", "/v1/privacy-requests", nil)
	if requests() != 1 || !strings.Contains(string(r.Body), `"verified_by":"key:`+keyID(t, s)+`"`) || !strings.Contains(string(r.Body), `"type":"access"`) {
		t.Fatalf("filed request: %s", r.Body)
	}

	// A confirmed erasure is filed and followed on the request's own page
	// (the customer's page goes with the customer).
	e := b.post(path+"/requests", url.Values{"type": {"erasure"}, "confirm": {"yes"}, "purpose": {"marketing"}})
	if !strings.HasPrefix(e.Path, "/admin/requests/prq_") || requests() != 2 {
		t.Fatalf("erasure: at %s, %d requests", e.Path, requests())
	}

	// Staff get no preference-center link: it would let them act as the
	// customer (their reads unbounded by purpose, their choices recorded as
	// the customer's).
	if p := b.post(path+"/portal-link", url.Values{"purpose": {"marketing"}}); p.Status != http.StatusNotFound {
		t.Errorf("console portal link: %d", p.Status)
	}
}

// recLog reads the test server's log for a recommender (as cmd/trustloop does).
type recLog struct{ p *projection.Service }

func (l recLog) Each(ctx context.Context, ws int64, fn func(recommend.LogEvent) error) error {
	return l.p.EachLogEvent(ctx, ws, 0, func(e projection.LogEvent) error {
		return fn(recommend.LogEvent{Message: e.Message, Subject: e.Subject})
	})
}

func (l recLog) Subject(ctx context.Context, ws int64, subject []byte, fn func(recommend.LogEvent) error) error {
	return l.p.EachSubjectEvent(ctx, ws, subject, func(e projection.LogEvent) error {
		return fn(recommend.LogEvent{Message: e.Message, Subject: e.Subject})
	})
}

// With a recommender, a personalization read previews the customer's
// recommendations, and the read records the categories they used.
func TestCustomerRecommendations(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	consentCtx := obj{"consent": obj{"categoryPreferences": obj{"analytics": true, "personalization": true}}}
	view := func(user, item string) obj {
		return obj{"type": "track", "userId": user, "event": "Product Viewed", "properties": obj{"product_id": item}, "context": consentCtx}
	}
	prefs := func(user string) obj {
		return obj{"type": "track", "userId": user, "event": "Segment Consent Preference Updated", "context": consentCtx}
	}
	// Many customers view lamp and shade together; ann views the lamp only.
	var msgs []obj
	for _, u := range []string{"c1", "c2", "c3", "c4", "c5", "c6"} {
		msgs = append(msgs, prefs(u), view(u, "lamp"), view(u, "shade"))
	}
	msgs = append(msgs, prefs("ann"), view("ann", "lamp"),
		obj{"type": "identify", "userId": "ann", "traits": obj{"email": "ann@example.com"}, "context": consentCtx})
	mustOK(t, s.post(t, "/v1/batch", batchOf(msgs...)))

	rec, err := recommend.NewService(recommend.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rec.Consent, rec.Log, rec.Blind = s.Consent, recLog{s.Profiles}, s.Keyring.Blind
	if _, err := rec.Rebuild(context.Background(), []int64{s.WS.ID}); err != nil {
		t.Fatal(err)
	}
	pages, err := tlhtml.New(tlhtml.English())
	if err != nil {
		t.Fatal(err)
	}
	srv := &tlhttp.Server{Store: s.Store, Profiles: s.Profiles, Consent: s.Consent, Audit: s.Audit, Privacy: s.Privacy,
		Recommender: rec, Metrics: s.Metrics, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Pages: pages,
		WebKeys: s.Keyring, Operators: s.Store, Counts: s.Store, Now: s.Clock.Now}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	other := &testServer{URL: hs.URL, Store: s.Store, WS: s.WS}

	b := consoleBrowser(t, other)
	p := search(b, "ann@example.com", "personalization")
	if p.Status != 200 || !strings.Contains(p.Body, `id="recs"`) || !strings.Contains(p.Body, "Personalized from their own history.") ||
		!regexp.MustCompile(`<th scope="row" class="mono">shade</th><td class="num">[0-9.]+</td><td>lamp</td>`).MatchString(p.Body) {
		t.Fatalf("recommendations preview: %d %s", p.Status, p.Body)
	}
	id := strings.TrimPrefix(p.Path, "/admin/customers/")
	uses := consoleUses(t, s, id)
	if len(uses) != 1 || uses[0].Purpose != "personalization" || !containsAll(uses[0].Categories, "behavior") {
		t.Errorf("recorded use = %+v", uses)
	}
	// Another purpose shows no preview.
	if p := b.get("/admin/customers/" + id + "?purpose=analytics"); strings.Contains(p.Body, `id="recs"`) {
		t.Error("a preview for analytics")
	}
}
