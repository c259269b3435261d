package http_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/identity"
	"github.com/trustloop/trustloop/profile"
	"github.com/trustloop/trustloop/projection"
)

const adminKey = "tl_admin_test"

// api sends an API request with the admin key (or key, when given).
func (s *testServer) api(t testing.TB, method, path string, body any, key ...string) *response {
	t.Helper()
	k := adminKey
	if len(key) > 0 {
		k = key[0]
	}
	r := req{method: method, path: path, headers: map[string]string{"Authorization": "Bearer " + k}}
	if body != nil {
		r.body = mustJSON(t, body)
	}
	if k == "" {
		r.headers["Authorization"] = ""
	}
	return s.do(t, r)
}

type profileJSON struct {
	ProfileID  string `json:"profile_id"`
	Identities []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"identities"`
	Traits     map[string]any       `json:"traits"`
	Computed   map[string]any       `json:"computed"`
	Audiences  []struct{ ID int64 } `json:"audiences"`
	MergedFrom string               `json:"merged_from"`
}

func decode[T any](t testing.TB, r *response, want int) T {
	t.Helper()
	if r.Status != want {
		t.Fatalf("status %d, want %d: %s", r.Status, want, r.Body)
	}
	var v T
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("body: %v: %s", err, r.Body)
	}
	return v
}

func (s *testServer) lookup(t *testing.T, identifier string) profileJSON {
	t.Helper()
	return decode[profileJSON](t, s.api(t, "GET", "/v1/profiles/lookup?purpose=analytics&identifier="+url.QueryEscape(identifier), nil), 200)
}

func (p profileJSON) has(typ, value string) bool {
	for _, id := range p.Identities {
		if id.Type == typ && id.Value == value {
			return true
		}
	}
	return false
}

// Anonymous browsing, then a login: one profile with both identifiers, traits and
// computed traits, visible as soon as the collector acknowledged (read-your-writes).
func TestProfileAnonymousThenLogin(t *testing.T) {
	s := newServer(t, options{})
	mustOK(t, s.post(t, "/v1/track", obj{"anonymousId": "anon-1", "event": "Product Viewed", "messageId": "m1",
		"properties": obj{"product_id": "p-1", "category": "shoes"}}))
	p := s.lookup(t, "anonymous_id:anon-1")
	if p.ProfileID == "" || !p.has("anonymous_id", "anon-1") {
		t.Fatalf("profile after the first event: %+v", p)
	}
	mustOK(t, s.post(t, "/v1/identify", obj{"anonymousId": "anon-1", "userId": "u-1", "messageId": "m2",
		"traits": obj{"email": " Jane@Example.COM ", "plan": "pro"}}))
	mustOK(t, s.post(t, "/v1/track", obj{"userId": "u-1", "event": "Order Completed", "messageId": "m3",
		"properties": obj{"revenue": 42.5}}))

	byEmail := s.lookup(t, "email:jane@example.com")
	if byEmail.ProfileID != p.ProfileID {
		t.Fatalf("login made profile %s, want the anonymous one %s", byEmail.ProfileID, p.ProfileID)
	}
	for _, want := range [][2]string{{"anonymous_id", "anon-1"}, {"user_id", "u-1"}, {"email", "jane@example.com"}} {
		if !byEmail.has(want[0], want[1]) {
			t.Errorf("identities %+v lack %s", byEmail.Identities, want)
		}
	}
	if byEmail.Traits["plan"] != "pro" {
		t.Errorf("traits = %v", byEmail.Traits)
	}
	c := byEmail.Computed
	if c["events"] != float64(3) || c["order_count"] != float64(1) || c["lifetime_value"] != 42.5 || c["favourite_category"] != "shoes" {
		t.Errorf("computed = %v", c)
	}
	// The timeline, newest first, decrypted, paged by cursor.
	type page struct {
		Data []struct {
			Type    string         `json:"type"`
			Message map[string]any `json:"message"`
		} `json:"data"`
		NextCursor string `json:"next_cursor"`
	}
	pg := decode[page](t, s.api(t, "GET", "/v1/profiles/"+p.ProfileID+"/events?purpose=analytics&limit=2", nil), 200)
	if len(pg.Data) != 2 || pg.Data[0].Message["messageId"] != "m3" || pg.Data[1].Message["messageId"] != "m2" || pg.NextCursor == "" {
		t.Fatalf("first page = %+v", pg)
	}
	pg = decode[page](t, s.api(t, "GET", "/v1/profiles/"+p.ProfileID+"/events?purpose=analytics&limit=2&cursor="+pg.NextCursor, nil), 200)
	if len(pg.Data) != 1 || pg.Data[0].Message["messageId"] != "m1" || pg.NextCursor != "" {
		t.Fatalf("second page = %+v", pg)
	}
}

// Two devices joined by email merge; the merge is recorded and can be undone.
func TestProfileMergeAndSplit(t *testing.T) {
	s := newServer(t, options{})
	mustOK(t, s.post(t, "/v1/identify", obj{"anonymousId": "phone-1", "messageId": "a", "traits": obj{"email": "sam@example.com"}}))
	mustOK(t, s.post(t, "/v1/identify", obj{"anonymousId": "laptop-1", "messageId": "b", "traits": obj{"phone": "+49 170 1234567"}}))
	phone, laptop := s.lookup(t, "anonymous_id:phone-1"), s.lookup(t, "anonymous_id:laptop-1")
	if phone.ProfileID == laptop.ProfileID {
		t.Fatal("two unrelated devices share a profile")
	}
	// The laptop now says the same email: the two are one person.
	mustOK(t, s.post(t, "/v1/identify", obj{"anonymousId": "laptop-1", "messageId": "c", "traits": obj{"email": "sam@example.com"}}))
	merged := s.lookup(t, "anonymous_id:laptop-1")
	if merged.ProfileID != phone.ProfileID || !merged.has("phone", "+491701234567") || !merged.has("anonymous_id", "phone-1") {
		t.Fatalf("after the shared email: %+v (phone profile %s)", merged, phone.ProfileID)
	}
	// The merged-away id answers with the survivor.
	old := decode[profileJSON](t, s.api(t, "GET", "/v1/profiles/"+laptop.ProfileID+"?purpose=analytics", nil), 200)
	if old.ProfileID != merged.ProfileID || old.MergedFrom != laptop.ProfileID {
		t.Fatalf("merged-away profile answers %+v", old)
	}
	type merges struct {
		Data []struct {
			MergeID string `json:"merge_id"`
			Into    string `json:"into"`
			From    string `json:"from"`
		} `json:"data"`
	}
	ms := decode[merges](t, s.api(t, "GET", "/v1/profiles/"+merged.ProfileID+"/merges", nil), 200)
	if len(ms.Data) != 1 || ms.Data[0].Into != phone.ProfileID || ms.Data[0].From != laptop.ProfileID {
		t.Fatalf("merges = %+v", ms)
	}
	// Bodies that are not one object of the split's shape are refused, and
	// nothing is split.
	for _, c := range []struct{ body, want string }{
		{`{"merge_id":"` + ms.Data[0].MergeID + `"} not JSON {{{`, "there is more after the first JSON value"},
		{`{"merge_id":"` + ms.Data[0].MergeID + `"}{"merge_id":"1"}`, "there is more after the first JSON value"},
		{`{"merge_id":` + ms.Data[0].MergeID + `}`, "field merge_id must be a JSON string, not a number"},
		{`[]`, "it must be a JSON object, not an array"},
		{` null `, "it must be a JSON object, not null"},
		{`{"merge_id":"` + ms.Data[0].MergeID + `","why":1}`, `unknown field \"why\"`}, // as JSON escapes it
		{`{"merge_id":"abc"}`, "merge_id is not a merge id"},
		{`{"merge_id":"0` + ms.Data[0].MergeID + `"}`, "merge_id is not a merge id"},
		{`{"merge_id":""}`, "merge_id is required"},
		{``, "the body is empty"},
		{`{"merge_id":"1`, "the body ends in the middle of a value"},
		{`{"merge_id" "1"}`, "it is not valid JSON (at byte"},
	} {
		r := s.do(t, req{method: "POST", path: "/v1/profiles/" + merged.ProfileID + "/split", body: []byte(c.body),
			headers: map[string]string{"Authorization": "Bearer " + adminKey}})
		if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), c.want) || strings.Contains(string(r.Body), "Go ") {
			t.Errorf("split with %q: %d %s, want 400 saying %q", c.body, r.Status, r.Body, c.want)
		}
	}
	if got := s.lookup(t, "anonymous_id:laptop-1"); got.ProfileID != phone.ProfileID {
		t.Fatalf("a refused split changed the profiles: the laptop is in %s", got.ProfileID)
	}
	r := s.api(t, "POST", "/v1/profiles/"+merged.ProfileID+"/split", obj{"merge_id": ms.Data[0].MergeID})
	if r.Status != 200 {
		t.Fatalf("split: %d %s", r.Status, r.Body)
	}
	back := s.lookup(t, "anonymous_id:laptop-1")
	if back.ProfileID != laptop.ProfileID || !back.has("phone", "+491701234567") || back.has("anonymous_id", "phone-1") {
		t.Fatalf("after split the laptop is %+v", back)
	}
	if got := s.lookup(t, "anonymous_id:phone-1"); got.has("phone", "+491701234567") {
		t.Fatalf("after split the phone profile still has the laptop's phone: %+v", got)
	}
	if r := s.api(t, "POST", "/v1/profiles/"+merged.ProfileID+"/split", obj{"merge_id": ms.Data[0].MergeID}); r.Status != http.StatusConflict {
		t.Fatalf("second split: %d %s", r.Status, r.Body)
	}
}

