package http_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/http/html"
	"github.com/trustloop/trustloop/password"
	"github.com/trustloop/trustloop/privacy"
)

// manageAddrs numbers the loopback addresses the management tests' browsers
// connect from: the sign-in limit counts attempts per client address for the
// whole test process, so each browser gets its own (all of 127.0.0.0/8 is
// this host).
var manageAddrs atomic.Int32

func (s *testServer) manageBrowser(t *testing.T) *browser {
	t.Helper()
	n := manageAddrs.Add(1)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 1, byte(n/250), byte(1+n%250))}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: s.URL, c: &http.Client{Jar: jar, Transport: tr}}
}

// signedIn is a browser signed in with an API key, or (with a password) as
// the operator with that email.
func (s *testServer) signedIn(t *testing.T, keyOrEmail string, pw ...string) *browser {
	t.Helper()
	b := s.manageBrowser(t)
	form := url.Values{"key": {keyOrEmail}}
	if len(pw) > 0 {
		form = url.Values{"email": {keyOrEmail}, "password": {pw[0]}}
	}
	b.post("/admin/signin", form)
	if p := b.get("/admin/requests"); p.Status != http.StatusOK || p.Path != "/admin/requests" {
		t.Fatalf("sign-in did not take: %d at %s", p.Status, p.Path)
	}
	return b
}

// newOperator stores an operator account as an admin would have made it.
func (s *testServer) newOperator(t *testing.T, email, name, pw string, roles ...string) *trustloop.Operator {
	t.Helper()
	h, err := password.Hash(pw)
	if err != nil {
		t.Fatal(err)
	}
	op := &trustloop.Operator{WorkspaceID: s.WS.ID, Email: email, Name: name, PasswordHash: h, Roles: roles,
		Purposes: []string{"essential"}}
	if err := s.Store.CreateOperator(context.Background(), op); err != nil {
		t.Fatal(err)
	}
	return op
}

// privacyRequest files a request through the API and returns its id.
func (s *testServer) privacyRequest(t *testing.T, body obj) string {
	t.Helper()
	r := s.api(t, "POST", "/v1/privacy-requests", body)
	if r.Status != http.StatusCreated {
		t.Fatalf("filing %v: %d %s", body, r.Status, r.Body)
	}
	var v struct {
		RequestID string `json:"request_id"`
	}
	json.Unmarshal(r.Body, &v)
	return v.RequestID
}

type requestState struct {
	Status          string     `json:"status"`
	VerifiedBy      string     `json:"verified_by"`
	RejectReason    string     `json:"reject_reason"`
	ExtensionReason string     `json:"extension_reason"`
	ExtendedAt      *time.Time `json:"extended_at"`
	DueAt           time.Time  `json:"due_at"`
	Type            string     `json:"type"`
}

func (s *testServer) requestState(t *testing.T, id string) requestState {
	t.Helper()
	return decode[requestState](t, s.api(t, "GET", "/v1/privacy-requests/"+id, nil), http.StatusOK)
}

// untranslated finds a text key a page shows instead of its words.
var untranslated = regexp.MustCompile(`\[(admin|common|request|category)\.[a-z_.]+\]`)

func mustPage(t *testing.T, p *page, status int, path string) {
	t.Helper()
	if p.Status != status || (path != "" && p.Path != path) {
		t.Fatalf("got %d at %s, want %d at %s: %.2000s", p.Status, p.Path, status, path, p.Body)
	}
	if m := untranslated.FindString(p.Body); m != "" {
		t.Errorf("page %s shows the text key %s", p.Path, m)
	}
}

func TestManageSignIn(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	ann := s.newOperator(t, "ann@shop.example", "Ann Admin", "correct horse battery", trustloop.RoleAdmin)
	s.newOperator(t, "pat@shop.example", "Pat Privacy", "another long passphrase", trustloop.RolePrivacy)

	// An operator and the admin key both get in.
	b := s.signedIn(t, "Ann@Shop.example ", "correct horse battery")
	if p := b.get("/admin/keys"); !strings.Contains(p.Body, "Ann Admin") {
		t.Error("the console does not name the signed-in operator")
	}
	s.signedIn(t, adminKey)

	// A wrong password and an unknown email get the same answer.
	try := func(email, pw string) *page {
		return s.manageBrowser(t).post("/admin/signin", url.Values{"email": {email}, "password": {pw}})
	}
	wrong, unknown := try("ann@shop.example", "not the password at all"), try("nobody@shop.example", "correct horse battery")
	if wrong.Status != http.StatusUnauthorized || unknown.Status != http.StatusUnauthorized || wrong.Body != unknown.Body {
		t.Fatalf("wrong password: %d, unknown email: %d; same page: %v", wrong.Status, unknown.Status, wrong.Body == unknown.Body)
	}
	if k := s.manageBrowser(t).post("/admin/signin", url.Values{"key": {"tl_not_a_key"}}); k.Status != http.StatusUnauthorized {
		t.Fatalf("unknown key: %d", k.Status)
	}

	// A disabled operator's session ends on its next request.
	pat := s.signedIn(t, "pat@shop.example", "another long passphrase")
	admin := s.signedIn(t, "ann@shop.example", "correct horse battery")
	ops, _ := s.Store.ListOperators(context.Background(), s.WS.ID)
	var patID int64
	for _, op := range ops {
		if op.ID != ann.ID {
			patID = op.ID
		}
	}
	mustPage(t, admin.post("/admin/operators/"+itoa(patID)+"/disable", url.Values{}), 200, "/admin/operators")
	if p := pat.get("/admin/requests"); p.Path != "/admin/signin" {
		t.Fatalf("a disabled operator's session still opens pages: %d at %s", p.Status, p.Path)
	}
	if p := pat.post("/admin/requests", url.Values{"type": {"access"}, "identifier": {"user_id:1"}}); p.Status != http.StatusUnauthorized {
		t.Fatalf("a disabled operator's post: %d", p.Status)
	}
	if p := try("pat@shop.example", "another long passphrase"); p.Status != http.StatusUnauthorized {
		t.Fatalf("a disabled operator signs in: %d", p.Status)
	}
}

