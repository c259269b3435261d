package demo_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/collect"
	"github.com/trustloop/trustloop/demo"
)

var now = time.Date(2026, 7, 5, 12, 0, 0, 0, time.UTC)

// tb is what the helpers need of a *testing.T or a *rapid.T.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

func build(t tb, at time.Time) *demo.Plan {
	t.Helper()
	p, err := demo.Build(at)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// decoded is one message as the collector decodes it, with its JSON.
type decoded struct {
	trustloop.Message
	customer int
	gpc      bool
	body     map[string]any
}

// decodeAll runs every batch through the collector's own decoder: what it
// refuses, the server refuses.
func decodeAll(t tb, p *demo.Plan, receivedAt time.Time) []decoded {
	t.Helper()
	var out []decoded
	for n, b := range p.Batches {
		body := b.Body()
		if len(b.Messages) > demo.MaxBatch || len(body) >= trustloop.MaxRequestBytes {
			t.Fatalf("batch %d: %d events, %d bytes", n, len(b.Messages), len(body))
		}
		req, err := collect.Decode(body, collect.Batch, collect.Options{ReceivedAt: receivedAt, GPC: b.GPC,
			NewID: func() string { t.Fatalf("batch %d: a message without messageId", n); return "" }})
		if err != nil {
			t.Fatalf("batch %d: the collector refuses it: %v", n, err)
		}
		for i, m := range req.Messages {
			var v map[string]any
			if err := json.Unmarshal(b.Messages[i], &v); err != nil {
				t.Fatal(err)
			}
			out = append(out, decoded{Message: m, customer: b.Customer, gpc: b.GPC, body: v})
		}
	}
	return out
}

func obj(v any, path ...string) map[string]any {
	m, _ := v.(map[string]any)
	for _, p := range path {
		m, _ = m[p].(map[string]any)
	}
	return m
}

type ottoEvent struct {
	AID  int64  `json:"aid"`
	TS   int64  `json:"ts"`
	Type string `json:"type"`
}

// sessions reads the data file as shipped (the package embeds the same file).
func sessions(t tb) [][]ottoEvent {
	t.Helper()
	f, err := os.ReadFile("data/sessions.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var out [][]ottoEvent
	sc := bufio.NewScanner(bytes.NewReader(f))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var s struct{ Events []ottoEvent }
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s.Events)
	}
	return out
}

// TestDemoEventsValid: every event is valid for the collector and follows
// Segment's e-commerce spec; every OTTO event is mapped.
func TestDemoEventsValid(t *testing.T) {
	p := build(t, now)
	msgs := decodeAll(t, p, now)
	if len(msgs) != p.Events {
		t.Fatalf("%d messages decoded, plan says %d", len(msgs), p.Events)
	}
	counts := map[string]int{}
	products := 0
	for _, m := range msgs {
		name := m.Type.String()
		if m.Type == trustloop.EventTrack {
			name = m.Event
		}
		counts[name]++
		if m.AnonymousID == "" {
			t.Fatalf("%s without anonymousId", m.MessageID)
		}
		ctx := obj(m.body, "context")
		if _, web := ctx["userAgent"]; web == (obj(ctx, "device")["id"] != nil) {
			t.Fatalf("%s: want userAgent on the web or device.id in an app: %v", m.MessageID, ctx)
		}
		props := obj(m.body, "properties")
		switch name {
		case demo.EventViewed, demo.EventAdded:
			id, _ := props["product_id"].(string)
			price, _ := props["price"].(float64)
			if id == "" || props["name"] != "Product "+id || price <= 0 || props["currency"] != "EUR" || props["category"] == "" {
				t.Fatalf("%s: properties %v", m.MessageID, props)
			}
		case demo.EventOrdered:
			items, _ := props["products"].([]any)
			sum := 0.0
			for _, it := range items {
				pr := obj(it)
				if _, ok := pr["product_id"].(string); !ok {
					t.Fatalf("%s: product %v", m.MessageID, pr)
				}
				sum += pr["price"].(float64)
			}
			products += len(items)
			if props["order_id"] == "" || len(items) == 0 || props["currency"] != "EUR" || math.Abs(sum-props["revenue"].(float64)) > 0.001 {
				t.Fatalf("%s: order %v", m.MessageID, props)
			}
		case "identify":
			email, _ := obj(m.body, "traits")["email"].(string)
			if m.UserID == "" || !strings.HasSuffix(email, "@example.com") {
				t.Fatalf("%s: identify %v", m.MessageID, m.body)
			}
		}
	}
	// 800 clicks, 52 carts and 10 order rows in 5 checkouts (README of the data).
	if counts[demo.EventViewed] != 800 || counts[demo.EventAdded] != 52 || counts[demo.EventOrdered] != 5 || products != 10 {
		t.Fatalf("mapped %v with %d ordered products; want 800 views, 52 adds, 5 orders of 10 products", counts, products)
	}
	if p.SessionEvents != 862 || counts["page"] == 0 || counts["screen"] == 0 || counts["identify"] == 0 || counts[demo.EventConsent] == 0 {
		t.Fatalf("session events %d, messages %v", p.SessionEvents, counts)
	}
}