// A shared family tablet: two users log in on one device; they stay two people.
func TestProfileSharedDeviceStaysTwo(t *testing.T) {
	s := newServer(t, options{})
	mustOK(t, s.post(t, "/v1/identify", obj{"anonymousId": "tablet", "userId": "mum", "messageId": "1"}))
	mustOK(t, s.post(t, "/v1/identify", obj{"anonymousId": "tablet", "userId": "kid", "messageId": "2"}))
	mum, kid := s.lookup(t, "user_id:mum"), s.lookup(t, "user_id:kid")
	if mum.ProfileID == kid.ProfileID {
		t.Fatal("two users of one tablet were merged")
	}
	if !mum.has("anonymous_id", "tablet") || kid.has("anonymous_id", "tablet") {
		t.Fatalf("the tablet belongs to the first user: mum %+v kid %+v", mum.Identities, kid.Identities)
	}
}

func TestAudiences(t *testing.T) {
	s := newServer(t, options{})
	mustOK(t, s.post(t, "/v1/identify", obj{"userId": "big", "messageId": "1", "traits": obj{"plan": "pro"}}))
	mustOK(t, s.post(t, "/v1/identify", obj{"userId": "small", "messageId": "2", "traits": obj{"plan": "free"}}))
	type aud struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	}
	a := decode[aud](t, s.api(t, "POST", "/v1/audiences", obj{"name": "Pro", "rule": `traits.plan == "pro"`}), 201)
	type list struct {
		Data []profileJSON `json:"data"`
	}
	members := decode[list](t, s.api(t, "GET", "/v1/audiences/"+itoa(a.ID)+"/members?purpose=marketing", nil), 200)
	if len(members.Data) != 1 || !members.Data[0].has("user_id", "big") {
		t.Fatalf("members of Pro = %+v", members)
	}
	// A profile that changes is evaluated again at ingest.
	mustOK(t, s.post(t, "/v1/identify", obj{"userId": "small", "messageId": "3", "traits": obj{"plan": "pro"}}))
	members = decode[list](t, s.api(t, "GET", "/v1/profiles?purpose=marketing&audience="+itoa(a.ID), nil), 200)
	if len(members.Data) != 2 {
		t.Fatalf("members after the upgrade = %d", len(members.Data))
	}
	if p := s.lookup(t, "user_id:small"); len(p.Audiences) != 1 || p.Audiences[0].ID != a.ID {
		t.Fatalf("profile audiences = %+v", p.Audiences)
	}
	// Bad rules and names are refused, and change nothing.
	for _, body := range []obj{
		{"name": "x", "rule": `traits.plan ==`},
		{"name": "x", "rule": `1 + 2`},
		{"name": "x", "rule": `nosuchvar > 1`},
		{"name": "x", "rule": `computed.last_seen > 30`}, // a time against a number: never holds
		{"name": "", "rule": `true`},
		{"name": "Pro", "rule": `true`},
	} {
		r := s.api(t, "POST", "/v1/audiences", body)
		if r.Status != 400 && r.Status != 409 {
			t.Errorf("audience %v: status %d %s", body, r.Status, r.Body)
		}
		if e := r.apiError(t); e.Error.Message == "" || e.Error.Hint == "" {
			t.Errorf("audience %v: no message or no hint: %s", body, r.Body)
		}
	}
	// A body that is not UTF-8 is refused (Go's decoder would store U+FFFD).
	r := s.do(t, req{path: "/v1/audiences", body: []byte("{\"name\":\"u\xff\",\"rule\":\"true\"}"),
		headers: map[string]string{"Authorization": "Bearer " + adminKey, "Content-Type": "application/json"}})
	if e := r.apiError(t); r.Status != 400 || !strings.Contains(e.Error.Message, "not valid UTF-8") || e.Error.Hint == "" {
		t.Errorf("an audience body that is not UTF-8: %d %s", r.Status, r.Body)
	}
	r = s.do(t, req{path: "/v1/audiences", body: []byte(`{"name":"u\udc00","rule":"true"}`),
		headers: map[string]string{"Authorization": "Bearer " + adminKey, "Content-Type": "application/json"}})
	if e := r.apiError(t); r.Status != 400 || !strings.Contains(e.Error.Message, "surrogate") || e.Error.Hint == "" {
		t.Errorf("an audience body with a lone surrogate escape: %d %s", r.Status, r.Body)
	}
	all := decode[struct{ Data []aud }](t, s.api(t, "GET", "/v1/audiences", nil), 200)
	if len(all.Data) != 1 {
		t.Fatalf("audiences after refused creates = %+v", all)
	}
	// A stored rule saved before that check keeps working through a rename;
	// changing it to another such rule is refused.
	legacy := &trustloop.Audience{WorkspaceID: s.WS.ID, Name: "Legacy", Rule: `computed.last_seen > 30`}
	if err := s.Store.CreateAudience(context.Background(), legacy); err != nil {
		t.Fatal(err)
	}
	path := "/v1/audiences/" + itoa(legacy.ID)
	if r := s.api(t, "PUT", path, obj{"name": "Legacy, renamed", "rule": legacy.Rule}); r.Status != 200 {
		t.Errorf("renaming an audience with a stored rule: %d %s", r.Status, r.Body)
	}
	r = s.api(t, "PUT", path, obj{"name": "Legacy, renamed", "rule": `computed.last_seen > 31`})
	if e := r.apiError(t); r.Status != 400 || !strings.Contains(e.Error.Message, "can never hold") {
		t.Errorf("changing it to another rule that can never hold: %d %s", r.Status, r.Body)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// The Authorization scheme's name is case-insensitive; another scheme, or a
// Bearer without a key, is 401.
func TestAPIKeySchemeCase(t *testing.T) {
	s := newServer(t, options{})
	for _, c := range []struct {
		auth   string
		status int
	}{
		{"Bearer " + adminKey, 200}, {"bearer " + adminKey, 200}, {"BEARER " + adminKey, 200},
		{"Basic " + adminKey, 401}, {"Bearer", 401}, {"Bearer   ", 401}, {adminKey, 401},
	} {
		r := s.do(t, req{method: "GET", path: "/v1/api-keys", headers: map[string]string{"Authorization": c.auth}})
		if r.Status != c.status {
			t.Errorf("Authorization %.12q…: %d, want %d: %s", c.auth, r.Status, c.status, r.Body)
		}
	}
}

// Bad input to the profile API: each a clear error, nothing changed.
func TestProfileAPIBadInput(t *testing.T) {
	s := newServer(t, options{})
	mustOK(t, s.post(t, "/v1/identify", obj{"userId": "u", "messageId": "1"}))
	p := s.lookup(t, "user_id:u")
	for _, tc := range []struct {
		name, method, path, key string
		status                  int
		code                    string
	}{
		{"no key", "GET", "/v1/profiles/" + p.ProfileID + "?purpose=analytics", "", 401, "unauthorized"},
		{"wrong key", "GET", "/v1/profiles/" + p.ProfileID + "?purpose=analytics", "nope", 401, "unauthorized"},
		{"no purpose", "GET", "/v1/profiles/" + p.ProfileID, adminKey, 400, "invalid"},
		{"unknown purpose", "GET", "/v1/profiles/" + p.ProfileID + "?purpose=fun", adminKey, 400, "invalid"},
		{"purpose not allowed", "GET", "/v1/profiles/" + p.ProfileID + "?purpose=sharing", adminKey, 403, "forbidden"},
		{"bad id", "GET", "/v1/profiles/abc?purpose=analytics", adminKey, 400, "invalid"},
		{"id with a plus", "GET", "/v1/profiles/%2B" + p.ProfileID + "?purpose=analytics", adminKey, 400, "invalid"},
		{"id with a leading zero", "GET", "/v1/profiles/0" + p.ProfileID + "/events?purpose=analytics", adminKey, 400, "invalid"},
		{"unknown id", "GET", "/v1/profiles/12345?purpose=analytics", adminKey, 404, "not_found"},
		{"lookup without identifier", "GET", "/v1/profiles/lookup?purpose=analytics", adminKey, 400, "invalid"},
		{"identifier without type", "GET", "/v1/profiles/lookup?purpose=analytics&identifier=u", adminKey, 400, "invalid"},
		{"malformed email", "GET", "/v1/profiles/lookup?purpose=analytics&identifier=email:nope", adminKey, 400, "invalid"},
		{"unknown identifier", "GET", "/v1/profiles/lookup?purpose=analytics&identifier=user_id:nobody", adminKey, 404, "not_found"},
		{"malformed cursor", "GET", "/v1/profiles/" + p.ProfileID + "/events?purpose=analytics&cursor=zzz", adminKey, 400, "invalid"},
		{"limit too big", "GET", "/v1/profiles/" + p.ProfileID + "/events?purpose=analytics&limit=5000", adminKey, 400, "invalid"},
		{"split without body", "POST", "/v1/profiles/" + p.ProfileID + "/split", adminKey, 400, "invalid"},
		{"unknown audience", "GET", "/v1/audiences/99/members?purpose=analytics", adminKey, 404, "not_found"},
		{"audience id not a number", "GET", "/v1/audiences/x/members?purpose=analytics", adminKey, 400, "invalid"},
		{"audience filter not an id", "GET", "/v1/profiles?purpose=analytics&audience=x", adminKey, 400, "invalid"},
		{"limit not a number", "GET", "/v1/profiles/" + p.ProfileID + "/events?purpose=analytics&limit=x", adminKey, 400, "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.api(t, tc.method, tc.path, nil, tc.key)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			e := r.apiError(t)
			if e.Error.Code != tc.code || e.Error.Message == "" || e.Error.Hint == "" {
				t.Fatalf("error %+v, want code %s with a message and a hint (what to do)", e.Error, tc.code)
			}
			if strings.Contains(string(r.Body), "nobody") {
				t.Fatal("the error repeats the identifier value")
			}
		})
	}
	// Splitting an unknown profile says the profile is unknown, not its merge.
	r := s.api(t, "POST", "/v1/profiles/12345/split", obj{"merge_id": "1"})
	if e := r.apiError(t); r.Status != 404 || !strings.Contains(e.Error.Message, "Profile") {
		t.Errorf("split of an unknown profile: %d %s", r.Status, r.Body)
	}
	// Nothing changed: still one profile.
	type list struct{ Data []profileJSON }
	if all := decode[list](t, s.api(t, "GET", "/v1/profiles?purpose=analytics", nil), 200); len(all.Data) != 1 {
		t.Fatalf("%d profiles", len(all.Data))
	}
}