// TestManageReaderReadOnly: a reader sees the pages without their forms, and
// every change it posts is refused with 403 and changes nothing.
func TestManageReaderReadOnly(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	ctx := context.Background()
	boss := s.newOperator(t, "boss@shop.example", "Boss", "the boss's long password", trustloop.RoleAdmin)
	s.newOperator(t, "rita@shop.example", "Rita Reader", "rita's long password", trustloop.RoleReader)
	id := s.privacyRequest(t, obj{"type": "access", "identifier": "user_id:u1", "verified": false})
	b := s.signedIn(t, "rita@shop.example", "rita's long password")

	for _, path := range []string{"/admin", "/admin/requests", "/admin/requests?status=all", "/admin/requests/" + id, "/admin/purposes",
		"/admin/keys", "/admin/audiences", "/admin/destinations"} {
		p := b.get(path)
		mustPage(t, p, 200, "")
		// The only form that posts is the header's sign-out.
		if n := strings.Count(p.Body, `method="post"`); n != 1 {
			t.Errorf("%s offers a reader %d forms that post", path, n-1)
		}
	}
	for _, path := range []string{"/admin/operators", "/admin/keys/1/revoke"} {
		if p := b.get(path); p.Status != http.StatusForbidden {
			t.Errorf("GET %s as a reader: %d", path, p.Status)
		}
	}

	before, _ := s.Consent.Catalog(ctx, s.WS.ID)
	keys, _ := s.Store.ListAPIKeys(ctx, s.WS.ID)
	for _, c := range []struct {
		path string
		form url.Values
	}{
		{"/admin/requests", url.Values{"type": {"erasure"}, "identifier": {"user_id:u9"}, "verified": {"yes"}}},
		{"/admin/requests/" + id + "/verify", url.Values{}},
		{"/admin/requests/" + id + "/reject", url.Values{"reason": {"no"}}},
		{"/admin/requests/" + id + "/extend", url.Values{"reason": {"complex"}}},
		{"/admin/purposes", url.Values{"form": {"json"}, "catalog": {"{}"}}},
		{"/admin/keys", url.Values{"name": {"sneaky"}, "roles": {"admin"}}},
		{"/admin/keys/1/revoke", url.Values{"confirm": {"yes"}}},
		{"/admin/operators", url.Values{"email": {"x@shop.example"}, "name": {"X"}, "roles": {"admin"},
			"password": {"a long enough password"}, "password_confirm": {"a long enough password"}}},
		{"/admin/operators/" + itoa(boss.ID) + "/disable", url.Values{}},
		{"/admin/operators/" + itoa(boss.ID) + "/enable", url.Values{}},
		{"/admin/operators/" + itoa(boss.ID) + "/password", url.Values{"password": {"a new long password"}, "password_confirm": {"a new long password"}}},
		{"/admin/audit/verify", url.Values{}},
	} {
		if p := b.post(c.path, c.form); p.Status != http.StatusForbidden || !strings.Contains(p.Body, "role") {
			t.Errorf("POST %s as a reader: %d", c.path, p.Status)
		}
	}
	if st := s.requestState(t, id); st.Status != "received" || st.ExtendedAt != nil {
		t.Errorf("the request changed: %+v", st)
	}
	if r := s.api(t, "GET", "/v1/privacy-requests?status=received", nil); strings.Count(string(r.Body), `"request_id"`) != 1 {
		t.Errorf("a request was filed: %s", r.Body)
	}
	after, _ := s.Consent.Catalog(ctx, s.WS.ID)
	keys2, _ := s.Store.ListAPIKeys(ctx, s.WS.ID)
	ops, _ := s.Store.ListOperators(ctx, s.WS.ID)
	if after.Catalog.Version != before.Catalog.Version || len(keys2) != len(keys) || keys2[0].RevokedAt != nil || len(ops) != 2 {
		t.Errorf("something changed: catalog %d→%d, keys %d→%d, operators %d", before.Catalog.Version, after.Catalog.Version, len(keys), len(keys2), len(ops))
	}
	if op, _ := s.Store.FindOperator(ctx, s.WS.ID, boss.ID); op.DisabledAt != nil || op.PasswordHash != boss.PasswordHash {
		t.Error("the reader changed another operator")
	}
}

// rowOf returns the queue row of a request.
func rowOf(body, id string) string {
	m := regexp.MustCompile(`(?s)<tr id="row-` + id + `"[^>]*>.*?</tr>`).FindString(body)
	return m
}