// TestDemoCustomers: twenty customers, devices joined by identify, and the
// consent the brief asks for, as the collector reads it.
func TestDemoCustomers(t *testing.T) {
	p := build(t, now)
	msgs := decodeAll(t, p, now)
	if len(p.Customers) != 20 {
		t.Fatalf("%d customers", len(p.Customers))
	}
	anons := map[string]bool{}
	var identified, anonymous, noConsent, gpc, multi int
	for _, c := range p.Customers {
		if len(c.Devices) < 1 || len(c.Devices) > 3 {
			t.Fatalf("customer %d has %d devices", c.Index, len(c.Devices))
		}
		if len(c.Devices) > 1 {
			multi++
		}
		for _, d := range c.Devices {
			if anons[d.AnonymousID] {
				t.Fatalf("anonymousId shared: %s", d.AnonymousID)
			}
			anons[d.AnonymousID] = true
		}
		if c.UserID != "" {
			identified++
			if !strings.HasSuffix(c.Email, "@example.com") || c.FirstName == "" {
				t.Fatalf("customer %d: %q %q", c.Index, c.Email, c.FirstName)
			}
			// Every device of a signed-in customer sends identify with it.
			for _, d := range c.Devices {
				if !slices.ContainsFunc(msgs, func(m decoded) bool {
					return m.Type == trustloop.EventIdentify && m.UserID == c.UserID && m.AnonymousID == d.AnonymousID
				}) {
					t.Fatalf("customer %d: no identify joins device %s", c.Index, d.Name)
				}
			}
		} else {
			anonymous++
		}
		if c.Consent == nil {
			noConsent++
		}
		if c.GPC {
			gpc++
		}
	}
	if identified < 12 || anonymous < 2 || multi < 5 || noConsent < 2 || noConsent > 3 || gpc < 1 || gpc > 2 {
		t.Fatalf("identified %d, anonymous %d, on several devices %d, no consent %d, GPC %d", identified, anonymous, multi, noConsent, gpc)
	}
	refused := 0
	for _, m := range msgs {
		c := p.Customers[m.customer]
		if m.gpc != c.GPC || m.Consent.GPC != c.GPC {
			t.Fatalf("%s: GPC %v, customer's %v", m.MessageID, m.Consent.GPC, c.GPC)
		}
		if !mapsEqual(m.Consent.CategoryPreferences, c.Consent) {
			t.Fatalf("%s: categoryPreferences %v, customer's %v", m.MessageID, m.Consent.CategoryPreferences, c.Consent)
		}
		if m.UserID != "" && m.UserID != c.UserID {
			t.Fatalf("%s: another customer's userId", m.MessageID)
		}
		if m.Event == demo.EventConsent && m.Consent.CategoryPreferences["Advertising"] == false {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("nobody refuses marketing on the banner")
	}
	withdrawn, renewed := 0, 0
	for _, ch := range p.ConsentChanges {
		if v, ok := ch.Purposes[trustloop.PurposeMarketing]; ok && !v {
			withdrawn++
		} else if ok && v {
			renewed++
		}
		if p.Customers[ch.Customer].Email == "" {
			t.Fatalf("consent change for anonymous customer %d", ch.Customer)
		}
	}
	types := map[string]bool{}
	unverified := 0
	for _, r := range p.PrivacyRequests {
		types[r.Type] = true
		if !r.Verified {
			unverified++
		}
	}
	if withdrawn < 2 || renewed != 1 || !types[trustloop.RequestErasure] || !types[trustloop.RequestAccess] || unverified != 1 ||
		!(types[trustloop.RequestObjection] || types[trustloop.RequestRestriction]) {
		t.Fatalf("withdrawn %d, renewed %d, requests %v, unverified %d", withdrawn, renewed, types, unverified)
	}
	if pc := p.Customers[p.Portal]; pc.Email == "" || len(pc.Devices) < 2 {
		t.Fatalf("portal customer %d is anonymous or on one device", p.Portal)
	}
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestDemoDeterministic: the same now gives the same bytes; any now gives the
// same messageIds, unique and derived from the session.
func TestDemoDeterministic(t *testing.T) {
	a, b := build(t, now), build(t, now)
	for i := range a.Batches {
		if !bytes.Equal(a.Batches[i].Body(), b.Batches[i].Body()) {
			t.Fatalf("batch %d differs between two builds", i)
		}
	}
	ids := func(p *demo.Plan) []string {
		var out []string
		for _, m := range decodeAll(t, p, now) {
			out = append(out, m.MessageID)
		}
		return out
	}
	first := ids(a)
	later := ids(build(t, now.Add(41*24*time.Hour+3*time.Minute)))
	if !slices.Equal(first, later) {
		t.Fatal("messageIds depend on now: a second load would store events twice")
	}
	seen := map[string]bool{}
	for _, id := range first {
		if seen[id] || len(id) >= 100 || !strings.HasPrefix(id, "demo-") {
			t.Fatalf("messageId %q repeated or malformed", id)
		}
		seen[id] = true
	}
	for _, c := range a.Customers {
		if !seen[fmt.Sprintf("demo-%d-0000", c.Session)] {
			t.Fatalf("no messageId derived from session %d", c.Session)
		}
	}
}

// TestDemoTimes: for any now, every event lies in the 28 days before it and
// never after it, and each session keeps the rhythm of its real events.
func TestDemoTimes(t *testing.T) {
	otto := sessions(t)
	rapid.Check(t, func(rt *rapid.T) {
		at := time.UnixMilli(rapid.Int64Range(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli(),
			time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()).Draw(rt, "now")).UTC()
		p := build(rt, at)
		msgs := decodeAll(rt, p, at)
		starts := map[string]bool{}
		real := make([][]decoded, len(p.Customers))
		for _, m := range msgs {
			if m.Timestamp.Before(at.Add(-demo.Window)) || !m.Timestamp.Before(at) {
				rt.Fatalf("%s at %s: outside the 28 days before %s", m.MessageID, m.Timestamp, at)
			}
			if m.Type == trustloop.EventTrack && m.Event != demo.EventConsent {
				real[m.customer] = append(real[m.customer], m)
			}
		}
		for i, evs := range otto {
			// One Order Completed per checkout: the order rows sharing a time.
			var want []ottoEvent
			for k, e := range evs {
				if e.Type == "orders" && k > 0 && evs[k-1].Type == "orders" && evs[k-1].TS == e.TS {
					continue
				}
				want = append(want, e)
			}
			got := real[i]
			if len(got) != len(want) {
				rt.Fatalf("customer %d: %d product events for %d in the session", i, len(got), len(want))
			}
			for k := range want {
				d := got[k].Timestamp.Sub(got[0].Timestamp).Milliseconds()
				if w := want[k].TS - want[0].TS; d != w {
					rt.Fatalf("customer %d event %d: %d ms after the first, in the session %d ms", i, k, d, w)
				}
			}
			starts[got[0].Timestamp.Format(time.DateOnly)] = true
		}
		if len(starts) < 5 {
			rt.Fatalf("the sessions start on only %d days", len(starts))
		}
	})
}

// fakeServer answers like Trustloop's API, keeping what it was sent.
type fakeServer struct {
	mu       sync.Mutex
	t        *testing.T
	plan     *demo.Plan
	stored   map[string]bool // messageIds
	dups     int
	consents []string
	requests []map[string]any
	polls    int
	portal   bool
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	bearer := r.Header.Get("Authorization") == "Bearer admin-key"
	switch {
	case r.Method == "POST" && r.URL.Path == "/v1/batch":
		if u, pw, ok := r.BasicAuth(); !ok || u != "write-key" || pw != "" {
			w.WriteHeader(401)
			return
		}
		req, err := collect.Decode(body, collect.Batch, collect.Options{ReceivedAt: time.Now(), GPC: r.Header.Get("Sec-GPC") == "1"})
		if err != nil {
			f.t.Errorf("batch refused: %v", err)
			w.WriteHeader(400)
			return
		}
		for _, m := range req.Messages {
			if f.stored[m.MessageID] {
				f.dups++
			}
			f.stored[m.MessageID] = true
		}
		fmt.Fprint(w, `{"success":true}`)
	case !bearer:
		w.WriteHeader(401)
		fmt.Fprint(w, `{"error":{"code":"unauthorized","message":"Unknown API key."}}`)
	case r.Method == "GET" && r.URL.Path == "/v1/profiles/lookup":
		id := r.URL.Query().Get("identifier")
		if r.URL.Query().Get("purpose") != "essential" || !strings.HasPrefix(id, "email:") {
			w.WriteHeader(400)
			return
		}
		fmt.Fprintf(w, `{"profile_id":"%d"}`, len(id))
	case r.Method == "PUT" && strings.HasPrefix(r.URL.Path, "/v1/profiles/") && strings.HasSuffix(r.URL.Path, "/consent"):
		f.consents = append(f.consents, string(body))
		fmt.Fprint(w, `{"receipt_id":"rcpt_x"}`)
	case r.Method == "POST" && r.URL.Path == "/v1/privacy-requests":
		var v map[string]any
		json.Unmarshal(body, &v)
		f.requests = append(f.requests, v)
		w.WriteHeader(201)
		fmt.Fprintf(w, `{"request_id":"prq_%d","status":"verified"}`, len(f.requests))
	case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/v1/privacy-requests/"):
		f.polls++
		status := "in_progress"
		if f.polls > 2 {
			status = "completed"
		}
		fmt.Fprintf(w, `{"status":%q}`, status)
	case r.Method == "POST" && r.URL.Path == "/v1/portal/sessions" && f.portal:
		w.WriteHeader(201)
		fmt.Fprint(w, `{"url":"/portal/s/tok","expires_at":"2026-07-05T12:15:00Z"}`)
	default:
		w.WriteHeader(404)
		fmt.Fprint(w, `{"error":{"code":"not_found","message":"No such path."}}`)
	}
}

// TestDemoLoad runs Load against a fake of the API: the right keys and
// headers, every event once, and a second load storing nothing new.
func TestDemoLoad(t *testing.T) {
	f := &fakeServer{t: t, plan: build(t, now), stored: map[string]bool{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	cfg := demo.Config{BaseURL: srv.URL, WriteKey: "write-key", AdminKey: "admin-key", Now: func() time.Time { return now }}
	sum, err := demo.Load(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Customers != 20 || sum.EventsSent != f.plan.Events || len(f.stored) != f.plan.Events || f.dups != 0 ||
		sum.ConsentChanges != len(f.consents) || sum.PrivacyRequests != len(f.requests) || sum.HTTPRequests == 0 ||
		!strings.HasPrefix(sum.PortalIdentifier, "email:") {
		t.Fatalf("summary %+v; stored %d, duplicates %d", sum, len(f.stored), f.dups)
	}
	if f.polls < 3 {
		t.Fatalf("the erasure was not waited for (%d polls)", f.polls)
	}
	if !slices.ContainsFunc(f.requests, func(v map[string]any) bool { return v["verified"] == false }) {
		t.Fatalf("no unverified request: %v", f.requests)
	}
	if _, err := demo.Load(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if len(f.stored) != f.plan.Events || f.dups != f.plan.Events {
		t.Fatalf("second load: %d stored, %d repeats of %d", len(f.stored), f.dups, f.plan.Events)
	}

	// The portal may not exist yet: no link, no error.
	if u, _, err := demo.PortalLink(context.Background(), cfg, sum.PortalIdentifier); u != "" || err != nil {
		t.Fatalf("portal link without a portal: %q, %v", u, err)
	}
	f.portal = true
	if u, exp, err := demo.PortalLink(context.Background(), cfg, sum.PortalIdentifier); u != "/portal/s/tok" || exp.IsZero() || err != nil {
		t.Fatalf("portal link: %q %v %v", u, exp, err)
	}

	// Errors carry the server's code and name the step, never an identifier.
	cfg.AdminKey = "wrong"
	_, err = demo.Load(context.Background(), cfg)
	if trustloop.ErrorCode(err) != trustloop.EUNAUTHORIZED || strings.Contains(err.Error(), "@") || strings.Contains(describe(err), "example.com") {
		t.Fatalf("with a wrong admin key: %v", err)
	}
}

func describe(err error) string {
	var e *trustloop.Error
	if errors.As(err, &e) {
		return e.Message + " " + e.Hint
	}
	return err.Error()
}
