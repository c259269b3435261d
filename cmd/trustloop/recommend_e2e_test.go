package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trustloop/trustloop/postgres/pgtest"
)

// The recommender end to end, on the real binary under the opt-in regime:
// only consented data teaches it, a withdrawal or an erasure leaves exactly
// the model a rebuild from the log gives, explanations name only the
// customer's own allowed items, and each personalized answer is a recorded use.
func TestRecommendEndToEnd(t *testing.T) { recommendEndToEnd(t) }

// TestRecommendEndToEndPostgres is the same on PostgreSQL.
func TestRecommendEndToEndPostgres(t *testing.T) {
	recommendEndToEnd(t, "--database-url", pgtest.Schema(t, "PostgreSQL recommender end-to-end test"))
}

// shopper sends one customer's events.
type shopper struct {
	t    *testing.T
	s    *server
	user string
	n    int
}

func (p *shopper) send(msgs ...string) {
	p.t.Helper()
	postBatchWith(p.t, p.s.url, msgs)
}

// banner reports the customer's choice through the collector.
func (p *shopper) banner(prefs string) {
	p.n++
	p.send(fmt.Sprintf(`{"type":"track","messageId":"b-%s-%d","userId":%q,"event":"Segment Consent Preference Updated","context":{"consent":{"categoryPreferences":%s}}}`,
		p.user, p.n, p.user, prefs))
}

// views sends product views (and an order of the last one when ordered).
func (p *shopper) views(items ...string) {
	var msgs []string
	for _, it := range items {
		p.n++
		msgs = append(msgs, fmt.Sprintf(`{"type":"track","messageId":"v-%s-%d","userId":%q,"event":"Product Viewed","properties":{"product_id":%q}}`,
			p.user, p.n, p.user, it))
	}
	p.send(msgs...)
}

func (p *shopper) order(items ...string) {
	p.n++
	var prods []string
	for _, it := range items {
		prods = append(prods, fmt.Sprintf(`{"product_id":%q}`, it))
	}
	p.send(fmt.Sprintf(`{"type":"track","messageId":"o-%s-%d","userId":%q,"event":"Order Completed","properties":{"products":[%s]}}`,
		p.user, p.n, p.user, strings.Join(prods, ",")))
}

func profileID(t *testing.T, s *server, user string) string {
	t.Helper()
	code, v := api(t, s, "GET", "/v1/profiles/lookup?purpose=essential&identifier="+url.QueryEscape("user_id:"+user), nil)
	if code != 200 {
		t.Fatalf("lookup %s: %d %v", user, code, v)
	}
	return v["profile_id"].(string)
}

func recsRaw(t *testing.T, s *server, id string) string {
	t.Helper()
	code, raw := apiRaw(t, s, "GET", "/v1/profiles/"+id+"/recommendations?limit=20", nil)
	if code != 200 {
		t.Fatalf("recommendations of %s: %d %s", id, code, raw)
	}
	return string(raw)
}