func TestManageRequestsQueue(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	// Filed in this order, due in the other: a CCPA request has 45 days, a
	// GDPR one a month.
	ccpa := s.privacyRequest(t, obj{"type": "access", "identifier": "user_id:u1", "regime": "ccpa", "verified": false})
	gdpr := s.privacyRequest(t, obj{"type": "erasure", "identifier": "user_id:u2", "regime": "gdpr", "verified": false})
	closed := s.privacyRequest(t, obj{"type": "objection", "identifier": "user_id:u3", "regime": "gdpr", "verified": false})
	if r := s.api(t, "POST", "/v1/privacy-requests/"+closed+"/reject", obj{"reason": "duplicate"}); r.Status != 200 {
		t.Fatalf("reject: %d %s", r.Status, r.Body)
	}

	b := s.signedIn(t, adminKey)
	p := b.get("/admin/requests")
	mustPage(t, p, 200, "/admin/requests")
	if strings.Contains(rowOf(p.Body, gdpr), "overdue") || strings.Contains(rowOf(p.Body, ccpa), "neardue") {
		t.Error("fresh requests are flagged")
	}

	// 40 days on, the GDPR request is overdue and the CCPA one due in 5 days.
	s.Clock.Add(40 * 24 * time.Hour)
	b = s.signedIn(t, adminKey)
	p = b.get("/admin/requests")
	mustPage(t, p, 200, "/admin/requests")
	ig, ic := strings.Index(p.Body, `id="row-`+gdpr+`"`), strings.Index(p.Body, `id="row-`+ccpa+`"`)
	if ig < 0 || ic < 0 || ig > ic {
		t.Fatalf("queue order: gdpr at %d, ccpa at %d (the earlier deadline comes first)", ig, ic)
	}
	if strings.Contains(p.Body, `id="row-`+closed+`"`) {
		t.Error("the open queue lists a rejected request")
	}
	g, c := rowOf(p.Body, gdpr), rowOf(p.Body, ccpa)
	if !strings.Contains(g, `class="overdue"`) || !strings.Contains(g, `badge bad">Overdue`) {
		t.Errorf("the overdue row is not marked (class and text): %s", g)
	}
	if !strings.Contains(c, `class="neardue"`) || !strings.Contains(c, "Due soon") || !strings.Contains(c, "5 days left") {
		t.Errorf("the near-due row is not marked: %s", c)
	}
	// Both are past their acknowledgement date and unverified.
	if !strings.Contains(g, "Acknowledgement overdue") {
		t.Error("no acknowledgement badge")
	}
	for id, want := range map[string]string{"count-open": "2", "count-overdue": "1", "count-neardue": "1", "count-unverified": "2"} {
		if !strings.Contains(p.Body, `id="`+id+`">`+want+`<`) {
			t.Errorf("count %s is not %s", id, want)
		}
	}

	// Filters.
	p = b.get("/admin/requests?status=rejected")
	mustPage(t, p, 200, "")
	if !strings.Contains(p.Body, `id="row-`+closed+`"`) || strings.Contains(p.Body, `id="row-`+gdpr+`"`) {
		t.Error("the rejected filter")
	}
	p = b.get("/admin/requests?status=all")
	for _, id := range []string{gdpr, ccpa, closed} {
		if !strings.Contains(p.Body, `id="row-`+id+`"`) {
			t.Errorf("the all filter lacks %s", id)
		}
	}
	if p := b.get("/admin/requests?status=nonsense"); p.Status != http.StatusBadRequest {
		t.Errorf("an unknown filter: %d", p.Status)
	}

	// The detail shows the history and marks the deadline.
	p = b.get("/admin/requests/" + gdpr)
	mustPage(t, p, 200, "")
	for _, want := range []string{`data-status="received"`, "Overdue", "Acknowledge by", "GDPR: one month", `id="verify"`, `id="reject"`, `id="extend"`} {
		if !strings.Contains(p.Body, want) {
			t.Errorf("the detail lacks %q", want)
		}
	}
	if p := b.get("/admin/requests/prq_aaaaaaaaaaaaaaaaaaaaaaaaaa"); p.Status != http.StatusNotFound {
		t.Errorf("an unknown request: %d", p.Status)
	}
}

