package main_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trustloop/trustloop/demo"
)

var noRedirect = &http.Client{Timeout: 10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// waitLog waits for a JSON log line with the message msg.
func waitLog(t *testing.T, s *server, msg string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		for _, line := range strings.Split(s.log(), "\n") {
			var rec struct{ Msg string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == msg {
				return
			}
		}
		select {
		case <-s.exited:
			t.Fatalf("trustloop exited before logging %q:\n%s", msg, s.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", msg, s.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lookup reads a customer's profile through the API (200) or says it has none.
func lookup(t *testing.T, s *server, identifier, purpose string) (int, map[string]any) {
	t.Helper()
	return api(t, s, "GET", "/v1/profiles/lookup?purpose="+purpose+"&identifier="+url.QueryEscape(identifier), nil)
}

// TestDemoEndToEnd: `serve --demo` on an empty SQLite store loads the demo
// through the API, and a restart with --demo loads nothing twice.
func TestDemoEndToEnd(t *testing.T) {
	dataDir := t.TempDir()
	// --regime opt_in wins over the harness's TRUSTLOOP_REGIME=opt_out: the
	// demo shows the default regime, where no consent means dropped events.
	s := start(t, dataDir, "--demo", "--regime", "opt_in")
	waitLog(t, s, "demo ready")
	plan, err := demo.Build(time.Now())
	if err != nil {
		t.Fatal(err)
	}

	// Profiles exist, and one joins several devices.
	most, profiles := 0, 0
	marketing := map[string]int{}
	analytics := map[bool]int{}
	for _, c := range plan.Customers {
		if c.Email == "" {
			continue
		}
		code, v := lookup(t, s, c.Identifier(), "essential")
		if slices.ContainsFunc(plan.PrivacyRequests, func(r demo.PrivacyRequest) bool { return r.Customer == c.Index && r.Type == "erasure" }) {
			if code != 404 {
				t.Fatalf("the erased customer %d is still found: %d", c.Index, code)
			}
			continue
		}
		if code != 200 {
			t.Fatalf("lookup of customer %d: %d %v", c.Index, code, v)
		}
		profiles++
		ps := purposesOf(t, v)
		marketing[ps["marketing"]["state"].(string)]++
		analytics[ps["analytics"]["allowed"] == true]++
		if code, v := lookup(t, s, c.Identifier(), "analytics"); code == 200 {
			anons := 0
			for _, id := range v["identities"].([]any) {
				if id.(map[string]any)["type"] == "anonymous_id" {
					anons++
				}
			}
			most = max(most, anons)
		}
	}
	if profiles < 10 || most < 2 {
		t.Fatalf("%d profiles found by email; at most %d devices on one", profiles, most)
	}
	// Consent differs between customers: given, withdrawn, refused (banner
	// and GPC), never asked; some allow analytics, some do not.
	if marketing["given"] == 0 || marketing["withdrawn"] < 2 || marketing["refused"] == 0 || len(marketing) < 4 ||
		analytics[true] == 0 || analytics[false] == 0 {
		t.Fatalf("marketing states %v, analytics allowed %v", marketing, analytics)
	}
	t.Logf("%d profiles, up to %d devices on one; marketing %v; analytics allowed %v", profiles, most, marketing, analytics)
	// Under opt_in the events of customers who never chose are dropped.
	if d := droppedNoConsent(t, s); d < 10 {
		t.Fatalf("%v events dropped for lack of consent", d)
	}
	// The privacy requests: the erasure completed, one awaits verification.
	code, v := api(t, s, "GET", "/v1/privacy-requests?limit=50", nil)
	if code != 200 {
		t.Fatalf("privacy requests: %d %v", code, v)
	}
	status := map[string]string{}
	for _, r := range v["data"].([]any) {
		r := r.(map[string]any)
		status[r["type"].(string)] = r["status"].(string)
	}
	if len(status) != len(plan.PrivacyRequests) || status["erasure"] != "completed" || status["portability"] != "received" {
		t.Fatalf("privacy requests %v", status)
	}
	if !strings.Contains(s.log(), "/admin") {
		t.Fatalf("no admin console link printed:\n%s", s.log())
	}
	// The preference-center link (--demo turns profiles, so the portal, on)
	// opens it.
	_, link, ok := strings.Cut(s.log(), "Preference center: ")
	if !ok {
		t.Fatalf("no preference-center link printed:\n%s", s.log())
	}
	{
		link, _, _ = strings.Cut(link, "\n")
		res, err := noRedirect.Get(strings.TrimSpace(link))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusSeeOther {
			t.Fatalf("the printed preference-center link answered %d", res.StatusCode)
		}
	}
	s.stop()
	first := stats(t, dataDir)
	if first["events"] < 900 || first["profiles"] < 10 {
		t.Fatalf("stats after the demo: %v", first)
	}

	// A restart with --demo sends nothing again.
	s = start(t, dataDir, "--demo", "--regime", "opt_in")
	waitLog(t, s, "demo already loaded")
	s.stop()
	again := stats(t, dataDir)
	for _, k := range []string{"events", "profiles", "identities", "consent_records"} {
		if again[k] != first[k] {
			t.Fatalf("%s: %v after the first start, %v after the second", k, first[k], again[k])
		}
	}
}

// TestDemoLaterStart: --demo on a workspace made by an earlier start without
// it loads the demo with an admin key of its own, revoked afterwards.
func TestDemoLaterStart(t *testing.T) {
	dataDir := t.TempDir()
	s := start(t, dataDir, "--regime", "opt_in")
	s.stop()
	s = start(t, dataDir, "--demo")
	waitLog(t, s, "demo ready")
	code, v := api(t, s, "GET", "/v1/api-keys", nil)
	if code != 200 {
		t.Fatalf("api keys: %d %v", code, v)
	}
	revoked := 0
	for _, k := range v["data"].([]any) {
		k := k.(map[string]any)
		if k["name"] == "demo loader" && k["revoked_at"] != nil {
			revoked++
		}
	}
	if revoked != 1 {
		t.Fatalf("want the demo's own admin key, revoked: %v", v["data"])
	}
	s.stop()
	if st := stats(t, dataDir); st["events"] < 900 {
		t.Fatalf("stats: %v", st)
	}
}
