package main_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trustloop/trustloop/postgres/pgtest"
)

// api calls the server's API with the bootstrap admin key.
func api(t *testing.T, s *server, method, path string, body any, headers ...string) (int, map[string]any) {
	t.Helper()
	code, raw := apiRaw(t, s, method, path, body, headers...)
	var v map[string]any
	json.Unmarshal(raw, &v)
	return code, v
}

// apiRaw calls the API with the admin key and returns the raw body.
func apiRaw(t *testing.T, s *server, method, path string, body any, headers ...string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.url+path, rd)
	req.Header.Set("Authorization", "Bearer e2e-admin-key-0123456789")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, raw
}

// postBatchWith posts a batch with extra headers (Sec-GPC).
func postBatchWith(t *testing.T, url string, msgs []string, headers ...string) {
	t.Helper()
	body := `{"batch":[` + strings.Join(msgs, ",") + `]}`
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/batch", strings.NewReader(body))
	req.SetBasicAuth(writeKey, "")
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("batch answered %d: %s", res.StatusCode, b)
	}
}

func droppedNoConsent(t *testing.T, s *server) float64 {
	t.Helper()
	return metricValue(t, s, `trustloop_events_dropped_total{reason="no_consent"}`)
}

func stats(t *testing.T, dataDir string) map[string]float64 {
	t.Helper()
	out, err := runCmd(t, "stats", "--data-dir", dataDir)
	if err != nil {
		t.Fatalf("stats: %v\n%s", err, out)
	}
	var v map[string]float64
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("stats printed %q", out)
	}
	return v
}

func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	err := cmd.Run()
	return out.String(), err
}

func viewed(run string, i int, user string, extra string) string {
	return fmt.Sprintf(`{"type":"track","messageId":"v-%s-%d","userId":%q,"event":"Product Viewed","properties":{"product_id":"p-%d","category":"Shoes"}%s}`,
		run, i, user, i, extra)
}

func purposesOf(t *testing.T, v map[string]any) map[string]map[string]any {
	t.Helper()
	c, _ := v["consent"].(map[string]any)
	if c == nil {
		c = v
	}
	ps, _ := c["purposes"].(map[string]any)
	out := map[string]map[string]any{}
	for k, x := range ps {
		out[k], _ = x.(map[string]any)
	}
	return out
}

// TestConsentEndToEnd walks T1–T4 through HTTP on a real server in the opt-in
// regime (the bootstrap default).
func TestConsentEndToEnd(t *testing.T) { consentEndToEnd(t) }

// TestConsentEndToEndPostgres is the same on PostgreSQL (stored consent is then
// read afresh for every read: other nodes may change it).
func TestConsentEndToEndPostgres(t *testing.T) {
	consentEndToEnd(t, "--database-url", pgtest.Schema(t, "PostgreSQL consent end-to-end test"))
}