func TestManageRequestsActions(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	pat := s.newOperator(t, "pat@shop.example", "Pat Privacy", "another long passphrase", trustloop.RolePrivacy)
	one := s.privacyRequest(t, obj{"type": "access", "identifier": "user_id:u1", "verified": false})
	two := s.privacyRequest(t, obj{"type": "erasure", "identifier": "user_id:u2", "verified": false})
	three := s.privacyRequest(t, obj{"type": "objection", "identifier": "user_id:u3", "verified": false})
	b := s.signedIn(t, "pat@shop.example", "another long passphrase")

	// Verify: recorded as the operator's verification.
	p := b.post("/admin/requests/"+one+"/verify", url.Values{})
	mustPage(t, p, 200, "/admin/requests/"+one)
	if !strings.Contains(p.Body, "verified and queued") {
		t.Error("no flash after verifying")
	}
	if st := s.requestState(t, one); st.Status != "verified" || st.VerifiedBy != "operator:"+itoa(pat.ID) {
		t.Fatalf("after verify: %+v", st)
	}
	// Verifying twice is a conflict, shown on the page.
	if p := b.post("/admin/requests/"+one+"/verify", url.Values{}); p.Status != http.StatusConflict || !strings.Contains(p.Body, `id="form-error"`) {
		t.Errorf("verifying twice: %d", p.Status)
	}

	// Reject needs a reason; without one nothing changes.
	p = b.post("/admin/requests/"+two+"/reject", url.Values{"reason": {"  "}})
	if p.Status != http.StatusBadRequest || !strings.Contains(p.Body, "needs a reason") {
		t.Fatalf("reject without a reason: %d", p.Status)
	}
	if st := s.requestState(t, two); st.Status != "received" {
		t.Fatalf("a refused reject changed the request: %+v", st)
	}
	p = b.post("/admin/requests/"+two+"/reject", url.Values{"reason": {"identity could not be verified"}})
	mustPage(t, p, 200, "/admin/requests/"+two)
	if st := s.requestState(t, two); st.Status != "rejected" || st.RejectReason != "identity could not be verified" {
		t.Fatalf("after reject: %+v", st)
	}

	// Extend needs a reason too, and the law allows one.
	due := s.requestState(t, three).DueAt
	if p := b.post("/admin/requests/"+three+"/extend", url.Values{}); p.Status != http.StatusBadRequest {
		t.Fatalf("extend without a reason: %d", p.Status)
	}
	if st := s.requestState(t, three); st.ExtendedAt != nil || !st.DueAt.Equal(due) {
		t.Fatalf("a refused extension changed the request: %+v", st)
	}
	p = b.post("/admin/requests/"+three+"/extend", url.Values{"reason": {"many requests this month"}})
	mustPage(t, p, 200, "/admin/requests/"+three)
	if !strings.Contains(p.Body, "deadline was extended") {
		t.Error("no flash after extending")
	}
	st := s.requestState(t, three)
	if st.ExtendedAt == nil || !st.DueAt.After(due.AddDate(0, 1, 0)) || st.ExtensionReason != "many requests this month" {
		t.Fatalf("after extend: %+v (was due %v)", st, due)
	}
	if p := b.post("/admin/requests/"+three+"/extend", url.Values{"reason": {"again"}}); p.Status != http.StatusConflict ||
		!strings.Contains(p.Body, "extended already") || strings.Contains(p.Body, `id="extend"`) {
		t.Errorf("a second extension: %d", p.Status)
	}

	// A request received by phone: the identifier goes in the body only.
	p = b.post("/admin/requests", url.Values{"type": {"nonsense"}, "identifier": {"email:jane@example.com"}})
	if p.Status != http.StatusBadRequest || !strings.Contains(p.Body, `value="email:jane@example.com"`) {
		t.Fatalf("a bad type: %d (the identifier typed is kept)", p.Status)
	}
	p = b.post("/admin/requests", url.Values{"type": {"erasure"}, "identifier": {"no colon"}})
	if p.Status != http.StatusBadRequest || !strings.Contains(p.Body, `id="form-error"`) {
		t.Fatalf("a bad identifier: %d", p.Status)
	}
	p = b.post("/admin/requests", url.Values{"type": {"erasure"}, "identifier": {"email:jane@example.com"}})
	mustPage(t, p, 200, "")
	filed := strings.TrimPrefix(p.Path, "/admin/requests/")
	if !trustloop.ValidRequestID(filed) || !strings.Contains(p.Body, "The request was filed") {
		t.Fatalf("filing: at %s", p.Path)
	}
	if st := s.requestState(t, filed); st.Status != "received" || st.Type != "erasure" {
		t.Fatalf("the filed request: %+v", st)
	}
	if strings.Contains(p.Body, "jane@example.com") {
		t.Error("the request page shows the identifier")
	}
	// The same again joins the open request.
	p = b.post("/admin/requests", url.Values{"type": {"erasure"}, "identifier": {"email:jane@example.com"}, "verified": {"yes"}})
	if p.Path != "/admin/requests/"+filed || !strings.Contains(p.Body, "exists already") {
		t.Fatalf("a duplicate: at %s", p.Path)
	}
	if st := s.requestState(t, filed); st.Status != "verified" || st.VerifiedBy != "operator:"+itoa(pat.ID) {
		t.Fatalf("the verified duplicate did not verify the open request: %+v", st)
	}
}