// settled waits until no subject waits to be read back, and returns the
// model's description.
func settled(t *testing.T, s *server) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, v := api(t, s, "GET", "/v1/recommender/model?digest=true", nil)
		if code != 200 {
			t.Fatalf("GET /v1/recommender/model: %d %v", code, v)
		}
		if v["pending"] == float64(0) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("the recommender did not settle: %v", v)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func recommendEndToEnd(t *testing.T, extra ...string) {
	dataDir := t.TempDir()
	// No time decay: answers do not move with the clock, so they can be
	// compared byte for byte.
	args := append([]string{"--profiles", "--regime", "opt_in", "--rec-half-life", "0", "--rec-min-support", "1"}, extra...)
	s := start(t, dataDir, args...)
	run := randomHex(4)
	yes := `{"Analytics":true,"Personalization":true}`
	who := func(name string) *shopper { return &shopper{t: t, s: s, user: name + "-" + run} }
	alice, bob, carol, mallory, dora := who("alice"), who("bob"), who("carol"), who("mallory"), who("dora")
	for _, p := range []*shopper{alice, bob, carol, dora} {
		p.banner(yes)
	}
	alice.views("p1", "p2", "p3")
	bob.views("p1", "p2", "p4")
	bob.order("p4")
	carol.views("p2", "p3", "p5")
	dora.views("p5", "p6")
	ids := map[*shopper]string{}
	for _, p := range []*shopper{alice, bob, carol, dora} {
		ids[p] = profileID(t, s, p.user)
	}
	answers := func() map[string]string {
		out := map[string]string{}
		for _, p := range []*shopper{alice, bob, carol, dora} {
			out[p.user] = recsRaw(t, s, ids[p])
		}
		for _, it := range []string{"p1", "p2", "p3", "p4", "p5", "p6"} {
			_, raw := apiRaw(t, s, "GET", "/v1/items/"+it+"/similar?limit=20", nil)
			out[it] = string(raw)
		}
		return out
	}
	before := answers()
	if !strings.Contains(before[alice.user], `"personalized":true`) || !strings.Contains(before[alice.user], `"p4"`) {
		t.Fatalf("alice's recommendations: %s", before[alice.user])
	}
	// Bought items are left out of the buyer's own recommendations.
	if strings.Contains(before[bob.user], `"item_id":"p4","score"`) {
		t.Fatalf("bob is recommended what he bought: %s", before[bob.user])
	}

	// Mallory allows analytics, not personalization, and views everything
	// together: no one's recommendations or similar items change.
	mallory.banner(`{"Analytics":true,"Personalization":false}`)
	mallory.views("p1", "p6", "p4", "p3", "p5", "p2", "p7")
	mallory.order("p6", "p1")
	if after := answers(); fmt.Sprint(after) != fmt.Sprint(before) {
		for k := range before {
			if before[k] != after[k] {
				t.Errorf("%s changed after a customer without personalization consent shopped:\nbefore %s\nafter  %s", k, before[k], after[k])
			}
		}
		t.FailNow()
	}
	mid := profileID(t, s, mallory.user)
	if raw := recsRaw(t, s, mid); !strings.Contains(raw, `"personalized":false`) || !strings.Contains(raw, `"reason":"not_allowed"`) {
		t.Fatalf("mallory's own answer: %s", raw)
	}
	// Her views count in popularity (analytics): p1 is now seen by three.
	if raw := recsRaw(t, s, mid); !strings.Contains(raw, `{"item_id":"p1","score":3,"because":[]}`) {
		t.Fatalf("popular items do not count analytics-allowed views: %s", raw)
	}

	// A weighted event without a product id teaches nothing and is counted.
	alice.n++
	alice.send(fmt.Sprintf(`{"type":"track","messageId":"np-%s","userId":%q,"event":"Product Viewed","properties":{"name":"no id"}}`, alice.user, alice.user))
	if n := metricValue(t, s, `trustloop_recommend_ignored_total{reason="no_product_id"}`); n != 1 {
		t.Fatalf("events without a product id counted %v, want 1", n)
	}

	// Explanations name only the customer's own items collected while
	// personalization was allowed: erin viewed p6 under analytics only.
	erin := who("erin")
	erin.banner(`{"Analytics":true,"Personalization":false}`)
	erin.views("p6")
	erin.banner(yes)
	erin.views("p1")
	eid := profileID(t, s, erin.user)
	raw := recsRaw(t, s, eid)
	if !strings.Contains(raw, `"personalized":true`) {
		t.Fatalf("erin's answer: %s", raw)
	}
	var er struct {
		Items []struct {
			ItemID  string `json:"item_id"`
			Because []struct {
				ItemID string `json:"item_id"`
			} `json:"because"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(raw), &er); err != nil || len(er.Items) == 0 {
		t.Fatalf("erin's answer: %v %s", err, raw)
	}
	for _, it := range er.Items {
		for _, b := range it.Because {
			if b.ItemID != "p1" {
				t.Fatalf("an explanation names %s, which erin did not view with personalization allowed: %s", b.ItemID, raw)
			}
		}
		if it.ItemID == "p5" {
			t.Fatalf("p5 (co-viewed with p6 only) is recommended to erin through her analytics-only view: %s", raw)
		}
	}
	// Each personalized answer is a recorded data use; a fallback is not.
	if code, v := api(t, s, "GET", "/v1/profiles/"+eid+"/data-uses", nil); code != 200 || !strings.Contains(fmt.Sprint(v), "/v1/profiles/{id}/recommendations") ||
		!strings.Contains(fmt.Sprint(v), "personalization") {
		t.Fatalf("data uses of erin: %d %v", code, v)
	}
	if code, v := api(t, s, "GET", "/v1/profiles/"+mid+"/data-uses", nil); code != 200 || strings.Contains(fmt.Sprint(v), "recommendations") {
		t.Fatalf("a fallback answer was recorded as a use of mallory's data: %d %v", code, v)
	}

	// Bad input.
	for _, c := range []struct {
		path string
		code int
	}{
		{"/v1/profiles/999999/recommendations", 404},
		{"/v1/profiles/abc/recommendations", 400},
		{"/v1/profiles/" + eid + "/recommendations?limit=0", 400},
		{"/v1/profiles/" + eid + "/recommendations?limit=101", 400},
		{"/v1/profiles/" + eid + "/recommendations?purpose=marketing", 400},
		{"/v1/items/nope/similar", 404},
		{"/v1/items/p1/similar?limit=x", 400},
		{"/v1/items/p1/similar?purpose=marketing", 400},
		{"/v1/items/" + strings.Repeat("x", 201) + "/similar", 400},
	} {
		if code, raw := apiRaw(t, s, "GET", c.path, nil); code != c.code || !strings.Contains(string(raw), `"message"`) {
			t.Errorf("GET %s: %d %s, want %d with an error body", c.path, code, raw, c.code)
		}
	}
	code, key := api(t, s, "POST", "/v1/api-keys", map[string]any{"name": "analytics only", "roles": []string{"reader"}, "purposes": []string{"analytics"}})
	if code != 201 {
		t.Fatalf("create key: %d %v", code, key)
	}
	req, _ := http.NewRequest("GET", s.url+"/v1/profiles/"+eid+"/recommendations", nil)
	req.Header.Set("Authorization", "Bearer "+key["secret"].(string))
	if res, err := client.Do(req); err != nil || res.StatusCode != 403 {
		t.Fatalf("a key without personalization got %v %v, want 403", res.StatusCode, err)
	}
	req, _ = http.NewRequest("GET", s.url+"/v1/items/p1/similar", nil)
	req.Header.Set("Authorization", "Bearer "+key["secret"].(string))
	if res, err := client.Do(req); err != nil || res.StatusCode != 403 {
		t.Fatalf("a key without personalization read similar items: %v %v, want 403", res.StatusCode, err)
	}
	if code, v := api(t, s, "GET", "/v1/recommender/model", nil, "Authorization", "Bearer "+key["secret"].(string)); code != 403 {
		t.Fatalf("a non-admin key read the model description: %d %v", code, v)
	}

	// Alice withdraws personalization: the model loses exactly her part, and a
	// restart (the model rebuilt from the log) gives the same model.
	m0 := settled(t, s)
	if code, v := api(t, s, "PUT", "/v1/profiles/"+ids[alice]+"/consent", map[string]any{"purposes": map[string]bool{"personalization": false}, "method": "api"}); code != 200 {
		t.Fatalf("withdraw: %d %v", code, v)
	}
	m1 := settled(t, s)
	if m1["digest"] == m0["digest"] {
		t.Fatalf("the model did not change when alice withdrew: %v", m1)
	}
	if raw := recsRaw(t, s, ids[alice]); !strings.Contains(raw, `"reason":"not_allowed"`) {
		t.Fatalf("alice after withdrawing: %s", raw)
	}
	// p1–p3 co-occurred only through alice (bob: p1 p2 p4; carol: p2 p3 p5).
	if _, raw := apiRaw(t, s, "GET", "/v1/items/p1/similar?limit=20", nil); strings.Contains(string(raw), `"p3"`) {
		t.Fatalf("p1 is still similar to p3 after alice withdrew: %s", raw)
	}
	s.stop()
	s = start(t, dataDir, args...)
	if m := settled(t, s); m["digest"] != m1["digest"] {
		t.Fatalf("after a restart (rebuilt from the log) the model is %v, before it was %v", m, m1)
	}

	// Bob is erased: the same holds.
	code, r := api(t, s, "POST", "/v1/privacy-requests", map[string]any{"type": "erasure", "identifier": "user_id:" + bob.user})
	if code != 201 {
		t.Fatalf("POST erasure: %d %v", code, r)
	}
	if done := waitRequest(t, s, r["request_id"].(string)); done["status"] != "completed" {
		t.Fatalf("erasure ended %v", done)
	}
	m2 := settled(t, s)
	if m2["digest"] == m1["digest"] {
		t.Fatalf("the model did not change when bob was erased")
	}
	if _, raw := apiRaw(t, s, "GET", "/v1/items/p4/similar", nil); !strings.Contains(string(raw), "not_found") {
		t.Fatalf("p4 (met by bob alone among consenting customers) is still known: %s", raw)
	}
	s.stop()
	s = start(t, dataDir, args...)
	if m := settled(t, s); m["digest"] != m2["digest"] || m["subjects"] != m2["subjects"] {
		t.Fatalf("after a restart the model is %v, before it was %v", m, m2)
	}
	// Alice says yes again: her events collected with personalization return.
	if code, v := api(t, s, "PUT", "/v1/profiles/"+ids[alice]+"/consent", map[string]any{"purposes": map[string]bool{"personalization": true}, "method": "api"}); code != 200 {
		t.Fatalf("consent again: %d %v", code, v)
	}
	m3 := settled(t, s)
	if raw := recsRaw(t, s, ids[alice]); !strings.Contains(raw, `"personalized":true`) {
		t.Fatalf("alice after saying yes again: %s", raw)
	}
	s.stop()
	s = start(t, dataDir, args...)
	if m := settled(t, s); m["digest"] != m3["digest"] {
		t.Fatalf("after a restart the model is %v, before it was %v", m, m3)
	}
	if len(extra) == 0 {
		s.stop()
		return
	}
	// PostgreSQL, two nodes: carol is erased through the second while the
	// first is down; the first, started again, has the second's model.
	other := start(t, t.TempDir(), append(args, "--master-key-file", dataDir+"/master.key")...)
	if mb := settled(t, other); mb["digest"] != m3["digest"] {
		t.Fatalf("a second node built %v from the log, the first had %v", mb, m3)
	}
	s.stop()
	code, r = api(t, other, "POST", "/v1/privacy-requests", map[string]any{"type": "erasure", "identifier": "user_id:" + carol.user})
	if code != 201 {
		t.Fatalf("POST erasure: %d %v", code, r)
	}
	if done := waitRequest(t, other, r["request_id"].(string)); done["status"] != "completed" {
		t.Fatalf("erasure ended %v", done)
	}
	m4 := settled(t, other)
	if m4["digest"] == m3["digest"] {
		t.Fatal("the second node's model did not change when carol was erased")
	}
	s = start(t, dataDir, args...)
	if m := settled(t, s); m["digest"] != m4["digest"] {
		t.Fatalf("the first node, started after an erasure while it was down, has %v; the second %v", m, m4)
	}
	s.stop()
	other.stop()
}

// metricValue reads one sample of the server's /metrics (0 when absent).
func metricValue(t *testing.T, s *server, sample string) float64 {
	t.Helper()
	res, err := client.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// An erased customer's event sealed under another identifier's key, which
// others' events share (an anonymous id kept out of her profile by the limit
// of five): the erasure deletes it, and the model reads that key back without
// it.
func TestRecommendErasureUnderSharedKey(t *testing.T) {
	dataDir := t.TempDir()
	args := []string{"--profiles", "--regime", "opt_out", "--rec-half-life", "0", "--rec-min-support", "1"}
	s := start(t, dataDir, args...)
	run := randomHex(4)
	alice, email := "alice-"+run, "alice-"+run+"@example.com"
	var first []string
	for i := 1; i <= 5; i++ {
		first = append(first, fmt.Sprintf(`{"type":"identify","messageId":"i%d-%s","userId":%q,"anonymousId":"an%d-%s","traits":{"email":%q}}`, i, run, alice, i, run, email))
	}
	first = append(first, fmt.Sprintf(`{"type":"track","messageId":"a1-%s","userId":%q,"event":"Product Viewed","properties":{"product_id":"p1"}}`, run, alice))
	postBatchWith(t, s.url, first)
	postBatchWith(t, s.url, []string{fmt.Sprintf(`{"type":"track","messageId":"x1-%s","anonymousId":"an6-%s","event":"Product Viewed","properties":{"product_id":"p9"},"context":{"traits":{"email":%q}}}`, run, run, email)})
	postBatchWith(t, s.url, []string{fmt.Sprintf(`{"type":"track","messageId":"b1-%s","anonymousId":"an6-%s","event":"Product Viewed","properties":{"product_id":"p2"}}`, run, run)})
	if _, raw := apiRaw(t, s, "GET", "/v1/items/p9/similar", nil); !strings.Contains(string(raw), `"p2"`) {
		t.Fatalf("before the erasure p9 should be similar to p2: %s", raw)
	}
	code, r := api(t, s, "POST", "/v1/privacy-requests", map[string]any{"type": "erasure", "identifier": "email:" + email})
	if code != 201 {
		t.Fatalf("POST erasure: %d %v", code, r)
	}
	if done := waitRequest(t, s, r["request_id"].(string)); done["status"] != "completed" {
		t.Fatalf("erasure ended %v", done)
	}
	m1 := settled(t, s)
	if _, raw := apiRaw(t, s, "GET", "/v1/items/p9/similar", nil); !strings.Contains(string(raw), "not_found") {
		t.Fatalf("p9, viewed only by the erased customer, is still known: %s", raw)
	}
	s.stop()
	s = start(t, dataDir, args...)
	if m := settled(t, s); m["digest"] != m1["digest"] {
		t.Fatalf("after the erasure the model %v differs from the rebuild %v", m1, m)
	}
	s.stop()
}

// The workspace moves from opt-out to opt-in: customers who never chose no
// longer teach the model, at once, as a restart would find.
func TestRecommendRegimeChange(t *testing.T) {
	dataDir := t.TempDir()
	args := []string{"--profiles", "--regime", "opt_out", "--rec-half-life", "0", "--rec-min-support", "1"}
	s := start(t, dataDir, args...)
	run := randomHex(4)
	var msgs []string
	for _, u := range []string{"alice", "bob"} {
		for i, it := range []string{"p1", "p2"} {
			msgs = append(msgs, fmt.Sprintf(`{"type":"track","messageId":"%s%d-%s","userId":"%s-%s","event":"Product Viewed","properties":{"product_id":%q}}`, u, i, run, u, run, it))
		}
	}
	postBatchWith(t, s.url, msgs)
	if m := settled(t, s); m["subjects"] != float64(2) {
		t.Fatalf("model before: %v", m)
	}
	code, cat := api(t, s, "GET", "/v1/purposes", nil)
	if code != 200 {
		t.Fatalf("GET /v1/purposes: %d", code)
	}
	cat["regime"] = "opt_in"
	if code, v := api(t, s, "PUT", "/v1/purposes", cat); code != 200 {
		t.Fatalf("PUT /v1/purposes: %d %v", code, v)
	}
	m1 := settled(t, s)
	if m1["subjects"] != float64(0) {
		t.Fatalf("after the move to opt-in the model still learns from customers who never chose: %v", m1)
	}
	s.stop()
	s = start(t, dataDir, args...)
	if m := settled(t, s); m["digest"] != m1["digest"] {
		t.Fatalf("after the regime change the model %v differs from the rebuild %v", m1, m)
	}
	s.stop()
}