// A malformed email stays a trait but is not matched on, and the skip is counted
// by reason (never by value).
func TestProfileMalformedIdentifierCounted(t *testing.T) {
	s := newServer(t, options{})
	mustOK(t, s.post(t, "/v1/identify", obj{"userId": "u-m", "messageId": "1", "traits": obj{"email": "not-an-email", "phone": "12"}}))
	p := s.lookup(t, "user_id:u-m")
	if p.has("email", "not-an-email") || p.Traits["email"] != "not-an-email" {
		t.Fatalf("profile %+v: the malformed email must be a trait, not an identity", p)
	}
	m := s.metricsText(t)
	for _, want := range []string{`trustloop_profile_skipped_total{kind="identifier",reason="malformed_email"} 1`,
		`trustloop_profile_skipped_total{kind="identifier",reason="malformed_phone"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(m, "not-an-email") {
		t.Fatal("a value reached the metrics")
	}
}

// A merge survives a crash before any flush: the survivor's merged state is
// written in the merge's own commit (a replay does not merge again).
func TestProfileMergeSurvivesCrash(t *testing.T) {
	s := newServer(t, options{})
	mustOK(t, s.post(t, "/v1/identify", obj{"anonymousId": "d1", "messageId": "a", "traits": obj{"email": "kim@example.com", "colour": "red"}}))
	mustOK(t, s.post(t, "/v1/identify", obj{"anonymousId": "d2", "messageId": "b", "traits": obj{"size": "M"}}))
	if _, err := s.Profiles.Flush(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	// The merge, then a "crash": a new service over the same store, nothing flushed.
	mustOK(t, s.post(t, "/v1/identify", obj{"anonymousId": "d2", "messageId": "c", "traits": obj{"email": "kim@example.com"}}))
	rules, _ := identity.Compile(identity.DefaultConfig())
	fresh := projection.New(s.Store, s.Keyring, rules, profile.Config{})
	if _, err := fresh.Recover(context.Background(), []int64{s.WS.ID}); err != nil {
		t.Fatal(err)
	}
	id, _ := fresh.ParseIdentifier(context.Background(), s.WS.ID, "anonymous_id:d2")
	p, err := fresh.Lookup(context.Background(), s.WS.ID, id)
	if err != nil {
		t.Fatal(err)
	}
	if p.Traits["colour"] != "red" || p.Traits["size"] != "M" || p.Computed["events"] != int64(3) {
		t.Fatalf("after a crash the merged profile is %v / %v", p.Traits, p.Computed)
	}
}

// A workspace configures a custom identifier type and tighter rules through the
// settings API; invalid settings are refused and change nothing.
func TestProfileSettings(t *testing.T) {
	s := newServer(t, options{})
	type settings struct {
		Version  int64          `json:"version"`
		Identity map[string]any `json:"identity"`
		Computed map[string]any `json:"computed"`
	}
	st := decode[settings](t, s.api(t, "GET", "/v1/settings/profiles", nil), 200)
	if st.Version != 0 || st.Identity["default_limit"] != float64(5) {
		t.Fatalf("default settings = %+v", st)
	}
	for _, bad := range []obj{
		{"version": 0, "identity": obj{"blocked": []string{"("}, "default_limit": 5}, "computed": obj{}},
		{"version": 0, "identity": obj{"default_limit": 0}, "computed": obj{}},
		{"version": 0, "identity": obj{"default_limit": 5, "custom_types": []obj{{"name": "email"}}}, "computed": obj{}},
		{"version": 0, "identity": obj{"default_limit": 5}, "computed": obj{"disabled": []string{"no_such_trait"}}},
		{"version": 0, "identity": obj{"default_limit": 5}, "computed": obj{}, "extra": 1},
		{"version": 0, "identity": obj{"default_limit": 5, "limits": obj{"email": 1_000_000_000_000}}, "computed": obj{}},
	} {
		r := s.api(t, "PUT", "/v1/settings/profiles", bad)
		if r.Status != 400 || r.apiError(t).Error.Message == "" {
			t.Errorf("settings %v: %d %s", bad, r.Status, r.Body)
		}
	}
	if st := decode[settings](t, s.api(t, "GET", "/v1/settings/profiles", nil), 200); st.Version != 0 {
		t.Fatalf("refused settings changed the version to %d", st.Version)
	}
	st.Identity["custom_types"] = []obj{{"name": "loyalty_id", "traits": []string{"loyalty_card"}}}
	saved := decode[settings](t, s.api(t, "PUT", "/v1/settings/profiles", st), 200)
	if saved.Version != 1 {
		t.Fatalf("saved version %d", saved.Version)
	}
	// A stale version is refused.
	if r := s.api(t, "PUT", "/v1/settings/profiles", st); r.Status != http.StatusConflict {
		t.Fatalf("stale PUT: %d %s", r.Status, r.Body)
	}
	// The store's card joins the web visitor.
	mustOK(t, s.post(t, "/v1/identify", obj{"anonymousId": "web-1", "messageId": "1", "traits": obj{"loyalty_card": "LC-77"}}))
	mustOK(t, s.post(t, "/v1/identify", obj{"userId": "shop-9", "messageId": "2", "traits": obj{"loyalty_card": "LC-77"}}))
	p := s.lookup(t, "loyalty_id:LC-77")
	if !p.has("anonymous_id", "web-1") || !p.has("user_id", "shop-9") {
		t.Fatalf("profile by loyalty card: %+v", p.Identities)
	}
}

// Listing shows acknowledged changes that are still only in memory (written behind).
func TestProfileListReadsYourWrites(t *testing.T) {
	s := newServer(t, options{})
	mustOK(t, s.post(t, "/v1/identify", obj{"userId": "l-1", "messageId": "1", "traits": obj{"tier": "bronze"}}))
	mustOK(t, s.post(t, "/v1/identify", obj{"userId": "l-1", "messageId": "2", "traits": obj{"tier": "gold"}}))
	type list struct{ Data []profileJSON }
	all := decode[list](t, s.api(t, "GET", "/v1/profiles?purpose=analytics", nil), 200)
	if len(all.Data) != 1 || all.Data[0].Traits["tier"] != "gold" {
		t.Fatalf("listing = %+v, want the one profile with tier gold", all.Data)
	}
}

// A read for a purpose shows only the audiences whose rules hold over what
// that purpose sees (T3): a membership drawn from an order collected for
// analytics alone does not show under personalization, nor one drawn from a
// contact trait under a purpose that may not use contact data; audience
// member lists leave such profiles out the same way.
func TestAudiencesOnlyFromWhatThePurposeSees(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	mustOK(t, s.post(t, "/v1/identify", obj{"userId": "f2", "messageId": "a1", "traits": obj{"plan": "gold"}}))
	mustOK(t, s.post(t, "/v1/track", obj{"userId": "f2", "messageId": "a2", "event": "Segment Consent Preference Updated",
		"context": obj{"consent": obj{"categoryPreferences": obj{"Analytics": true}}}}))
	mustOK(t, s.post(t, "/v1/track", obj{"userId": "f2", "messageId": "a3", "event": "Order Completed",
		"properties": obj{"order_id": "o9", "revenue": 99}}))
	pid := decode[profileJSON](t, s.api(t, "GET", "/v1/profiles/lookup?purpose=analytics&identifier=user_id:f2", nil), 200).ProfileID
	decode[map[string]any](t, s.api(t, "PUT", "/v1/profiles/"+pid+"/consent", obj{"purposes": obj{"personalization": true, "marketing": true}}), 200)
	type aud struct{ ID int64 }
	buyers := decode[aud](t, s.api(t, "POST", "/v1/audiences", obj{"name": "Buyers", "rule": "computed.order_count >= 1"}), 201).ID
	gold := decode[aud](t, s.api(t, "POST", "/v1/audiences", obj{"name": "Gold", "rule": `traits.plan == "gold"`}), 201).ID
	// Stored membership is over all of the profile's data: both hold.
	if p := decode[profileJSON](t, s.api(t, "GET", "/v1/profiles/"+pid+"?purpose=marketing", nil), 200); len(p.Traits) == 0 {
		t.Fatalf("setup: marketing sees no traits: %+v", p)
	}
	for _, c := range []struct {
		purpose string
		want    []int64
	}{
		{"personalization", nil},       // the order was collected for analytics only; traits are contact
		{"analytics", []int64{buyers}}, // the order, not the contact trait
		{"marketing", []int64{gold}},   // the trait, not the order (collected before marketing was allowed)
	} {
		p := decode[profileJSON](t, s.api(t, "GET", "/v1/profiles/"+pid+"?purpose="+c.purpose, nil), 200)
		var got []int64
		for _, a := range p.Audiences {
			got = append(got, a.ID)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("audiences read for %s = %v, want %v", c.purpose, got, c.want)
		}
		for _, id := range []int64{buyers, gold} {
			want := slices.Contains(c.want, id)
			for _, path := range []string{"/v1/audiences/" + itoa(id) + "/members?purpose=" + c.purpose,
				"/v1/profiles?audience=" + itoa(id) + "&purpose=" + c.purpose} {
				list := decode[struct{ Data []profileJSON }](t, s.api(t, "GET", path, nil), 200)
				if (len(list.Data) == 1) != want || len(list.Data) > 1 {
					t.Errorf("GET %s: %d profiles, want member %v", path, len(list.Data), want)
				}
			}
		}
	}
}