func TestManagePurposes(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	b := s.signedIn(t, adminKey)
	catalog := func() map[string]any {
		var c map[string]any
		json.Unmarshal(s.do(t, req{method: "GET", path: "/v1/purposes"}).Body, &c)
		return c
	}
	purpose := func(c map[string]any, id string) map[string]any {
		for _, p := range c["purposes"].([]any) {
			if p := p.(map[string]any); p["id"] == id {
				return p
			}
		}
		t.Fatalf("no purpose %s", id)
		return nil
	}
	version := func(body string) string {
		m := regexp.MustCompile(`name="version" value="(\d+)"`).FindStringSubmatch(body)
		if m == nil {
			t.Fatal("no version in the editor")
		}
		return m[1]
	}

	p := b.get("/admin/purposes")
	mustPage(t, p, 200, "/admin/purposes")
	for _, want := range []string{`id="purpose-marketing"`, "Sharing with partners", "contract", "395 days", `id="catalog-json"`} {
		if !strings.Contains(p.Body, want) {
			t.Errorf("the purposes page lacks %q", want)
		}
	}
	v := version(p.Body)

	// The editor's fields save; purposes not in the form stay as they were.
	p = b.post("/admin/purposes", url.Values{"form": {"fields"}, "version": {v},
		"p.marketing.title": {"Offers for you"}, "p.marketing.description": {"Offers that fit what you like."},
		"p.marketing.opt_out": {"yes"}, "p.marketing.retention": {"200"}})
	mustPage(t, p, 200, "/admin/purposes")
	if !strings.Contains(p.Body, "The catalog was saved") {
		t.Error("no flash after saving")
	}
	c := catalog()
	if m := purpose(c, "marketing"); m["title"] != "Offers for you" || m["retention_days"] != 200.0 {
		t.Fatalf("after the edit: %v", m)
	}
	if a := purpose(c, "analytics"); a["title"] != "Analytics" {
		t.Fatalf("a purpose not in the form changed: %v", a)
	}
	saved := c["version"]

	// Bad input: a clear error, the input kept, nothing changed.
	v = version(b.get("/admin/purposes").Body)
	for name, form := range map[string]url.Values{
		"invalid JSON":  {"form": {"json"}, "catalog": {`{"version": 2, "purposes": [`}},
		"unknown field": {"form": {"json"}, "catalog": {`{"version": ` + v + `, "nonsense": 1}`}},
		"opt-in default": {"form": {"fields"}, "version": {v}, "p.analytics.title": {"Kept title"}, "p.analytics.description": {"x"},
			"p.analytics.opt_in": {"yes"}, "p.analytics.retention": {"30"}},
		"retention": {"form": {"fields"}, "version": {v}, "p.analytics.title": {"Kept title"}, "p.analytics.description": {"x"},
			"p.analytics.retention": {"a year"}},
		"no title": {"form": {"fields"}, "version": {v}, "p.analytics.title": {""}, "p.analytics.description": {"Kept description"},
			"p.analytics.retention": {"30"}},
	} {
		p := b.post("/admin/purposes", form)
		if p.Status != http.StatusBadRequest || !strings.Contains(p.Body, `id="form-error"`) {
			t.Errorf("%s: %d", name, p.Status)
		}
		kept := "Kept description"
		switch {
		case form.Get("form") == "json":
			kept = strings.ReplaceAll(form.Get("catalog"), `"`, "&#34;")
		case form.Get("p.analytics.title") != "":
			kept = `value="Kept title"`
		}
		if !strings.Contains(p.Body, kept) {
			t.Errorf("%s: the input is not kept (%s)", name, kept)
		}
	}
	if c := catalog(); c["version"] != saved || purpose(c, "analytics")["title"] != "Analytics" {
		t.Fatalf("a refused save changed the catalog: %v", c["version"])
	}

	// Someone saves meanwhile: the stale save is a conflict, the input kept.
	p = b.get("/admin/purposes")
	v = version(p.Body)
	doc := s.do(t, req{method: "GET", path: "/v1/purposes"}).Body
	if r := s.api(t, "PUT", "/v1/purposes", doc); r.Status != 200 {
		t.Fatalf("save through the API: %d %s", r.Status, r.Body)
	}
	p = b.post("/admin/purposes", url.Values{"form": {"fields"}, "version": {v}, "p.analytics.title": {"Stale title"},
		"p.analytics.description": {"x"}, "p.analytics.retention": {"30"}})
	if p.Status != http.StatusConflict || !strings.Contains(p.Body, "changed meanwhile") || !strings.Contains(p.Body, `value="Stale title"`) {
		t.Fatalf("a stale save: %d", p.Status)
	}
	if purpose(catalog(), "analytics")["title"] != "Analytics" {
		t.Fatal("the stale save was stored")
	}

	// The whole document saves too.
	c = catalog()
	purpose(c, "sharing")["title"] = "Sharing with our partners"
	body, _ := json.Marshal(c)
	p = b.post("/admin/purposes", url.Values{"form": {"json"}, "catalog": {string(body)}})
	mustPage(t, p, 200, "/admin/purposes")
	if purpose(catalog(), "sharing")["title"] != "Sharing with our partners" {
		t.Fatal("the JSON save did not take")
	}

	// Each save is in the audit log, by the console's principal.
	r := s.api(t, "GET", "/v1/audit/entries", nil)
	if n := strings.Count(string(r.Body), `"kind":"catalog_changed","actor":{"kind":"api_key","id":"key:1"},"action":"POST /admin/purposes"`); n != 2 {
		t.Errorf("%d catalog changes recorded from the console: %s", n, r.Body)
	}
}

func TestManageKeys(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	ctx := context.Background()
	s.newOperator(t, "ann@shop.example", "Ann Admin", "correct horse battery", trustloop.RoleAdmin)
	b := s.signedIn(t, "ann@shop.example", "correct horse battery")

	p := b.get("/admin/keys")
	mustPage(t, p, 200, "/admin/keys")
	if !strings.Contains(p.Body, `id="key-1"`) || !strings.Contains(p.Body, `id="create-form"`) {
		t.Fatal("the keys page lacks the admin key or the form")
	}

	// Bad input: the error, the name kept, no key made.
	p = b.post("/admin/keys", url.Values{"name": {"crm sync"}, "roles": {"superuser"}})
	if p.Status != http.StatusBadRequest || !strings.Contains(p.Body, `value="crm sync"`) {
		t.Fatalf("a bad role: %d", p.Status)
	}
	p = b.post("/admin/keys", url.Values{"name": {"crm sync"}, "roles": {"privacy"}, "purposes": {"astrology"}})
	if p.Status != http.StatusBadRequest || !strings.Contains(p.Body, "Unknown purpose") {
		t.Fatalf("a bad purpose: %d", p.Status)
	}
	if keys, _ := s.Store.ListAPIKeys(ctx, s.WS.ID); len(keys) != 1 {
		t.Fatalf("%d keys after refused creations", len(keys))
	}

	// Created: the secret is on this one page, in no URL, and works.
	p = b.post("/admin/keys", url.Values{"name": {"crm sync"}, "roles": {"privacy"}, "purposes": {"essential", "analytics"}})
	mustPage(t, p, 200, "/admin/keys")
	m := regexp.MustCompile(`id="new-secret" value="(tl_[A-Za-z0-9]+)"`).FindStringSubmatch(p.Body)
	if m == nil {
		t.Fatalf("no secret on the creation page: %s", p.Body)
	}
	secret := m[1]
	if r := s.api(t, "GET", "/v1/privacy-requests", nil, secret); r.Status != 200 {
		t.Fatalf("the new key on the API: %d %s", r.Status, r.Body)
	}
	if r := s.api(t, "GET", "/v1/api-keys", nil, secret); r.Status != 403 {
		t.Fatalf("the privacy key acting as admin: %d", r.Status)
	}
	p = b.get("/admin/keys")
	if strings.Contains(p.Body, secret) || !strings.Contains(p.Body, "crm sync") {
		t.Fatal("the list shows the secret, or not the key")
	}
	keys, _ := s.Store.ListAPIKeys(ctx, s.WS.ID)
	nk := keys[len(keys)-1]
	if nk.Name != "crm sync" || strings.Join(nk.Roles, ",") != "privacy" || strings.Join(nk.Purposes, ",") != "essential,analytics" {
		t.Fatalf("stored key: %+v", nk)
	}
	r := s.api(t, "GET", "/v1/audit/entries", nil)
	if !strings.Contains(string(r.Body), `"kind":"key_created","actor":{"kind":"operator","id":"operator:`) {
		t.Errorf("the creation is not recorded with the operator: %s", r.Body)
	}

	// Revoking asks first, then takes at once.
	p = b.get("/admin/keys/" + itoa(nk.ID) + "/revoke")
	mustPage(t, p, 200, "")
	if !strings.Contains(p.Body, "crm sync") || !strings.Contains(p.Body, `id="revoke-confirm"`) {
		t.Fatal("no confirmation page")
	}
	if p := b.post("/admin/keys/"+itoa(nk.ID)+"/revoke", url.Values{}); p.Status != http.StatusBadRequest {
		t.Fatalf("an unconfirmed revoke: %d", p.Status)
	}
	if r := s.api(t, "GET", "/v1/privacy-requests", nil, secret); r.Status != 200 {
		t.Fatalf("an unconfirmed revoke revoked: %d", r.Status)
	}
	p = b.post("/admin/keys/"+itoa(nk.ID)+"/revoke", url.Values{"confirm": {"yes"}})
	mustPage(t, p, 200, "/admin/keys")
	if !strings.Contains(p.Body, "The key was revoked") {
		t.Error("no flash after revoking")
	}
	if r := s.api(t, "GET", "/v1/privacy-requests", nil, secret); r.Status != 401 {
		t.Fatalf("a revoked key still works: %d", r.Status)
	}

	// The workspace's last admin key stays.
	p = b.post("/admin/keys/1/revoke", url.Values{"confirm": {"yes"}})
	if p.Status != http.StatusConflict || !strings.Contains(p.Body, "last active admin key") {
		t.Fatalf("revoking the last admin key: %d", p.Status)
	}
	if r := s.api(t, "GET", "/v1/api-keys", nil); r.Status != 200 {
		t.Fatalf("the admin key after the refusal: %d", r.Status)
	}
	if p := b.post("/admin/keys/999/revoke", url.Values{"confirm": {"yes"}}); p.Status != http.StatusNotFound {
		t.Errorf("an unknown key: %d", p.Status)
	}
}