func consentEndToEnd(t *testing.T, extra ...string) {
	dataDir := t.TempDir()
	s := start(t, dataDir, append([]string{"--profiles", "--regime", "opt_in"}, extra...)...)
	pg := len(extra) > 0
	run := randomHex(4)
	user := "consent-" + run

	// T1/T2: nothing chosen yet under opt-in: a product view serves no purpose
	// and is not stored; the identify is contact data the contract may use.
	before := droppedNoConsent(t, s)
	postBatchWith(t, s.url, []string{
		fmt.Sprintf(`{"type":"identify","messageId":"i-%s","userId":%q,"traits":{"email":"c-%s@example.com","first_name":"Ada"}}`, run, user, run),
		viewed(run, 1, user, ""),
	})
	if d := droppedNoConsent(t, s) - before; d != 1 {
		t.Fatalf("dropped no_consent grew by %v, want 1", d)
	}
	code, p := api(t, s, "GET", "/v1/profiles/lookup?purpose=analytics&identifier=user_id:"+user, nil)
	if code != 200 {
		t.Fatalf("lookup: %d %v", code, p)
	}
	id := p["profile_id"].(string)
	if len(p["traits"].(map[string]any)) != 0 || len(p["identities"].([]any)) != 0 {
		t.Fatalf("an analytics read without consent saw data: %v", p)
	}
	if w, _ := p["categories_withheld"].([]any); len(w) != 6 || !strings.Contains(fmt.Sprint(w), "no_consent") {
		t.Fatalf("categories_withheld = %v", p["categories_withheld"])
	}
	// Essential (the contract) may see contact data.
	if code, p := api(t, s, "GET", "/v1/profiles/"+id+"?purpose=essential", nil); code != 200 || p["traits"].(map[string]any)["first_name"] != "Ada" {
		t.Fatalf("essential read: %d %v", code, p)
	}

	// The banner reports a choice: analytics yes, advertising no.
	postBatchWith(t, s.url, []string{
		fmt.Sprintf(`{"type":"track","messageId":"c-%s","userId":%q,"event":"Segment Consent Preference Updated","context":{"consent":{"categoryPreferences":{"Analytics":true,"Advertising":false}}}}`, run, user),
		viewed(run, 2, user, `,"context":{"consent":{"categoryPreferences":{"Analytics":true,"Advertising":false}}}`),
	})
	code, c := api(t, s, "GET", "/v1/profiles/"+id+"/consent", nil)
	ps := purposesOf(t, c)
	if code != 200 || ps["analytics"]["state"] != "given" || ps["analytics"]["method"] != "banner" || ps["marketing"]["state"] != "refused" ||
		ps["personalization"]["state"] != "not_set" || ps["essential"]["allowed"] != true {
		t.Fatalf("consent after the banner: %d %v", code, c)
	}

	// T3: an analytics read sees behaviour, not contact data; the timeline holds
	// only what was collected for analytics.
	code, p = api(t, s, "GET", "/v1/profiles/"+id+"?purpose=analytics", nil)
	if code != 200 || len(p["traits"].(map[string]any)) != 0 || p["computed"].(map[string]any)["events"] != float64(2) {
		// Two events were collected while analytics was allowed (the consent
		// update, decided after its own records, and the view); the identify
		// before the banner was not, and does not count.
		t.Fatalf("analytics read: %d %v", code, p)
	}
	// Essential may use transactions, not behaviour: order figures only.
	if code, p := api(t, s, "GET", "/v1/profiles/"+id+"?purpose=essential", nil); code != 200 ||
		p["computed"].(map[string]any)["order_count"] != float64(0) || p["computed"].(map[string]any)["events"] != nil {
		t.Fatalf("essential read: %d %v", code, p)
	}
	if !strings.Contains(fmt.Sprint(p["categories_withheld"]), "contact") {
		t.Fatalf("contact not reported withheld: %v", p["categories_withheld"])
	}
	code, evs := api(t, s, "GET", "/v1/profiles/"+id+"/events?purpose=analytics", nil)
	data, _ := evs["data"].([]any)
	if code != 200 || len(data) != 1 {
		t.Fatalf("analytics timeline: %d %v", code, evs)
	}
	if ev := data[0].(map[string]any); !slices.Contains(ev["purposes"].([]any), any("analytics")) {
		t.Fatalf("event purposes %v", ev["purposes"])
	}
	// Marketing was refused: nothing for it.
	code, p = api(t, s, "GET", "/v1/profiles/"+id+"?purpose=marketing", nil)
	if code != 200 || len(p["traits"].(map[string]any)) != 0 || !strings.Contains(fmt.Sprint(p["categories_withheld"]), "refused") {
		t.Fatalf("marketing read after a refusal: %d %v", code, p)
	}

	// T4: a withdrawal through the API is effective for the next read.
	code, w := api(t, s, "PUT", "/v1/profiles/"+id+"/consent", map[string]any{"purposes": map[string]bool{"analytics": false},
		"method": "preference_center", "notice_version": "2026-11"})
	receipt, _ := w["receipt_id"].(string)
	if code != 200 || receipt == "" || purposesOf(t, w)["analytics"]["state"] != "withdrawn" {
		t.Fatalf("withdrawal: %d %v", code, w)
	}
	code, p = api(t, s, "GET", "/v1/profiles/"+id+"?purpose=analytics", nil)
	if code != 200 || len(p["computed"].(map[string]any)) != 0 || !strings.Contains(fmt.Sprint(p["categories_withheld"]), "withdrawn") {
		t.Fatalf("analytics read after withdrawal: %d %v", code, p)
	}
	if code, evs := api(t, s, "GET", "/v1/profiles/"+id+"/events?purpose=analytics", nil); code != 200 || len(evs["data"].([]any)) != 0 {
		t.Fatalf("analytics timeline after withdrawal: %d %v", code, evs)
	}
	// ... and at collection: a new view serves nothing and is dropped.
	before = droppedNoConsent(t, s)
	postBatchWith(t, s.url, []string{viewed(run, 3, user, "")})
	if d := droppedNoConsent(t, s) - before; d != 1 {
		t.Fatalf("after withdrawal a product view was not dropped (%v)", d)
	}

	// The receipt verifies offline with the workspace key; a changed one does not.
	code, rc := api(t, s, "GET", "/v1/consent-receipts/"+receipt, nil)
	if code != 200 {
		t.Fatalf("receipt: %d %v", code, rc)
	}
	jws := rc["jws"].(string)
	pub, _ := base64.StdEncoding.DecodeString(rc["public_key"].(string))
	parts := strings.Split(jws, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	if !ed25519.Verify(pub, []byte(parts[0]+"."+parts[1]), sig) {
		t.Fatal("the receipt's signature does not verify offline")
	}
	if code, v := api(t, s, "POST", "/v1/consent-receipts/verify", map[string]string{"jws": jws}); code != 200 || v["valid"] != true {
		t.Fatalf("verify: %d %v", code, v)
	}
	// ... and with the command, offline, from the JSON the API answered.
	dir := t.TempDir()
	rcJSON, _ := json.Marshal(rc)
	os.WriteFile(dir+"/receipt.json", rcJSON, 0o600)
	if out, err := runCmd(t, "receipt", "verify", "--public-key", rc["public_key"].(string), dir+"/receipt.json"); err != nil ||
		!strings.Contains(out, "is valid") {
		t.Fatalf("trustloop receipt verify: %v\n%s", err, out)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString(bytes.Replace(payload, []byte("withdrawn"), []byte("given"), 1)) + "." + parts[2]
	if code, v := api(t, s, "POST", "/v1/consent-receipts/verify", map[string]string{"jws": forged}); code != 400 {
		t.Fatalf("a forged receipt: %d %v", code, v)
	}
	os.WriteFile(dir+"/forged.jws", []byte(forged), 0o600)
	if out, err := runCmd(t, "receipt", "verify", "--public-key", rc["public_key"].(string), dir+"/forged.jws"); err == nil {
		t.Fatalf("trustloop receipt verify accepted a forged receipt:\n%s", out)
	}

	// GPC: exactly "1" records an opt-out of marketing and sharing (method gpc).
	postBatchWith(t, s.url, []string{viewed(run, 4, user, "")}, "Sec-GPC", "1")
	code, h := api(t, s, "GET", "/v1/profiles/"+id+"/consent/history", nil)
	hist, _ := h["data"].([]any)
	var methods []string
	for _, e := range hist {
		methods = append(methods, e.(map[string]any)["method"].(string)+":"+e.(map[string]any)["purpose"].(string))
	}
	if code != 200 || !slices.Contains(methods, "gpc:sharing") || slices.Contains(methods, "gpc:marketing") {
		// marketing was already refused by the banner: not recorded again.
		t.Fatalf("history after GPC: %d %v", code, methods)
	}
	// The chain links every record of a subject to the one before.
	prev := map[string]string{}
	for _, e := range hist {
		m := e.(map[string]any)
		sub := m["subject"].(string)
		if m["prev_hash"] != prev[sub] {
			t.Fatalf("record %v does not link to %q", m, prev[sub])
		}
		prev[sub] = m["hash"].(string)
	}

	// Bad input: unknown purpose, missing purpose, essential switched off.
	for _, tc := range []struct {
		method, path string
		body         any
		want         int
	}{
		{"GET", "/v1/profiles/" + id + "?purpose=astrology", nil, 400},
		{"GET", "/v1/profiles/" + id, nil, 400},
		{"PUT", "/v1/profiles/" + id + "/consent", map[string]any{"purposes": map[string]bool{"essential": false}}, 400},
		{"PUT", "/v1/profiles/" + id + "/consent", map[string]any{"purposes": map[string]bool{"astrology": true}}, 400},
		{"PUT", "/v1/profiles/" + id + "/consent", map[string]any{"purposes": map[string]bool{"analytics": true}, "method": "telepathy"}, 400},
		{"GET", "/v1/consent-receipts/rcpt_nope", nil, 404},
	} {
		if code, v := api(t, s, tc.method, tc.path, tc.body); code != tc.want {
			t.Errorf("%s %s: %d %v, want %d", tc.method, tc.path, code, v, tc.want)
		}
	}
	code, h2 := api(t, s, "GET", "/v1/profiles/"+id+"/consent/history", nil)
	if code != 200 || len(h2["data"].([]any)) != len(hist) {
		t.Fatalf("a refused request changed the history: %d → %d records", len(hist), len(h2["data"].([]any)))
	}

	// The catalog: served without a key, edited with a version.
	res, err := client.Get(s.url + "/v1/purposes")
	if err != nil {
		t.Fatal(err)
	}
	var cat map[string]any
	json.NewDecoder(res.Body).Decode(&cat)
	res.Body.Close()
	if res.StatusCode != 200 || cat["regime"] != "opt_in" || len(cat["purposes"].([]any)) != 5 {
		t.Fatalf("GET /v1/purposes: %d %v", res.StatusCode, cat)
	}
	cat["regime"] = "opt_out"
	if code, v := api(t, s, "PUT", "/v1/purposes", cat); code != 200 || v["version"] != float64(1) {
		t.Fatalf("PUT /v1/purposes: %d %v", code, v)
	}
	if code, v := api(t, s, "PUT", "/v1/purposes", cat); code != 409 {
		t.Fatalf("a stale catalog version: %d %v", code, v)
	}
	cat["version"] = float64(1)
	cat["purposes"] = cat["purposes"].([]any)[:4] // drops sharing
	if code, v := api(t, s, "PUT", "/v1/purposes", cat); code != 400 {
		t.Fatalf("removing a default purpose: %d %v", code, v)
	}
	if !pg {
		// The running server moves audit records from its journal into the
		// tables ~100 ms after they are durable; stats, a second process,
		// reads the tables, so it may look before that.
		st := stats(t, dataDir)
		for deadline := time.Now().Add(5 * time.Second); st["audit_entries"] < 4 && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			st = stats(t, dataDir)
		}
		if st["consent_records"] < 4 || st["audit_entries"] < 4 {
			t.Fatalf("stats: %v", st)
		}
	}

	// T3/T7: every read that showed data is a recorded data use (withheld reads
	// are not: nothing was used); consent changes are in the audit log.
	code, du := api(t, s, "GET", "/v1/profiles/"+id+"/data-uses?limit=500", nil)
	uses, _ := du["data"].([]any)
	byPurpose := map[string]int{}
	for _, u := range uses {
		m := u.(map[string]any)
		byPurpose[m["purpose"].(string)]++
		if m["kind"] != "data_use" || !strings.HasPrefix(m["action"].(string), "GET /v1/profiles") {
			t.Fatalf("data use %v", m)
		}
	}
	// Shown: the two essential reads, and the analytics profile and timeline between
	// the banner and the withdrawal; the analytics lookup before any consent,
	// the marketing read and the reads after the withdrawal showed nothing.
	if code != 200 || byPurpose["essential"] != 2 || byPurpose["analytics"] != 2 || byPurpose["marketing"] != 0 {
		t.Fatalf("data uses: %d %v", code, byPurpose)
	}
	if code, k := api(t, s, "POST", "/v1/api-keys", map[string]any{"name": "reporting", "roles": []string{"reader"}, "purposes": []string{"analytics"}}); code != 201 {
		t.Fatalf("create key: %d %v", code, k)
	}
	code, ents := api(t, s, "GET", "/v1/audit/entries?start=0&end=200", nil)
	for _, kind := range []string{"consent_change", "data_use", "key_created", "catalog_changed"} {
		if code != 200 || !strings.Contains(fmt.Sprint(ents), kind) {
			t.Fatalf("audit entries lack %s: %d %v", kind, code, ents)
		}
	}
	out, err := runCmd(t, "audit", "verify", "--url", s.url, "--api-key", "e2e-admin-key-0123456789")
	if err != nil {
		t.Fatalf("trustloop audit verify: %v\n%s", err, out)
	}
}

// A placeholder id names no one: a banner choice sent with anonymousId
// "null" (a broken integration many visitors share) admits that event by its
// own signals but is kept for no one, so another visitor sending "null" is
// still decided by the regime (opt-in: their view is dropped), and no
// consent record is written under it.
func TestConsentPlaceholderIDs(t *testing.T) {
	s := start(t, t.TempDir(), "--profiles", "--regime", "opt_in")
	run := randomHex(4)
	before := droppedNoConsent(t, s)
	postBatchWith(t, s.url, []string{
		fmt.Sprintf(`{"type":"track","messageId":"ph1-%s","anonymousId":"null","event":"Segment Consent Preference Updated","context":{"consent":{"categoryPreferences":{"Analytics":true,"Advertising":true}}}}`, run),
	})
	if d := droppedNoConsent(t, s) - before; d != 0 {
		t.Fatalf("the banner choice itself was dropped (%v)", d)
	}
	postBatchWith(t, s.url, []string{anonViewed(run, 2, "null")})
	if d := droppedNoConsent(t, s) - before; d != 1 {
		t.Fatalf("another visitor's view under the placeholder: dropped grew by %v, want 1 (one visitor's choice applied to all)", d)
	}
	// The same choice with a real anonymous id is kept for that visitor.
	anon := "anon-ph-" + run
	postBatchWith(t, s.url, []string{
		fmt.Sprintf(`{"type":"track","messageId":"ph3-%s","anonymousId":%q,"event":"Segment Consent Preference Updated","context":{"consent":{"categoryPreferences":{"Analytics":true}}}}`, run, anon),
		anonViewed(run, 4, anon),
	})
	if d := droppedNoConsent(t, s) - before; d != 1 {
		t.Fatalf("a real visitor's view after their choice was dropped (%v)", d)
	}
}

func anonViewed(run string, i int, anon string) string {
	return fmt.Sprintf(`{"type":"track","messageId":"av-%s-%d","anonymousId":%q,"event":"Product Viewed","properties":{"product_id":"p-%d","category":"Shoes"}}`,
		run, i, anon, i)
}