func TestManageOperators(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	ctx := context.Background()
	ann := s.newOperator(t, "ann@shop.example", "Ann Admin", "correct horse battery", trustloop.RoleAdmin)
	b := s.signedIn(t, "ann@shop.example", "correct horse battery")

	form := url.Values{"email": {"Bo@Shop.example"}, "name": {"Bo Privacy"}, "roles": {"privacy"}, "purposes": {"essential"},
		"password": {"short"}, "password_confirm": {"short"}}
	p := b.post("/admin/operators", form)
	if p.Status != http.StatusBadRequest || !strings.Contains(p.Body, "too short") || !strings.Contains(p.Body, `value="Bo Privacy"`) {
		t.Fatalf("a short password: %d", p.Status)
	}
	if strings.Contains(p.Body, `value="short"`) {
		t.Error("the refused page shows the password")
	}
	form.Set("password", "bo's long enough password")
	form.Set("password_confirm", "bo's long enough passworD")
	if p := b.post("/admin/operators", form); p.Status != http.StatusBadRequest || !strings.Contains(p.Body, "differ") {
		t.Fatalf("passwords that differ: %d", p.Status)
	}
	form.Set("password_confirm", "bo's long enough password")
	form.Set("purposes", "astrology")
	if p := b.post("/admin/operators", form); p.Status != http.StatusBadRequest {
		t.Fatalf("an unknown purpose: %d", p.Status)
	}
	form.Set("purposes", "essential")
	p = b.post("/admin/operators", form)
	mustPage(t, p, 200, "/admin/operators")
	if !strings.Contains(p.Body, "bo@shop.example") || !strings.Contains(p.Body, "Bo Privacy") {
		t.Fatal("the new operator is not listed")
	}
	if p := b.post("/admin/operators", form); p.Status != http.StatusConflict {
		t.Fatalf("the same email again: %d", p.Status)
	}
	ops, _ := s.Store.ListOperators(ctx, s.WS.ID)
	if len(ops) != 2 {
		t.Fatalf("%d operators", len(ops))
	}
	bo := ops[1]
	if ok, _ := password.Verify(bo.PasswordHash, "bo's long enough password"); !ok || strings.Join(bo.Roles, ",") != "privacy" {
		t.Fatalf("stored operator: %+v", bo)
	}
	boB := s.signedIn(t, "bo@shop.example", "bo's long enough password")

	// Nobody disables themselves.
	if p := b.post("/admin/operators/"+itoa(ann.ID)+"/disable", url.Values{}); p.Status != http.StatusBadRequest || !strings.Contains(p.Body, "your own account") {
		t.Fatalf("disabling oneself: %d", p.Status)
	}
	if op, _ := s.Store.FindOperator(ctx, s.WS.ID, ann.ID); op.DisabledAt != nil {
		t.Fatal("the admin disabled themselves")
	}

	// Disable, enable, reset the password.
	mustPage(t, b.post("/admin/operators/"+itoa(bo.ID)+"/disable", url.Values{}), 200, "/admin/operators")
	if p := boB.get("/admin/requests"); p.Path != "/admin/signin" {
		t.Fatalf("a disabled operator's session: at %s", p.Path)
	}
	mustPage(t, b.post("/admin/operators/"+itoa(bo.ID)+"/enable", url.Values{}), 200, "/admin/operators")
	boB = s.signedIn(t, "bo@shop.example", "bo's long enough password")
	if p := b.post("/admin/operators/"+itoa(bo.ID)+"/password", url.Values{"password": {"tiny"}, "password_confirm": {"tiny"}}); p.Status != http.StatusBadRequest {
		t.Fatalf("a short new password: %d", p.Status)
	}
	p = b.post("/admin/operators/"+itoa(bo.ID)+"/password", url.Values{"password": {"a brand new passphrase"}, "password_confirm": {"a brand new passphrase"}})
	mustPage(t, p, 200, "/admin/operators")
	if p := s.manageBrowser(t).post("/admin/signin", url.Values{"email": {"bo@shop.example"}, "password": {"bo's long enough password"}}); p.Status != http.StatusUnauthorized {
		t.Fatalf("the old password after a reset: %d", p.Status)
	}
	// The reset ended bo's open session; ann's own goes on.
	if p := boB.get("/admin/requests"); p.Path != "/admin/signin" {
		t.Fatalf("a session opened before the reset: at %s", p.Path)
	}
	if p := b.get("/admin/operators"); p.Status != 200 || p.Path != "/admin/operators" {
		t.Fatalf("the admin's session after resetting another's password: %d at %s", p.Status, p.Path)
	}
	s.signedIn(t, "bo@shop.example", "a brand new passphrase")
	// Resetting one's own password keeps one's session (under the new one).
	mustPage(t, b.post("/admin/operators/"+itoa(ann.ID)+"/password", url.Values{"password": {"ann's second passphrase"},
		"password_confirm": {"ann's second passphrase"}}), 200, "/admin/operators")
	if p := b.get("/admin/operators"); p.Path != "/admin/operators" {
		t.Fatalf("one's own session after one's own reset: at %s", p.Path)
	}
	if p := b.post("/admin/operators/424242/disable", url.Values{}); p.Status != http.StatusNotFound {
		t.Errorf("an unknown operator: %d", p.Status)
	}

	// The audit log names operators by id, never by email or name.
	r := s.api(t, "GET", "/v1/audit/entries", nil)
	body := string(r.Body)
	for _, kind := range []string{"operator_created", "operator_disabled", "operator_enabled", "operator_password_reset"} {
		if !strings.Contains(body, `"kind":"`+kind+`","actor":{"kind":"operator","id":"operator:`+itoa(ann.ID)+`"}`) ||
			!strings.Contains(body, `"detail":"operator:`+itoa(bo.ID)+`"`) {
			t.Errorf("%s is not recorded by id: %s", kind, body)
		}
	}
	if strings.Contains(body, "bo@shop") || strings.Contains(body, "Bo Privacy") {
		t.Error("the audit log holds an operator's email or name")
	}
}

func TestManageCrossSite(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	ctx := context.Background()
	id := s.privacyRequest(t, obj{"type": "access", "identifier": "user_id:u1", "verified": false})
	b := s.signedIn(t, adminKey)
	evil := map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
	before, _ := s.Consent.Catalog(ctx, s.WS.ID)
	for path, form := range map[string]url.Values{
		"/admin/keys":                       {"name": {"evil"}, "roles": {"admin"}},
		"/admin/purposes":                   {"form": {"json"}, "catalog": {"{}"}},
		"/admin/requests/" + id + "/verify": {},
		"/admin/keys/1/revoke":              {"confirm": {"yes"}},
	} {
		if p := b.do("POST", path, form, evil); p.Status != http.StatusForbidden {
			t.Errorf("cross-site POST %s: %d", path, p.Status)
		}
	}
	keys, _ := s.Store.ListAPIKeys(ctx, s.WS.ID)
	after, _ := s.Consent.Catalog(ctx, s.WS.ID)
	if len(keys) != 1 || keys[0].RevokedAt != nil || after.Catalog.Version != before.Catalog.Version || s.requestState(t, id).Status != "received" {
		t.Fatal("a cross-site post changed something")
	}
}

func TestManageAudiencesDestinations(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	if r := s.api(t, "POST", "/v1/audiences", obj{"name": "Lamp lovers", "rule": `traits.plan == "pro"`, "description": "Pro plan"}); r.Status != 201 {
		t.Fatalf("audience: %d %s", r.Status, r.Body)
	}
	b := s.signedIn(t, adminKey)
	p := b.get("/admin/audiences")
	mustPage(t, p, 200, "/admin/audiences")
	for _, want := range []string{"Lamp lovers", "traits.plan == &#34;pro&#34;", "POST /v1/audiences", "marketing"} {
		if !strings.Contains(p.Body, want) {
			t.Errorf("the audiences page lacks %q", want)
		}
	}
	p = b.get("/admin/destinations")
	mustPage(t, p, 200, "/admin/destinations")
	if !strings.Contains(p.Body, `id="not-built"`) || !strings.Contains(p.Body, "not built yet") {
		t.Error("the destinations page does not say they are not built")
	}
	// Signed out, the pages send to the sign-in form.
	if p := s.manageBrowser(t).get("/admin/audiences"); p.Path != "/admin/signin" {
		t.Errorf("signed out: at %s", p.Path)
	}
}

// TestManageTexts: every text the management pages name exists, in exactly
// one texts file.
func TestManageTexts(t *testing.T) {
	texts := html.English()
	re := regexp.MustCompile(`\{\{t "([^"]+)"`)
	files, _ := filepath.Glob("html/templates/admin_*.html")
	n := 0
	for _, f := range files {
		switch filepath.Base(f) {
		case "admin_requests.html", "admin_purposes.html", "admin_keys.html", "admin_operators.html", "admin_audiences.html", "admin_destinations.html":
		default:
			continue
		}
		n++
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			if _, ok := texts[m[1]]; !ok {
				t.Errorf("%s: no text %q", f, m[1])
			}
		}
	}
	if n != 6 {
		t.Fatalf("found %d of the 6 management templates", n)
	}
	for _, k := range []string{"admin.requests.filter.open", "admin.requests.flash.joined", "admin.keys.flash.revoked",
		"admin.operators.flash.password", "admin.role.reader", "admin.purposes.conflict", "admin.requests.extend.lede.ccpa"} {
		if _, ok := texts[k]; !ok {
			t.Errorf("no text %q", k)
		}
	}
}

// TestManageRequestsExport: staff answering a request received by mail
// download its package; the download is recorded with them as its reader.
func TestManageRequestsExport(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	ctx := context.Background()
	s.shopper(t, "u1", "ann@example.com")
	s.shopper(t, "u2", "bob@example.com")
	pat := s.newOperator(t, "pat@shop.example", "Pat Privacy", "another long passphrase", trustloop.RolePrivacy)
	b := s.signedIn(t, "pat@shop.example", "another long passphrase")
	p := b.post("/admin/requests", url.Values{"type": {"access"}, "identifier": {"email:ann@example.com"}})
	id := strings.TrimPrefix(p.Path, "/admin/requests/")
	if p := b.get("/admin/requests/" + id + "/export?format=json"); p.Status != http.StatusConflict || p.Header.Get("Content-Disposition") != "" {
		t.Fatalf("the export of an open request: %d %v", p.Status, p.Header)
	}
	mustPage(t, b.post("/admin/requests/"+id+"/verify", url.Values{}), 200, "")
	for {
		did, err := s.Privacy.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !did {
			break
		}
	}
	p = b.get("/admin/requests/" + id)
	if !strings.Contains(p.Body, `data-status="completed"`) || !strings.Contains(p.Body, id+"/export?format=json") {
		t.Fatalf("the completed request offers no download: %s", p.Body)
	}
	exp := b.get("/admin/requests/" + id + "/export?format=json")
	if exp.Status != 200 || !strings.Contains(exp.Body, "ann@example.com") || strings.Contains(exp.Body, "bob@example.com") {
		t.Fatalf("export: %d %.300s", exp.Status, exp.Body)
	}
	if h := b.get("/admin/requests/" + id + "/export?format=html"); h.Status != 200 || !strings.Contains(h.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("html export: %d %v", h.Status, h.Header)
	}
	r := s.api(t, "GET", "/v1/audit/entries", nil)
	if !strings.Contains(string(r.Body), `"kind":"data_use","actor":{"kind":"operator","id":"operator:`+itoa(pat.ID)+`"}`) {
		t.Errorf("the download is not recorded with the operator: %s", r.Body)
	}
	// A reader may not download it.
	s.newOperator(t, "rita@shop.example", "Rita Reader", "rita's long password", trustloop.RoleReader)
	rita := s.signedIn(t, "rita@shop.example", "rita's long password")
	if p := rita.get("/admin/requests/" + id + "/export?format=json"); p.Status != http.StatusForbidden || strings.Contains(p.Body, "ann@example.com") {
		t.Fatalf("a reader's download: %d", p.Status)
	}
	if p := rita.get("/admin/requests/" + id); strings.Contains(p.Body, "/export?format=") {
		t.Error("a reader is offered the download")
	}
	// Nor privacy staff whose purposes lack essential, the purpose the
	// package is read for.
	al := s.newOperator(t, "al@shop.example", "Al Analyst", "al's long passphrase!", trustloop.RolePrivacy)
	al.Purposes = []string{"analytics"}
	if err := s.Store.UpdateOperator(ctx, al); err != nil {
		t.Fatal(err)
	}
	alb := s.signedIn(t, "al@shop.example", "al's long passphrase!")
	if p := alb.get("/admin/requests/" + id + "/export?format=json"); p.Status != http.StatusForbidden || strings.Contains(p.Body, "ann@example.com") ||
		!strings.Contains(p.Body, "essential") {
		t.Fatalf("a download by privacy staff without essential: %d %.300s", p.Status, p.Body)
	}
}

// TestManageRequestsAllPages: the queue lists every open request, past the
// store's page of 1,000.
func TestManageRequestsAllPages(t *testing.T) {
	if testing.Short() {
		t.Skip("files 1,005 requests")
	}
	s := newServer(t, options{regime: "opt_in"})
	ctx := context.Background()
	actor := trustloop.AuditActor{Kind: trustloop.ActorAPIKey, ID: "key:1"}
	var last string
	for i := range 1005 {
		q, _, err := s.Privacy.Create(ctx, s.WS.ID, privacy.NewRequest{Type: "access", Identifier: "user_id:p" + itoa(int64(i)), Actor: actor})
		if err != nil {
			t.Fatal(err)
		}
		last = q.ID
		s.Clock.Add(time.Second) // each due a second after the one before
	}
	b := s.signedIn(t, adminKey)
	p := b.get("/admin/requests")
	mustPage(t, p, 200, "")
	if n := strings.Count(p.Body, `<tr id="row-`); n != 1005 || !strings.Contains(p.Body, `id="count-open">1005<`) {
		t.Fatalf("%d rows listed", n)
	}
	if !strings.Contains(rowOf(p.Body, last), last) || strings.LastIndex(p.Body, `<tr id="row-`) != strings.Index(p.Body, `<tr id="row-`+last) {
		t.Error("the last request is not listed last")
	}
}
